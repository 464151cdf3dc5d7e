"""The rat codec with the shipped weights: real encodes and decodes, options, the container,
corrupted streams, determinism across processes, and the `dappled train` command line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _streams import forge, frame_payload
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dappled.cli import cli
from dappled.codec import api
from dappled.codec.chunks import pack_chunks, unpack_chunks
from dappled.codec.rat.codec import _HEAD, PAYLOAD_VERSION, padded_size
from dappled.datasets import SAMPLE_IMAGE, load_image, save_image
from dappled.errors import BitstreamError, OptionError
from dappled.eval.metrics import psnr
from dappled.models.rat.store import MODELS, WEIGHTS_DIR, load_file


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """An odd-sized 70x90 crop of the bundled sample (exercises the padding to 64)."""
    return load_image(SAMPLE_IMAGE)[180:250, 300:390].copy()


@pytest.fixture(scope="module")
def streams(crop: np.ndarray) -> dict[int, bytes]:
    return {q: api.encode_image(crop, "rat", quality=q) for q in (1, 2, 3, 4)}


def test_shipped_weights_load_offline_and_fit_the_budget() -> None:
    total = 0
    for name in MODELS.values():
        path = WEIGHTS_DIR / name
        assert path.exists(), f"{path} is not shipped"
        total += path.stat().st_size
        doc = torch.load(path, weights_only=True)
        assert doc["format"] == "dappled-rat-weights" and doc["meta"]["steps"] > 0
        model, _ = load_file(path)
        assert model.config.n_rates == 4
    assert total <= 40_000_000
    assert load_file(WEIGHTS_DIR / MODELS[0])[0].shallow is not None
    assert not load_file(WEIGHTS_DIR / MODELS[1])[0].config.use_rat


def test_round_trip_quality_and_rate_ladder(crop: np.ndarray, streams: dict[int, bytes]) -> None:
    sizes, quals = [], []
    for q in (1, 2, 3, 4):
        out = api.decode_image(streams[q])
        assert out.shape == crop.shape and out.dtype == np.uint8
        sizes.append(len(streams[q]))
        quals.append(psnr(crop, out))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert quals[-1] > quals[0]
    assert quals[-1] > 27.0  # a trained codec, not noise


def test_shallow_decoder_and_ablation_model(crop: np.ndarray, streams: dict[int, bytes]) -> None:
    full = api.decode_image(streams[3])
    shallow_stream = api.encode_image(crop, "rat", quality=3, decoder="shallow")
    # same encoder and entropy model: only the 1-byte decoder flag differs
    assert len(shallow_stream) == len(streams[3])
    shallow = api.decode_image(shallow_stream)
    assert shallow.shape == crop.shape and not np.array_equal(shallow, full)
    assert psnr(crop, shallow) > psnr(crop, full) - 3.0
    plain = api.decode_image(api.encode_image(crop, "rat", quality=3, model="noregion"))
    assert psnr(crop, plain) > 24.0


def test_grid_option_changes_the_stream(crop: np.ndarray, streams: dict[int, bytes]) -> None:
    other = api.encode_image(crop, "rat", quality=3, grid=32)
    assert other != streams[3]
    assert psnr(crop, api.decode_image(other)) > 24.0


def test_options_are_checked(crop: np.ndarray) -> None:
    for kwargs in ({"quality": 5}, {"quality": 0}, {"bpp": 0.5}, {"quality": 2, "bogus": "1"},
                   {"quality": 2, "decoder": "tiny"}, {"quality": 2, "model": "x"},
                   {"quality": 2, "grid": "17"}, {"quality": 2, "grid": "abc"},
                   {"quality": 2, "grid": "8"}):
        with pytest.raises(OptionError):
            api.encode_image(crop, "rat", **kwargs)


def test_tiny_and_odd_images() -> None:
    for h, w in ((1, 1), (5, 130), (65, 3)):
        img = (np.arange(h * w * 3) % 251).astype(np.uint8).reshape(h, w, 3)
        out = api.decode_image(api.encode_image(img, "rat", quality=1))
        assert out.shape == (h, w, 3)


def test_info_lists_the_sub_streams(streams: dict[int, bytes]) -> None:
    info = api.inspect(streams[2])
    assert info.codec == "rat"
    assert set(info.streams) == {"HEAD", "Z   ", "Y   "}



def test_bad_header_fields_are_bitstream_errors(streams: dict[int, bytes]) -> None:
    payload, _ = frame_payload(streams[2])
    chunks = unpack_chunks(payload)
    bad_heads = [
        _HEAD.pack(PAYLOAD_VERSION + 1, 0, 1, 0, 64),  # version
        _HEAD.pack(PAYLOAD_VERSION, 9, 1, 0, 64),  # model id
        _HEAD.pack(PAYLOAD_VERSION, 0, 4, 0, 64),  # rate index
        _HEAD.pack(PAYLOAD_VERSION, 0, 1, 2, 64),  # decoder
        _HEAD.pack(PAYLOAD_VERSION, 1, 1, 1, 64),  # shallow decoder of a model without one
        _HEAD.pack(PAYLOAD_VERSION, 0, 1, 0, 0),  # grid cell
        _HEAD.pack(PAYLOAD_VERSION, 0, 1, 0, 65),
        _HEAD.pack(PAYLOAD_VERSION, 0, 1, 0, 64)[:-1],  # short header
    ]
    for head in bad_heads:
        forged = forge(streams[2], pack_chunks({**chunks, "HEAD": head}))
        with pytest.raises(BitstreamError):
            api.decode_image(forged)
    missing = {k: v for k, v in chunks.items() if k != "Y   "}
    with pytest.raises(BitstreamError):
        api.decode_image(forge(streams[2], pack_chunks(missing)))
    with pytest.raises(BitstreamError):  # damage without a CRC fix-up: the container catches it
        broken = bytearray(streams[2])
        broken[-40] ^= 0x55
        api.decode_image(bytes(broken))


def test_oversized_frames_are_refused_before_any_allocation(streams: dict[int, bytes]) -> None:
    from dappled.codec.rat.codec import MAX_PIXELS, RatCodec
    from dappled.errors import LimitError

    container = api.parse(streams[1])
    header = dataclasses.replace(container.header, width=8192, height=8192)
    assert 8192 * 8192 > MAX_PIXELS
    with pytest.raises(LimitError):
        RatCodec().decode_image(header, container.packets)


@pytest.mark.parametrize("quality", [3, 1])
def test_strip_decode_matches_the_whole_decode(crop: np.ndarray, streams: dict[int, bytes], quality: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The crop (padded 128x128, 8 latent rows) with the strip height forced down to one latent
    row (8 strips; the hyper-synthesis in 2): the whole decode's pixels within one level; the
    encoder in strips writes the same stream (its analysis agrees to float rounding, which the
    rounding of the latent absorbs here)."""
    import dappled.codec.rat.codec as rc

    shallow = api.encode_image(crop, "rat", quality=quality, decoder="shallow")
    whole = [api.decode_image(s) for s in (streams[quality], shallow)]
    monkeypatch.setattr(rc, "STRIP_LATENTS", 8)
    monkeypatch.setattr(rc, "HYPER_STRIP_LATENTS", 2)
    assert rc.strip_rows(128, 128) == (1, 1)
    for stream, ref in zip((streams[quality], shallow), whole, strict=True):
        strip = api.decode_image(stream)
        diff = np.abs(strip.astype(int) - ref)
        assert strip.shape == crop.shape and diff.max() <= 1 and (diff > 0).mean() < 1e-3
        np.testing.assert_array_equal(api.decode_image(stream), strip)  # the same every time
    assert api.encode_image(crop, "rat", quality=quality) == streams[quality]


def test_garbage_entropy_strings_never_crash(streams: dict[int, bytes], crop: np.ndarray) -> None:
    payload, _ = frame_payload(streams[2])
    chunks = unpack_chunks(payload)
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 64, 4096):
        for tag in ("Y   ", "Z   "):
            garbage = bytes(rng.integers(0, 256, n, dtype=np.uint8)) if n != 64 else b"\xff" * 64
            forged = forge(streams[2], pack_chunks({**chunks, tag: garbage}))
            try:
                out = api.decode_image(forged)
                assert out.shape == crop.shape
            except BitstreamError:
                pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupted_payloads_only_raise_bitstream_error(streams: dict[int, bytes], crop: np.ndarray,
                                                       data: st.DataObject) -> None:
    payload = bytearray(frame_payload(streams[2])[0])
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(payload) - 1))
        payload[pos] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        payload = payload[: data.draw(st.integers(0, len(payload)))]
    try:
        out = api.decode_image(forge(streams[2], bytes(payload)))
        assert out.shape == crop.shape
    except BitstreamError:
        pass


@pytest.mark.slow
def test_decode_in_two_other_processes_is_identical(streams: dict[int, bytes], tmp_path: Path) -> None:
    """Encode here, decode in two fresh processes: the same pixels as here.

    The entropy decoding is exact anywhere (shipped integer CDF tables, float64 scale indexes);
    the float32 synthesis is reproducible for a given machine and torch thread count, which all
    three processes share (a different thread count may move a rare pixel by one level).
    """
    src = tmp_path / "s.dpl"
    src.write_bytes(streams[3])
    here = api.decode_image(streams[3])
    code = (
        "import sys, torch, numpy as np; torch.set_num_threads(int(sys.argv[3])); "
        "from dappled.codec import api; "
        "np.save(sys.argv[2], api.decode_image(open(sys.argv[1], 'rb').read()))"
    )
    for i in range(2):
        out = tmp_path / f"o{i}.npy"
        subprocess.run([sys.executable, "-c", code, str(src), str(out), str(torch.get_num_threads())],
                       check=True)
        np.testing.assert_array_equal(np.load(out), here)


def test_padded_size() -> None:
    assert padded_size(1, 1) == (64, 64)
    assert padded_size(512, 768) == (512, 768)
    assert padded_size(65, 128) == (128, 128)


def test_cli_encode_decode_with_shallow_decoder(tmp_path: Path, crop: np.ndarray) -> None:
    png = tmp_path / "in.png"
    save_image(png, crop)
    runner = CliRunner()
    res = runner.invoke(cli, ["encode", str(png), "-o", str(tmp_path / "a.dpl"), "--codec", "rat", "-q", "2",
                              "--decoder", "shallow", "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["decode", str(tmp_path / "a.dpl"), "-o", str(tmp_path / "a.png")])
    assert res.exit_code == 0, res.output
    assert load_image(tmp_path / "a.png").shape == crop.shape
    # the flag and the codec option name the same thing: identical streams
    res = runner.invoke(cli, ["encode", str(png), "-o", str(tmp_path / "c.dpl"), "--codec", "rat", "-q", "2",
                              "-O", "decoder=shallow", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a.dpl").read_bytes() == (tmp_path / "c.dpl").read_bytes()
    res = runner.invoke(cli, ["encode", str(png), "-o", str(tmp_path / "d.dpl"), "--codec", "splat",
                              "--decoder", "shallow", "--quiet"])
    assert res.exit_code == 2 and "decoder" in res.output
    res = runner.invoke(cli, ["encode", str(png), "-o", str(tmp_path / "b.dpl"), "--codec", "rat", "-q", "9"])
    assert res.exit_code == 2 and "quality" in res.output


def test_cli_train_help_and_bad_options(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "rat", "--help"])
    assert res.exit_code == 0 and "--stage" in res.output and "--export" in res.output
    res = runner.invoke(cli, ["train", "rat", "--out", str(tmp_path / "r"), "--lambdas", "0.02,0.01"])
    assert res.exit_code == 2 and "increasing" in res.output
    res = runner.invoke(cli, ["train", "rat", "--out", str(tmp_path / "r"), "--stage", "shallow"])
    assert res.exit_code == 2 and "--init" in res.output


@pytest.mark.slow
@pytest.mark.data
def test_cli_train_runs_on_bsds_and_exports(tmp_path: Path) -> None:
    out, weights = tmp_path / "run", tmp_path / "w.pt"
    res = CliRunner().invoke(cli, ["train", "rat", "--out", str(out), "--steps", "2", "--batch", "2",
                                   "--crop", "64", "-N", "8", "-M", "8", "--export", str(weights), "--quiet"])
    assert res.exit_code == 0, res.output
    model, meta = load_file(weights)
    assert meta["steps"] == 2 and model.config.N == 8

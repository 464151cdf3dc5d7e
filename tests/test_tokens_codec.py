"""The tokens codec with the shipped tokenizer: real encodes, a real rANS stream, rate control,
progressive truncation, corrupted streams, determinism across processes, the command line."""

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
from dappled.codec.container import PACKET_HEADER_SIZE
from dappled.codec.tokens.codec import (
    _HEAD,
    PAYLOAD_VERSION,
    _order,
    allocate_adaptive,
    allocate_uniform,
    analyse,
    decode_tiles,
    join_tiles,
    prefix_lengths,
    split_tiles,
    truncate_stream,
)
from dappled.datasets import SAMPLE_IMAGE, load_image, save_image
from dappled.entropy.rans import rans_decode, rans_encode
from dappled.errors import BitstreamError, DappledError, OptionError
from dappled.eval.metrics import psnr
from dappled.models.tokens.store import load_shipped


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """An odd-sized 150x170 crop of the bundled sample (padded border tiles)."""
    return load_image(SAMPLE_IMAGE)[150:300, 250:420].copy()


@pytest.fixture(scope="module")
def streams(crop: np.ndarray) -> dict[float, bytes]:
    return {b: api.encode_image(crop, "tokens", bpp=b) for b in (0.05, 0.1, 0.2, 0.4)}


def _k_of(stream: bytes) -> np.ndarray:
    from dappled.entropy import decode_symbols

    payload = api.parse(stream).frames()[0].payload
    return decode_symbols(unpack_chunks(payload)["KS  "], 1 << 20)


def _n_tiles(image: np.ndarray) -> int:
    t = load_shipped(0).config.tile
    return -(-image.shape[0] // t) * -(-image.shape[1] // t)


def test_tiles_split_and_join_exactly(crop: np.ndarray) -> None:
    tiles = split_tiles(crop, 64)
    assert tiles.shape == (9, 3, 64, 64)
    assert split_tiles(crop, 32).shape == (30, 3, 32, 32)
    back = join_tiles((tiles * 255).round().astype(np.uint8), *crop.shape[:2])
    np.testing.assert_array_equal(back, crop)


def test_round_trip_rate_ladder_and_bpp_targets(crop: np.ndarray, streams: dict[float, bytes]) -> None:
    sizes, quals = [], []
    pixels = crop.shape[0] * crop.shape[1]
    for b, s in sorted(streams.items()):
        out = api.decode_image(s)
        assert out.shape == crop.shape and out.dtype == np.uint8
        bpp = 8 * len(s) / pixels
        assert bpp <= b * 1.0001, (b, bpp)  # the target is met with the container counted
        sizes.append(len(s))
        quals.append(psnr(crop, out))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert quals == sorted(quals) and quals[-1] > quals[0]
    assert quals[-1] > 20.0  # a trained tokenizer, not noise (flat gray: ~10 dB)
    assert 8 * sizes[1] / pixels > 0.5 * 0.1  # the budget is used, not wasted


def test_quality_presets_are_monotonic(crop: np.ndarray) -> None:
    sizes = [len(api.encode_image(crop, "tokens", quality=q)) for q in (1, 4, 8)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_adaptive_k_differs_per_tile_and_uniform_is_even(crop: np.ndarray) -> None:
    k = _k_of(api.encode_image(crop, "tokens", bpp=0.2))
    assert k.size == _n_tiles(crop) and k.min() >= 1 and np.unique(k).size > 1
    u = _k_of(api.encode_image(crop, "tokens", bpp=0.2, alloc="uniform"))
    assert u.max() - u.min() <= 1


def test_allocators_meet_budgets() -> None:
    rng = np.random.default_rng(0)
    n, kk = 12, 16
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(rng.uniform(5, 12, (n, kk)), 1)], 1)
    ladder = np.array([1, 2, 4, 8, 16])
    dist = 1e5 / (1 + ladder[None, :] * rng.uniform(0.2, 3.0, (n, 1)))  # convex, decreasing
    rate = cum[:, ladder]
    for budget in (10.0, 200.0, 800.0, 1e6):
        c = allocate_adaptive(dist, rate, budget)
        spent = rate[np.arange(n), c].sum()
        assert spent <= budget or (c == 0).all()
        k = allocate_uniform(n, kk, cum, budget)
        assert k.max() - k.min() <= 1 and k.min() >= 1
        assert cum[np.arange(n), k].sum() <= budget or (k == 1).all()
    # more budget never buys less
    spent = [rate[np.arange(n), allocate_adaptive(dist, rate, b)].sum() for b in (100, 300, 600, 900)]
    assert spent == sorted(spent)


def test_prefix_lengths_match_the_real_decoder() -> None:
    """The replayed Rans64 decoder says how many bytes the first e symbols need: decoding just
    that prefix gives them exactly, and one word (4 bytes) less does not (for most cuts)."""
    model = load_shipped(0)
    rng = np.random.default_rng(1)
    k = rng.integers(1, model.config.tokens + 1, 40)
    ids = rng.integers(0, model.config.codebook, (40, model.config.tokens))
    tiles, pos, ends = _order(k, int(k.max()))
    symbols = ids[tiles, pos]
    data = rans_encode(symbols, pos, model.tables)
    cuts = prefix_lengths(data, symbols, pos, model.tables, ends)
    assert cuts[-1] == len(data) and cuts == sorted(cuts)
    shorter_fails = 0
    for e, cut in zip(ends, cuts, strict=True):
        got = rans_decode(data[:cut].rstrip(b"\0"), pos[:e], model.tables)
        np.testing.assert_array_equal(got, symbols[:e])
        if cut > 8:
            bad = rans_decode(data[: cut - 4].rstrip(b"\0"), pos[:e], model.tables)
            shorter_fails += not np.array_equal(bad, symbols[:e])
    assert shorter_fails > len(ends) // 2


def test_progressive_truncation_decodes_the_prefix_tokens(crop: np.ndarray,
                                                          streams: dict[float, bytes]) -> None:
    full = streams[0.4]
    k = _k_of(full)
    model = load_shipped(0)
    a = analyse(0, crop)
    sizes = []
    for j in (1, 2, 5, int(k.max())):
        cut = truncate_stream(full, j)
        sizes.append(len(cut))
        out = api.decode_image(cut)
        expect = join_tiles(decode_tiles(model.model, a.ids, np.minimum(k, j)), *crop.shape[:2])
        np.testing.assert_array_equal(out, expect)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert truncate_stream(full, int(k.max())) == full
    with pytest.raises(OptionError):
        truncate_stream(full, 0)


def test_options_are_checked(crop: np.ndarray) -> None:
    for kwargs in ({"quality": 9}, {"quality": 0}, {"bpp": 0.0}, {"bpp": 0.1, "quality": 2},
                   {"bpp": 0.1, "bogus": "1"}, {"bpp": 0.1, "alloc": "greedy"}, {"bpp": 0.1, "model": "x"}):
        with pytest.raises(OptionError):
            api.encode_image(crop, "tokens", **kwargs)


def test_tiny_and_odd_images() -> None:
    for h, w in ((1, 1), (5, 130), (65, 3)):
        img = (np.arange(h * w * 3) % 251).astype(np.uint8).reshape(h, w, 3)
        out = api.decode_image(api.encode_image(img, "tokens", quality=2))
        assert out.shape == (h, w, 3)


def test_info_lists_the_sub_streams(streams: dict[float, bytes]) -> None:
    info = api.inspect(streams[0.1])
    assert info.codec == "tokens"
    assert set(info.streams) == {"HEAD", "KS  ", "TOKS"}



def test_bad_header_fields_are_bitstream_errors(streams: dict[float, bytes], crop: np.ndarray) -> None:
    from dappled.entropy import encode_symbols

    n = _n_tiles(crop)
    stream = streams[0.1]
    payload, _ = frame_payload(stream)
    chunks = unpack_chunks(payload)
    positions = int(_k_of(stream).max())
    bad = [
        {"HEAD": _HEAD.pack(PAYLOAD_VERSION + 1, 0, positions, 0)},  # version
        {"HEAD": _HEAD.pack(PAYLOAD_VERSION, 9, positions, 0)},  # model id
        {"HEAD": _HEAD.pack(PAYLOAD_VERSION, 0, 0, 0)},  # no positions
        {"HEAD": _HEAD.pack(PAYLOAD_VERSION, 0, 200, 0)},  # more than K
        {"HEAD": _HEAD.pack(PAYLOAD_VERSION, 0, positions + 1, 0)},  # more than any tile has
        {"HEAD": _HEAD.pack(PAYLOAD_VERSION, 0, positions, 0)[:-1]},  # short
        {"KS  ": encode_symbols(np.full(n - 1, 3))},  # one count short
        {"KS  ": encode_symbols(np.full(n, 0))},  # k = 0
        {"KS  ": encode_symbols(np.full(n, 999))},  # k > K
        {"TOKS": b"\x01" * 100_000},  # longer than possible
    ]
    for change in bad:
        with pytest.raises(BitstreamError):
            api.decode_image(forge(stream, pack_chunks({**chunks, **change})))
    missing = {k: v for k, v in chunks.items() if k != "TOKS"}
    with pytest.raises(BitstreamError):
        api.decode_image(forge(stream, pack_chunks(missing)))
    with pytest.raises(BitstreamError):  # damage without a CRC fix-up: the container catches it
        broken = bytearray(stream)
        broken[-20] ^= 0x55
        api.decode_image(bytes(broken))


def test_oversized_frames_are_refused(streams: dict[float, bytes]) -> None:
    from dappled.codec.tokens.codec import MAX_PIXELS, TokensCodec
    from dappled.errors import LimitError

    container = api.parse(streams[0.05])
    header = dataclasses.replace(container.header, width=8192, height=8192)
    assert 8192 * 8192 > MAX_PIXELS
    with pytest.raises(LimitError):
        TokensCodec().decode_image(header, container.packets)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupted_payloads_only_raise_bitstream_error(streams: dict[float, bytes], crop: np.ndarray,
                                                       data: st.DataObject) -> None:
    payload = bytearray(frame_payload(streams[0.1])[0])
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(payload) - 1))
        payload[pos] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        payload = payload[: data.draw(st.integers(0, len(payload)))]
    try:
        out = api.decode_image(forge(streams[0.1], bytes(payload)))
        assert out.shape == crop.shape
    except BitstreamError:
        pass


def test_truncated_files_only_raise_bitstream_error(streams: dict[float, bytes]) -> None:
    s = streams[0.05]
    # (a stream cut exactly before its END packet is a complete image: the container allows it)
    for n in range(0, len(s) - PACKET_HEADER_SIZE, max(1, len(s) // 40)):
        with pytest.raises(BitstreamError):
            api.decode_image(s[:n])


def test_decode_twice_is_identical(streams: dict[float, bytes]) -> None:
    np.testing.assert_array_equal(api.decode_image(streams[0.2]), api.decode_image(streams[0.2]))


@pytest.mark.slow
def test_decode_in_another_process_is_identical(streams: dict[float, bytes], tmp_path: Path) -> None:
    """Token ids decode exactly anywhere (integer tables); the float32 decoder network is
    reproducible for a given machine and torch thread count, which both processes share."""
    src = tmp_path / "s.dpl"
    src.write_bytes(streams[0.2])
    here = api.decode_image(streams[0.2])
    code = (
        "import sys, torch, numpy as np; torch.set_num_threads(int(sys.argv[3])); "
        "from dappled.codec import api; "
        "np.save(sys.argv[2], api.decode_image(open(sys.argv[1], 'rb').read()))"
    )
    out = tmp_path / "o.npy"
    subprocess.run([sys.executable, "-c", code, str(src), str(out), str(torch.get_num_threads())], check=True)
    np.testing.assert_array_equal(np.load(out), here)


def test_cli_encode_decode_with_bpp(tmp_path: Path, crop: np.ndarray) -> None:
    png = tmp_path / "in.png"
    save_image(png, crop)
    runner = CliRunner()
    res = runner.invoke(cli, ["encode", str(png), "-o", str(tmp_path / "a.dpl"), "--codec", "tokens",
                              "--bpp", "0.1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert 8 * (tmp_path / "a.dpl").stat().st_size <= 0.1 * crop.shape[0] * crop.shape[1]
    res = runner.invoke(cli, ["decode", str(tmp_path / "a.dpl"), "-o", str(tmp_path / "a.png")])
    assert res.exit_code == 0, res.output
    assert load_image(tmp_path / "a.png").shape == crop.shape
    res = runner.invoke(cli, ["encode", str(png), "-o", str(tmp_path / "b.dpl"), "--codec", "tokens",
                              "-O", "alloc=nope"])
    assert res.exit_code == 2 and "alloc" in res.output
    (tmp_path / "c.dpl").write_bytes((tmp_path / "a.dpl").read_bytes()[:-9])
    res = runner.invoke(cli, ["decode", str(tmp_path / "c.dpl"), "-o", str(tmp_path / "c.png")])
    assert res.exit_code == 1 and "error" in res.output and "Traceback" not in res.output


def test_any_error_is_typed(streams: dict[float, bytes]) -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        s = bytearray(streams[0.05])
        s[int(rng.integers(len(s)))] ^= int(rng.integers(1, 256))
        try:
            api.decode_image(bytes(s))
        except DappledError:
            pass

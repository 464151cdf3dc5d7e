"""Bounded work and memory for every input (issue 10): each crafted or oversized input that used to
end in a traceback, a hang or a huge allocation, as a regression test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _cli import dappled_cmd, one_line_error, run_dappled
from click.testing import CliRunner

from dappled.cli import cli
from dappled.cli.main import friendly_errors
from dappled.codec import api
from dappled.codec.container import KEYFRAME, ColorSpace, Packet, PacketType, StreamHeader, pack
from dappled.codec.splat.decoder import MAX_COVERAGE
from dappled.codec.splat.format import pack_gaussians
from dappled.datasets import SAMPLE_IMAGE, load_image, save_image
from dappled.entropy import encode_symbols
from dappled.entropy.golomb import decode_nonneg
from dappled.entropy.varint import uvarint
from dappled.errors import BitstreamError, LimitError
from dappled.models.splat.symbols import LOG_SCALE_MAX, QuantConfig, QuantizedGaussians


def _dappled(*args: str, stdin: bytes | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    return run_dappled(*args, stdin=stdin, text=False, timeout=timeout)


def _splat_stream(chunks: dict[str, bytes], w: int, h: int) -> bytes:
    from dappled.codec.chunks import pack_chunks

    header = StreamHeader(1, w, h, 1, 0, 1, ColorSpace.RGB)
    return pack(header, [Packet(PacketType.FRAME, pack_chunks(chunks), 0, KEYFRAME)])


# ---------------------------------------------------------------- splat: what a stream can justify


def _four_million_with_one_wide_gap() -> tuple[bytes, int]:
    """The POS chunk of 4M Gaussians: all gaps zero but one of 40 bits (233-byte stream)."""
    n = 1 << 22
    buckets = np.zeros(n, np.int64)
    buckets[1] = 40
    head = encode_symbols(buckets)
    return uvarint(len(head)) + head + bytes([0xFF] * 4 + [0xFE]), n


def test_golomb_decode_memory_does_not_grow_with_the_widest_value() -> None:
    pos, n = _four_million_with_one_wide_gap()
    gaps = decode_nonneg(pos, n)  # used to build 4M x 39 int64 arrays (1.3 GB): MemoryError
    assert len(gaps) == n and gaps[1] == (1 << 40) - 1 and gaps[0] == 0 and gaps[2:].max() == 0


def test_splat_stream_declaring_millions_of_gaussians_in_a_few_bytes_is_refused() -> None:
    pos, n = _four_million_with_one_wide_gap()
    zeros = encode_symbols(np.zeros(n, np.int64))  # one value: a few bytes for 4M symbols
    from dappled.codec.chunks import pack_chunks

    chunks = {
        "HEAD": bytes([1]) + n.to_bytes(4, "little") + QuantConfig().to_bytes(),
        "POS ": pos,
        "SHAP": pack_chunks({"SX  ": zeros, "SY  ": zeros, "RHO ": zeros}),
        "COLR": pack_chunks({"Y   ": zeros, "CO  ": zeros, "CG  ": zeros}),
    }
    data = _splat_stream(chunks, 2048, 2048)
    assert len(data) < 400
    with pytest.raises(LimitError, match="per byte"):
        api.decode_image(data)


def _pile_of_big_gaussians(n: int, size: int, seed: int = 0) -> bytes:
    """A CRC-valid splat stream: `n` Gaussians at one spot with the largest scale, colors random
    (so that the stream holds enough bytes to pass the per-byte cap)."""
    cfg = QuantConfig().canonical()
    top = int(np.floor(LOG_SCALE_MAX / cfg.log_scale_step))
    rng = np.random.default_rng(seed)
    q = QuantizedGaussians(np.full(n, 2 * size), np.full(n, 2 * size), np.full(n, top), np.full(n, top),
                           np.zeros(n, np.int64), rng.integers(-200, 200, (n, 3)))
    return _splat_stream(pack_gaussians(q, cfg, size, size), size, size)


@pytest.mark.parametrize("size", [256, 384, 512])
def test_splat_stream_covering_each_pixel_thousands_of_times_is_refused(size: int) -> None:
    # 256x256 took 11.5 s, 384x384 hung, 512x512 ran out of memory in numba_cpu._row_table
    data = _pile_of_big_gaussians(3000, size)
    assert len(data) < 16_000
    with pytest.raises(LimitError, match="cover"):
        api.decode_image(data)


def test_coverage_cap_leaves_real_streams_alone() -> None:
    image = load_image(SAMPLE_IMAGE)[100:164, 200:296]
    out = api.decode_image(api.encode_image(image, "splat", bpp=2.0, iterations=40))
    assert out.shape == image.shape
    assert MAX_COVERAGE >= 64


def test_cli_refuses_the_crafted_splat_streams_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "pile.dpl"
    path.write_bytes(_pile_of_big_gaussians(3000, 384))
    err = one_line_error(_dappled("decode", str(path), "-o", str(tmp_path / "x.png")))
    assert "cover" in err and not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- reading streams


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_are_refused(device: str, tmp_path: Path) -> None:
    for args in (["info", device], ["decode", device, "-o", str(tmp_path / "x.png")]):
        err = one_line_error(_dappled(*args, timeout=60))
        assert "not a regular file" in err


def test_huge_sparse_stream_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    image = load_image(SAMPLE_IMAGE)[:16, :16]
    data = api.encode_image(image, "jpeg")
    path = tmp_path / "huge.dpl"
    with open(path, "wb") as f:
        f.write(data[:32])  # a valid 16x16 header, then 8 GB of holes
        f.truncate(8 << 30)
    for args in (["info", str(path)], ["decode", str(path), "-o", str(tmp_path / "x.png")]):
        err = one_line_error(_dappled(*args, timeout=60))
        assert "over the" in err
    with pytest.raises(LimitError):
        api.read_stream(path)
    zeros = tmp_path / "zeros.dpl"
    with open(zeros, "wb") as f:
        f.truncate(8 << 30)
    assert "bad magic" in one_line_error(_dappled("info", str(zeros), timeout=60))


def test_standard_input_is_read_with_the_same_cap(tmp_path: Path) -> None:
    image = load_image(SAMPLE_IMAGE)[:16, :16]
    data = api.encode_image(image, "jpeg")
    proc = _dappled("info", "-", stdin=data)
    assert proc.returncode == 0 and b"codec:   jpeg" in proc.stdout
    err = one_line_error(_dappled("info", "-", stdin=data + bytes(1 << 20)))
    assert "more than" in err


def test_memory_error_is_one_line() -> None:
    @friendly_errors
    def greedy() -> None:
        raise MemoryError

    proc_err = CliRunner().invoke(cli, ["codecs"])  # a real command still works
    assert proc_err.exit_code == 0
    with pytest.raises(SystemExit) as exc:
        greedy()
    assert exc.value.code == 1


def test_decode_to_missing_folder_fails_first_and_names_it(tmp_path: Path) -> None:
    src = tmp_path / "a.dpl"
    src.write_bytes(api.encode_image(load_image(SAMPLE_IMAGE)[:16, :16], "jpeg"))
    err = one_line_error(_dappled("decode", str(src), "-o", str(tmp_path / "nope" / "x.png")))
    assert "nope" in err and ".part" not in err


# ---------------------------------------------------------------- video outputs and options


@pytest.fixture(scope="module")
def video_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _clips import FAST, moving_pattern

    from dappled.codec.video import encode_video

    path = tmp_path_factory.mktemp("video") / "v6.dpl"
    path.write_bytes(encode_video(moving_pattern(6), 25, "splat", gop=3, kbps=300, **FAST).data)
    return path


def test_failed_video_decode_to_frames_leaves_nothing(video_stream: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.dpl"
    data = video_stream.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])  # ends inside a later frame
    frames = tmp_path / "frames"
    frames.mkdir()
    one_line_error(_dappled("decode", str(cut), "-o", str(frames / "%04d.png")))
    assert list(frames.iterdir()) == []
    proc = _dappled("decode", str(video_stream), "-o", str(frames / "%04d.png"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in frames.iterdir()) == [f"{i:04d}.png" for i in range(6)]


def test_play_times_out_on_a_stalled_pipe(video_stream: Path, tmp_path: Path) -> None:
    cmd = dappled_cmd()
    checks = tmp_path / "sums.txt"
    r, w = os.pipe()
    os.write(w, video_stream.read_bytes()[:40])  # the header, then nothing more, pipe kept open
    proc = subprocess.run([*cmd, "play", "-", "--headless", "--timeout", "1", "--checksums", str(checks)],
                          stdin=r, capture_output=True, timeout=60)
    os.close(r)
    os.close(w)
    assert proc.returncode == 1 and b"stalled" in proc.stderr and b"Traceback" not in proc.stderr
    assert not checks.exists()  # no checksum file from a failed playback


def _write_png(tmp_path: Path, size: int = 64) -> Path:
    path = tmp_path / "in.png"
    save_image(path, load_image(SAMPLE_IMAGE)[100 : 100 + size, 200 : 200 + size])
    return path


@pytest.mark.parametrize("args", [["-O", "iterations=5"], ["--codec", "splatv", "-O", "i_iterations=5"]])
def test_very_short_fits_work(args: list[str], tmp_path: Path) -> None:
    out = tmp_path / "x.dpl"
    proc = _dappled("encode", str(_write_png(tmp_path)), "-o", str(out), "--quiet", *args)
    assert proc.returncode == 0, proc.stderr
    assert api.decode_image(out.read_bytes()).shape == (64, 64, 3)


@pytest.mark.parametrize("args,code,needle", [
    (["-O", "iterations=-5"], 2, "got -5"),
    (["--codec", "splat", "-O", "overprovision=nan"], 2, "got nan"),
    (["--codec", "splatv", "-O", "i_iterations=-1"], 2, "got -1"),
    (["--seed", "-1"], 2, "-1"),
    (["--seed", "99999999999999999999999"], 2, "99999999999999999999999"),
])
def test_bad_encode_options_are_one_line(args: list[str], code: int, needle: str, tmp_path: Path) -> None:
    out = tmp_path / "x.dpl"
    err = one_line_error(_dappled("encode", str(_write_png(tmp_path)), "-o", str(out), *args), code=code)
    assert needle in err and not out.exists()


@pytest.mark.parametrize("args,needle", [
    (["--gop", "0"], "--gop"),
    (["--kbps", "-5"], "-5"),
    (["--frames", "2", "-O", "i_iterations=-1"], "got -1"),
])
def test_bad_video_options(video_stream: Path, args: list[str], needle: str, tmp_path: Path) -> None:
    frames = tmp_path / "clip"
    frames.mkdir()
    for i in range(3):
        save_image(frames / f"{i:04d}.png", load_image(SAMPLE_IMAGE)[:48, :64])
    proc = _dappled("encode", str(frames / "%04d.png"), "-o", str(tmp_path / "v.dpl"), "--kbps", "300", *args)
    one_line_error(proc, needle, code=2)
    assert not (tmp_path / "v.dpl").exists()


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    from PIL import Image

    ramp = np.tile(np.linspace(0, 65535, 512).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    img = load_image(tmp_path / "ramp.png")
    assert (img == 255).mean() < 0.01 and img.max() == 255 and img.min() == 0


def test_bitstream_errors_stay_bitstream_errors() -> None:
    with pytest.raises(BitstreamError):
        api.decode_image(b"DPL1" + bytes(100))


def test_serve_logs_a_malformed_request_in_one_line(tmp_path: Path) -> None:
    import socket

    cmd = dappled_cmd()
    proc = subprocess.Popen([*cmd, "serve", str(tmp_path), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        for request in (b"GET /\x01\x02 HTTP/1.1\r\nHost: x\r\n\r\n", b"GARBAGE\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(request)
                assert s.recv(64).startswith(b"HTTP/1.")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    # at most one line per request (aiohttp logs some malformed requests, answers others silently)
    assert 1 <= len(lines) <= 2 and all(ln.startswith("dappled serve: ") for ln in lines), err


@pytest.mark.parametrize("name,size,needle", [
    ("rat", 2048, "latent values"), ("rat", 4096, "over the decoder's limit"), ("tokens", 4096, "tiles")])
def test_small_learned_streams_declaring_huge_images_are_refused(name: str, size: int, needle: str) -> None:
    # found by the fuzzer: a 379-byte rat stream declaring 4096x4096 decoded for 40 s before
    # it was refused; the entropy decoder and the network now only get what the bytes justify
    from dappled.codec import registry
    from dappled.codec.container import unpack

    image = load_image(SAMPLE_IMAGE)[:32, :48]
    c = unpack(api.encode_image(image, name, **registry.get(name).test_encode_kwargs()))
    h = c.header
    big = StreamHeader(h.codec_id, size, size, 1, h.fps_num, h.fps_den, h.color_space)
    with pytest.raises(LimitError, match=needle):
        api.decode_image(pack(big, c.frames()))

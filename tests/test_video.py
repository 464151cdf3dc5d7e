"""The splat video codec and PyAV video I/O: real PyAV encodes, real rANS streams, no mocks.

A 6-frame clip (a crop of carphone, or a synthetic moving pattern when the shared data is not
there) is encoded once per module with short fits; tests then decode it in every way a user
can: from memory, from a trickling pipe, by seeking through the index, through the CLI.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from _cli import one_line_error, run_dappled
from _clips import FAST, moving_pattern
from click.testing import CliRunner

from dappled.cli import cli
from dappled.codec.container import PACKET_HEADER_SIZE, ContainerReader, PacketType
from dappled.codec.splat.video.format import FRAME_I, FRAME_P, frame_type
from dappled.codec.video import VideoReader, decode_video, encode_video, iter_decode
from dappled.datasets.video import load_clip, probe_video, read_frames, write_video
from dappled.errors import BitstreamError, InputError, TruncatedError
from dappled.eval.metrics import psnr

CARPHONE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "video" / "carphone_pristine.mp4"


def _synthetic(n: int = 6) -> list[np.ndarray]:
    return moving_pattern(n)


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    if CARPHONE.exists():
        return [f[40:88, 56:120].copy() for f in load_clip(CARPHONE, 0, 6)]
    return _synthetic()


@pytest.fixture(scope="module")
def coded(clip: list[np.ndarray]):
    return encode_video(clip, Fraction(25), kbps=160, gop=3, keep_recon=True, **FAST)


def _dappled(*args: str) -> subprocess.CompletedProcess[str]:
    return run_dappled(*args, timeout=600)


# ---------------------------------------------------------------- codec


def test_roundtrip_matches_encoder_and_is_deterministic(clip, coded) -> None:
    out = decode_video(coded.data)
    assert len(out) == len(clip) == coded.frames
    assert all(f.shape == clip[0].shape and f.dtype == np.uint8 for f in out)
    for a, b in zip(out, coded.recon, strict=True):
        assert np.array_equal(a, b)  # the encoder tracked the decoder's state exactly
    again = decode_video(coded.data)
    assert all(np.array_equal(a, b) for a, b in zip(out, again, strict=True))
    scores = [psnr(a, b) for a, b in zip(clip, out, strict=True)]
    assert min(scores) > 18, scores
    types = [s.type for s in coded.stats]
    assert types == [FRAME_I, FRAME_P, FRAME_P, FRAME_I, FRAME_P, FRAME_P]


def test_rate_control_hits_the_target(clip, coded) -> None:
    seconds = len(clip) / 25
    kbps = 8 * len(coded.data) / 1000 / seconds
    assert 0.7 * 160 <= kbps <= 1.05 * 160, kbps
    # predicted frames are much cheaper than intra frames
    i_bytes = np.mean([s.bytes for s in coded.stats if s.type == FRAME_I])
    p_bytes = np.mean([s.bytes for s in coded.stats if s.type == FRAME_P])
    assert p_bytes < 0.6 * i_bytes


def test_packets_one_per_frame_with_keyframe_flags(coded) -> None:
    reader = ContainerReader(io.BytesIO(coded.data))
    packets = list(reader)
    frames = [p for p in packets if p.type == PacketType.FRAME]
    assert [p.frame for p in frames] == list(range(6))
    assert [p.keyframe for p in frames] == [True, False, False, True, False, False]
    assert [frame_type(p.payload) for p in frames] == [FRAME_I, FRAME_P, FRAME_P] * 2
    assert packets[0].type == PacketType.CONFIG
    assert [p.type for p in packets[-2:]] == [PacketType.INDEX, PacketType.END]


class _Trickle(io.RawIOBase):
    """A non-seekable stream that hands out at most 7 bytes per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = 7 if n < 0 else min(n, 7)
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


def test_decode_from_a_packet_stream(coded) -> None:
    full = decode_video(coded.data)
    got = list(iter_decode(_Trickle(coded.data)))
    assert [i for i, _ in got] == list(range(6))
    assert all(np.array_equal(a, b) for (_, a), b in zip(got, full, strict=True))
    # and through a real OS pipe, fed by another thread
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            for k in range(0, len(coded.data), 100):
                f.write(coded.data[k : k + 100])
                f.flush()

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb") as f:
        piped = [img for _, img in iter_decode(f)]
    t.join()
    assert all(np.array_equal(a, b) for a, b in zip(piped, full, strict=True))


def test_seek_through_the_index(coded) -> None:
    full = decode_video(coded.data)
    with VideoReader(io.BytesIO(coded.data)) as reader:
        assert [f for f, _ in reader.index] == [0, 3]
        key, offset = reader.keyframe_before(5)
        assert key == 3
        # the offset points at the intra frame's packet
        head = ContainerReader(io.BytesIO(coded.data))
        head._stream.seek(offset)
        p = head.read_packet()
        assert p is not None and p.frame == 3 and p.keyframe
        assert np.array_equal(reader.frame(4), full[4])
        assert np.array_equal(reader.frame(0), full[0])
        assert [i for i, _ in reader.frames(2)] == [2, 3, 4, 5]
        assert reader.time_to_frame(0.13) == 3  # 25 fps
    # without a usable index (trailer damaged) the reader scans the packets instead
    broken = bytearray(coded.data)
    broken[-PACKET_HEADER_SIZE - 4 : -PACKET_HEADER_SIZE] = b"\xff\xff\xff\x7f"
    with VideoReader(io.BytesIO(bytes(broken))) as reader:
        assert [f for f, _ in reader.index] == [0, 3]
        assert np.array_equal(reader.frame(5), full[5])


def test_corrupted_and_truncated_streams(coded) -> None:
    data = coded.data
    with pytest.raises(TruncatedError):
        decode_video(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    with pytest.raises(BitstreamError):
        decode_video(bytes(flipped))
    # a stream cut right after the first P frame's packet: a clean EOF, but frames are missing
    reader = ContainerReader(io.BytesIO(data))
    sizes = [PACKET_HEADER_SIZE + len(p.payload) for p in reader]
    cut = 32 + sum(sizes[:3])
    with pytest.raises(TruncatedError, match="2 of 6 frames"):
        decode_video(data[:cut])


def test_predicted_frame_without_reference_is_rejected(coded) -> None:
    from dappled.codec.container import StreamHeader
    from dappled.codec.video import build_stream

    packets = [p for p in ContainerReader(io.BytesIO(coded.data)) if p.type == PacketType.FRAME]
    header = StreamHeader(4, 64, 48, 2, 25, 1)
    from dappled.codec.container import Packet

    p1 = Packet(PacketType.FRAME, packets[1].payload, 0, 0)
    with pytest.raises(BitstreamError, match="without a preceding intra frame"):
        decode_video(build_stream(header, [p1]))


# ---------------------------------------------------------------- PyAV I/O


def test_write_and_read_video_formats(clip, tmp_path: Path) -> None:
    mkv, mp4, y4m = tmp_path / "a.mkv", tmp_path / "a.mp4", tmp_path / "a.y4m"
    assert write_video(mkv, clip, Fraction(30000, 1001)) == 6
    back = load_clip(mkv)
    assert all(np.array_equal(a, b) for a, b in zip(back, clip, strict=True))  # FFV1: lossless
    info = probe_video(mkv)
    assert (info.width, info.height, info.codec) == (64, 48, "ffv1")
    assert abs(float(info.fps) - 29.97) < 0.01
    write_video(mp4, clip, 25)
    back = load_clip(mp4)
    assert len(back) == 6 and min(psnr(a, b) for a, b in zip(clip, back, strict=True)) > 35
    assert probe_video(mp4).codec == "h264"
    write_video(y4m, clip, 25)
    assert len(load_clip(y4m)) == 6
    pattern = str(tmp_path / "f%03d.png")
    write_video(pattern, clip, 25)
    assert (tmp_path / "f005.png").exists()
    assert all(np.array_equal(a, b) for a, b in zip(load_clip(pattern), clip, strict=True))
    sub = list(read_frames(mkv, start=2, count=3))
    assert len(sub) == 3 and np.array_equal(sub[0], clip[2])


def test_bad_video_inputs_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError, match=r"junk\.mp4"):
        probe_video(bad)
    with pytest.raises(InputError, match=r"nothere\.mkv"):
        load_clip(tmp_path / "nothere.mkv")


# ---------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def source_mp4(clip, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vid") / "clip.mkv"
    write_video(path, clip, 25)
    return path


def test_cli_encode_decode_info(source_mp4: Path, clip, tmp_path: Path) -> None:
    runner = CliRunner()
    dpl = tmp_path / "c.dpl"
    opts = [w for k, v in FAST.items() for w in ("-O", f"{k}={v}")]
    res = runner.invoke(cli, ["encode", str(source_mp4), "-o", str(dpl), "--codec", "splat", "--kbps", "150",
                              "--gop", "3", "--frames", "4", "--start", "1", "--quiet", *opts])
    assert res.exit_code == 0, res.output
    assert "4 frames 64x48" in res.output
    res = runner.invoke(cli, ["info", str(dpl)])
    assert res.exit_code == 0 and "splatv" in res.output and "4 frame(s)" in res.output
    out = tmp_path / "out.mkv"
    res = runner.invoke(cli, ["decode", str(dpl), "-o", str(out)])
    assert res.exit_code == 0, res.output
    frames = load_clip(out)
    assert len(frames) == 4
    assert np.array_equal(frames[0], decode_video(dpl.read_bytes())[0])
    assert psnr(frames[0], clip[1]) > 18  # --start 1


def test_cli_truncated_video_stream_is_a_one_line_error(coded, tmp_path: Path) -> None:
    cut = tmp_path / "cut.dpl"
    cut.write_bytes(coded.data[: len(coded.data) - 200])
    res = _dappled("decode", str(cut), "-o", str(tmp_path / "x.mkv"))
    one_line_error(res, "cut.dpl")
    assert not (tmp_path / "x.mkv").exists()


def test_block_motion_field_finds_a_moving_region_and_round_trips() -> None:
    from dappled.codec.motion import estimate_motion
    from dappled.codec.splat.video.decoder import apply_motion
    from dappled.codec.splat.video.format import pack_motion, parse_motion
    from dappled.models.splat.quantize import QuantConfig, QuantizedGaussians

    rng = np.random.default_rng(1)
    prev = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    prev[:, :] = np.clip(prev.astype(int) // 2 + 60, 0, 255)
    cur = prev.copy()
    cur[20:84, 64:128] = prev[13:77, 59:123]  # the right half's content moves by (+5, +7) px
    m = estimate_motion(prev, cur, scale=4, block=32)
    vecs = [tuple(v) for v in m.vectors]
    assert (20, 28) in vecs  # (5, 7) px in quarter pixels
    moved_label = vecs.index((20, 28))
    assert m.labels[1, 3] == moved_label and m.labels[0, 0] != moved_label
    cfg = QuantConfig().canonical()
    back = parse_motion(pack_motion(m), cfg, 128, 96)
    assert np.array_equal(back.vectors, m.vectors) and np.array_equal(back.labels, m.labels)
    q = QuantizedGaussians(np.array([4 * 100, 4 * 10, 4 * 127]), np.array([4 * 40, 4 * 10, 4 * 95]),
                           np.zeros(3, np.int64), np.zeros(3, np.int64), np.zeros(3, np.int64),
                           np.zeros((3, 3), np.int64))
    moved = apply_motion(q, m, cfg, 128, 96)
    assert (moved.x[0], moved.y[0]) == (400 + 20, 160 + 28)  # inside the moving blocks
    assert (moved.x[1], moved.y[1]) == (40, 40)  # a static block
    assert moved.x[2] <= 4 * 128 - 1 and moved.y[2] <= 4 * 96 - 1  # clamped to the frame
    with pytest.raises(BitstreamError):
        parse_motion(pack_motion(m)[:5], cfg, 128, 96)


def test_scene_cut_is_coded_as_an_intra_frame() -> None:
    """A cut to unrelated content mid-group: the encoder codes that frame intra (flagged, in
    the index, seekable) and it is far better than the predicted frame it replaces."""
    yy, xx = np.mgrid[0:48, 0:64]
    a, b = [], []
    for t in range(3):  # a smooth scene with a block moving one pixel a frame: easy to predict
        img = np.zeros((48, 64, 3), np.uint8)
        img[..., 0] = xx * 3
        img[..., 1] = yy * 4
        img[..., 2] = 90
        img[12:24, 20 + t : 32 + t] = (240, 200, 30)
        a.append(img)
    for t in range(3):  # then something else entirely
        img = np.zeros((48, 64, 3), np.uint8)
        img[..., 0] = 30
        img[..., 1] = (xx * 3 + yy * 6 + t) % 256
        img[..., 2] = ((yy // 8 + xx // 8) % 2) * 200 + 20
        b.append(img)
    clip = a + b
    cut = encode_video(clip, Fraction(25), kbps=200, gop=6, keep_recon=True, **FAST)
    off = encode_video(clip, Fraction(25), kbps=200, gop=6, keep_recon=True, cut_drop_db=0, **FAST)
    assert [s.type for s in off.stats] == [FRAME_I] + [FRAME_P] * 5
    assert [s.type for s in cut.stats] == [FRAME_I, FRAME_P, FRAME_P, FRAME_I, FRAME_P, FRAME_P]
    out = decode_video(cut.data)
    assert all(np.array_equal(x, y) for x, y in zip(out, cut.recon, strict=True))
    assert psnr(clip[3], out[3]) > psnr(clip[3], off.recon[3]) + 3
    with VideoReader(io.BytesIO(cut.data)) as reader:
        assert reader.keyframe_before(4)[0] == 3
        assert np.array_equal(reader.frame(4), out[4])

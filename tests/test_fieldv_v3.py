"""Field video payload version 3 (docs/format.md, "Field video"): the compact frame layout,
predicted frames without a residual, and the cubic sub-pixel interpolation. Layout round trips
and damaged frames, the interpolation held to a slow numpy reference, the encoder's choice
between a residual and none, and the bytes it saves."""

from __future__ import annotations

import numpy as np
import pytest
from _clips import moving_pattern

from dappled.codec.field.video.format import (
    FRAME_I,
    FRAME_P,
    FRAME_P_NET,
    FRAME_P_SKIP,
    V3_MARK,
    frame_type,
    interpolation,
    pack_frame,
    parse_frame,
)
from dappled.codec.motion import CUBIC_TAPS, Motion, _luma, _moved_luma, compensate, no_motion
from dappled.codec.video import decode_video, encode_video
from dappled.errors import BitstreamError
from dappled.quality import psnr


def _cubic_reference(prev: np.ndarray, m: Motion) -> np.ndarray:
    """The cubic interpolation written out tap by tap in numpy (the slow reference)."""
    h, w = prev.shape[:2]
    rows, cols = m.labels.shape
    by = np.minimum(np.arange(h) // m.block, rows - 1)
    bx = np.minimum(np.arange(w) // m.block, cols - 1)
    v = m.vectors[m.labels[by[:, None], bx[None, :]]]
    sy = (np.arange(h)[:, None] << 2) - v[..., 1]
    sx = (np.arange(w)[None, :] << 2) - v[..., 0]
    acc = np.zeros((h, w, 3), np.int64)
    for a in range(4):
        for b in range(4):
            yy = np.clip((sy >> 2) + a - 1, 0, h - 1)
            xx = np.clip((sx >> 2) + b - 1, 0, w - 1)
            wgt = CUBIC_TAPS[sy & 3][..., a] * CUBIC_TAPS[sx & 3][..., b]
            acc += prev[yy, xx].astype(np.int64) * wgt[..., None]
    return np.clip((acc + 2048) >> 12, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", range(6))
def test_cubic_compensation_matches_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(1, 70)), int(rng.integers(1, 50))
    block = int(rng.choice([8, 16, 33]))
    rows, cols = -(-h // block), -(-w // block)
    k = int(rng.integers(1, 6))
    vecs = np.stack([rng.integers(-4 * w, 4 * w + 1, k), rng.integers(-4 * h, 4 * h + 1, k)], 1)
    m = Motion(block, vecs.astype(np.int64), rng.integers(0, k, (rows, cols)).astype(np.int64))
    prev = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    out = compensate(prev, m, filt="cubic")
    assert np.array_equal(out, _cubic_reference(prev, m))
    assert np.array_equal(compensate(prev, m, filt="cubic"), out)  # the same pixels each time


def test_cubic_taps_and_whole_pixel_shifts() -> None:
    assert (CUBIC_TAPS.sum(axis=1) == 64).all()
    rng = np.random.default_rng(1)
    prev = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    m = Motion(16, np.array([[8, -4]]), np.zeros((2, 3), np.int64))  # 2 px right, 1 px up
    assert np.array_equal(compensate(prev, m, filt="cubic"), compensate(prev, m))  # whole pixels: a copy
    assert np.array_equal(compensate(prev, no_motion(48, 32), filt="cubic"), prev)
    # a half-pixel shift of a smooth ramp lands between its neighbours (the filter is not bilinear
    # on texture, but on a linear ramp it is exact)
    ramp = np.repeat(np.repeat((np.arange(48) * 4).astype(np.uint8)[None, :, None], 32, 0), 3, 2)
    half = compensate(ramp, Motion(16, np.array([[2, 0]]), np.zeros((2, 3), np.int64)), filt="cubic")
    assert np.array_equal(half[:, 2:-2].astype(int), (ramp[:, 1:-3].astype(int) + ramp[:, 2:-2]) // 2)
    with pytest.raises(ValueError):
        compensate(prev, Motion(16, np.array([[1, 0]]), np.zeros((2, 3), np.int64)), filt="lanczos")


def test_the_search_prices_vectors_with_the_cubic_prediction() -> None:
    """The search's float prediction of the luma is the exact integer one, to rounding."""
    rng = np.random.default_rng(2)
    # texture within 40..215, so that no channel's overshoot is clipped by the integer path
    prev = (40 + rng.integers(0, 176, (40, 56, 3))).astype(np.uint8)
    for v in ((1, 0), (3, -2), (-6, 5), (2, 2), (0, 0)):
        m = Motion(8, np.array([v]), np.zeros((5, 7), np.int64))
        exact = _luma(compensate(prev, m, filt="cubic")) / 255.0
        fast = _moved_luma(_luma(prev) / 255.0, v, 2, "cubic")
        assert np.abs(exact - fast).max() < 1 / 255.0, v  # each channel rounded once


def test_layout_round_trips_and_is_compact() -> None:
    cases = [
        (FRAME_I, {"field": b"F" * 40}),
        (FRAME_P_NET, {"motion": b"\x10mv", "field": b"N" * 300}),
        (FRAME_P_NET, {"field": b"N" * 5}),
        (FRAME_P, {"motion": b"\x10" + b"m" * 200, "lat": b"L" * 130, "esc": b"E" * 3, "n_esc": 2}),
        (FRAME_P, {"lat": b"L" * 8}),
        (FRAME_P_SKIP, {"motion": b"\x08abc"}),
        (FRAME_P_SKIP, {}),
    ]
    for ftype, kw in cases:
        data = pack_frame(ftype, **kw)  # type: ignore[arg-type]
        assert data[0] == V3_MARK | ftype and frame_type(data) == ftype
        parts = parse_frame(data)
        assert (parts.version, parts.ftype, parts.n_esc) == (3, ftype, kw.get("n_esc", 0))
        want = {"MOTN": kw.get("motion", b""), "FLD ": kw.get("field", b""), "LAT ": kw.get("lat", b""),
                "ESC ": kw.get("esc", b"")}
        assert parts.chunks == {k: v for k, v in want.items() if v}
    # the framing of a latents-only frame: 4 bytes (version 2: 31 with its chunk headers)
    assert len(pack_frame(FRAME_P, motion=b"m" * 20, lat=b"L" * 9)) == 1 + 1 + 20 + 1 + 1 + 9
    assert pack_frame(FRAME_P_SKIP) == bytes([V3_MARK | FRAME_P_SKIP])
    assert interpolation(3) == "cubic" and interpolation(2) == interpolation(1) == "bilinear"


def test_damaged_layouts_are_refused() -> None:
    good = pack_frame(FRAME_P, motion=b"\x10" + b"m" * 200, lat=b"L" * 130, n_esc=0)
    for cut in range(1, 6):
        with pytest.raises(BitstreamError):
            parse_frame(good[:cut])
    with pytest.raises(BitstreamError, match="type"):
        parse_frame(bytes([V3_MARK | 13]) + b"xx")  # bit 0x04 reserved (0x08: version 4's filter)
    with pytest.raises(BitstreamError, match="4 bytes"):
        parse_frame(bytes([V3_MARK | FRAME_P]) + b"\xff\xff\xff\xff\x01")
    with pytest.raises(BitstreamError):
        parse_frame(b"")


@pytest.fixture(scope="module")
def still() -> tuple[list[np.ndarray], object]:
    """A pattern that stops moving after frame 1: its later frames are the prediction alone."""
    frames = moving_pattern(2, 48, 32) + [moving_pattern(2, 48, 32)[1]] * 3
    return frames, encode_video(frames, 25, "field", quality=4, gop=5, iterations=40, keep_recon=True)


def test_frames_that_need_no_residual_are_sent_without_one(still: tuple) -> None:
    _, res = still
    from dappled.codec.api import parse

    payloads = [p.payload for p in parse(res.data).frames()]
    types = [frame_type(p) for p in payloads]
    assert types[0] == FRAME_I and types[2:] == [FRAME_P_SKIP] * 3, types
    assert all(len(p) == 1 for p in payloads[2:])  # nothing moves: one byte of payload
    out = decode_video(res.data)
    assert all(np.array_equal(a, b) for a, b in zip(out, res.recon, strict=True))
    assert np.array_equal(out[4], out[1])  # the still frames repeat frame 1


def _cost(frames: list[np.ndarray], data: bytes, lam: float) -> float:
    """The predicted frames' rate-distortion cost, as the encoder weighs it: mean squared error
    on [0, 1] plus lambda times bits per pixel, summed over the frames after the first."""
    from dappled.codec.api import parse

    out = decode_video(data)
    n = frames[0].shape[0] * frames[0].shape[1]
    total = 0.0
    for f, o, p in zip(frames[1:], out[1:], parse(data).frames()[1:], strict=True):
        total += float(np.mean((f.astype(float) - o) ** 2)) / 255.0**2 + lam * 8 * len(p.payload) / n
    return total


def test_skipping_lowers_the_rate_distortion_cost_on_a_still_clip(still: tuple) -> None:
    """Against the same clip with a residual forced on every predicted frame (skip=0): fewer
    bytes, and a lower cost at the predicted frames' lambda (the rule the encoder follows)."""
    from dappled.codec.field.encoder import LAMBDAS

    frames, res = still
    forced = encode_video(frames, 25, "field", quality=4, gop=5, iterations=40, skip=0)
    assert len(res.data) < len(forced.data) - 60, (len(res.data), len(forced.data))
    lam = LAMBDAS[4] * 1.4  # the predicted frames' (p_lambda)
    assert _cost(frames, res.data, lam) < _cost(frames, forced.data, lam)


def test_a_residual_is_kept_where_it_pays() -> None:
    """New content the motion cannot predict (a block appearing) at a high quality: the frame
    keeps its residual."""
    frames = moving_pattern(3, 48, 32)
    frames[2] = frames[2].copy()
    frames[2][4:20, 4:24] = (10, 220, 240)
    res = encode_video(frames, 25, "field", quality=7, gop=3, iterations=60)
    from dappled.codec.api import parse

    types = [frame_type(p.payload) for p in parse(res.data).frames()]
    assert FRAME_P_NET in types, types
    out = decode_video(res.data)
    assert psnr(frames[2], out[2]) > 25


def _moved_luma_reference(a: np.ndarray, v: tuple[int, int], filt: str) -> np.ndarray:
    """The search's prediction of the luma by gathering clipped indices (the slow reference the
    sliced one is held to, value for value)."""
    h, w = a.shape
    sy, sx = (np.arange(h) << 2) - v[1], (np.arange(w) << 2) - v[0]
    iy, ix = sy >> 2, sx >> 2
    if filt == "cubic":
        ty, tx = CUBIC_TAPS[int(sy[0] & 3)] / 64.0, CUBIC_TAPS[int(sx[0] & 3)] / 64.0
        rows = sum(a[np.clip(iy + k - 1, 0, h - 1)] * ty[k] for k in range(4) if ty[k])
        out = sum(rows[:, np.clip(ix + k - 1, 0, w - 1)] * tx[k] for k in range(4) if tx[k])
        return out.astype(np.float32)
    fy, fx = (sy & 3) / 4, (sx & 3) / 4
    y0, y1 = np.clip(iy, 0, h - 1), np.clip(iy + 1, 0, h - 1)
    x0, x1 = np.clip(ix, 0, w - 1), np.clip(ix + 1, 0, w - 1)
    top = a[y0][:, x0] * (1 - fx) + a[y0][:, x1] * fx
    bot = a[y1][:, x0] * (1 - fx) + a[y1][:, x1] * fx
    return (top * (1 - fy)[:, None] + bot * fy[:, None]).astype(np.float32)


@pytest.mark.parametrize("filt", ["bilinear", "cubic"])
def test_the_search_reads_slices_that_equal_the_gathered_pixels(filt: str) -> None:
    rng = np.random.default_rng(4)
    a = rng.random((37, 53)).astype(np.float32)
    padded = (np.pad(a, 11, mode="edge"), 11)
    for v in ((0, 0), (3, -5), (-9, 14), (28, -36), (40, -3), (-300, 2), (7, 500)):
        want = _moved_luma_reference(a, v, filt)
        assert np.array_equal(_moved_luma(a, v, 2, filt), want), v
        assert np.array_equal(_moved_luma(a, v, 2, filt, padded), want), v


def test_a_scene_cut_is_coded_as_an_intra_frame_in_its_group() -> None:
    """Frames 0-2 one picture panning, 3-5 another: frame 3's prediction from frame 2 is far off,
    so it is coded intra (a keyframe inside the group), and the frames after it predict from it.
    The group-parallel encode (a fresh encoder per group) gives the same bytes."""
    from scipy.ndimage import uniform_filter

    from dappled.codec.api import parse
    from dappled.scale.gops import encode_video_gops

    a = moving_pattern(3, 48, 32)
    rng = np.random.default_rng(9)
    other = uniform_filter(rng.random((40, 60, 3)) * 255, (5, 5, 1)).astype(np.uint8)
    b = [np.ascontiguousarray(other[t : t + 32, 2 * t : 2 * t + 48]) for t in range(3)]
    frames = a + b
    res = encode_video(frames, 25, "field", quality=5, gop=6, iterations=20)
    packets = parse(res.data).frames()
    types = [frame_type(p.payload) for p in packets]
    assert types[0] == FRAME_I and types[3] == FRAME_I, types
    assert [t == FRAME_I for t in types] == [True, False, False, True, False, False], types
    assert [bool(p.keyframe) for p in packets] == [True, False, False, True, False, False]
    out = decode_video(res.data)
    assert psnr(frames[3], out[3]) > 22
    # against a residual over the old picture (cut_db=0; without the prediction filter, which would
    # send the frames after the cut as a filtered old picture: 59 bytes at ~25 dB): fewer bytes and
    # better frames after the cut
    off = encode_video(frames, 25, "field", quality=5, gop=6, iterations=20, cut_db=0, pfilter=0)
    off_packets = parse(off.data).frames()
    assert sum(len(p.payload) for p in packets[3:]) < sum(len(p.payload) for p in off_packets[3:])
    off_out = decode_video(off.data)
    assert np.mean([psnr(f, o) for f, o in zip(frames[3:], out[3:], strict=True)]) > \
        np.mean([psnr(f, o) for f, o in zip(frames[3:], off_out[3:], strict=True)])
    assert encode_video_gops(frames, 25, "field", quality=5, gop=6, jobs=1, iterations=20).data == res.data

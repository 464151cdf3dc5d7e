"""Field video payload version 3 (docs/format.md, "Field video"): the compact frame layout,
predicted frames without a residual, and the cubic sub-pixel interpolation (and version 5's
8-tap one). Layout round trips and damaged frames, the interpolations held to a slow numpy
reference, the encoder's choice
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
    SHARP8_FLAG,
    V3_MARK,
    frame_type,
    interpolation,
    pack_frame,
    parse_frame,
)
from dappled.codec.motion import (
    CUBIC_TAPS,
    SHARP8_TAPS,
    TAPS,
    Motion,
    _luma,
    _moved_luma,
    compensate,
    no_motion,
)
from dappled.codec.video import decode_video, encode_video
from dappled.errors import BitstreamError, OptionError
from dappled.quality import psnr


def _taps_reference(prev: np.ndarray, m: Motion, filt: str) -> np.ndarray:
    """The cubic or 8-tap interpolation written out tap by tap in numpy (the slow reference)."""
    taps, first = TAPS[filt]
    h, w = prev.shape[:2]
    rows, cols = m.labels.shape
    by = np.minimum(np.arange(h) // m.block, rows - 1)
    bx = np.minimum(np.arange(w) // m.block, cols - 1)
    v = m.vectors[m.labels[by[:, None], bx[None, :]]]
    sy = (np.arange(h)[:, None] << 2) - v[..., 1]
    sx = (np.arange(w)[None, :] << 2) - v[..., 0]
    acc = np.zeros((h, w, 3), np.int64)
    for a in range(taps.shape[1]):
        for b in range(taps.shape[1]):
            yy = np.clip((sy >> 2) + a + first, 0, h - 1)
            xx = np.clip((sx >> 2) + b + first, 0, w - 1)
            wgt = taps[sy & 3][..., a] * taps[sx & 3][..., b]
            acc += prev[yy, xx].astype(np.int64) * wgt[..., None]
    return np.clip((acc + 2048) >> 12, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("filt", ["cubic", "sharp8"])
@pytest.mark.parametrize("seed", range(6))
def test_tap_compensation_matches_the_reference(seed: int, filt: str) -> None:
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(1, 70)), int(rng.integers(1, 50))
    block = int(rng.choice([8, 16, 33]))
    rows, cols = -(-h // block), -(-w // block)
    k = int(rng.integers(1, 6))
    vecs = np.stack([rng.integers(-4 * w, 4 * w + 1, k), rng.integers(-4 * h, 4 * h + 1, k)], 1)
    m = Motion(block, vecs.astype(np.int64), rng.integers(0, k, (rows, cols)).astype(np.int64))
    prev = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    out = compensate(prev, m, filt=filt)
    assert np.array_equal(out, _taps_reference(prev, m, filt))
    assert np.array_equal(compensate(prev, m, filt=filt), out)  # the same pixels each time


def test_cubic_taps_and_whole_pixel_shifts() -> None:
    assert (CUBIC_TAPS.sum(axis=1) == 64).all() and (SHARP8_TAPS.sum(axis=1) == 64).all()
    # the 8-tap filter keeps more of the detail a half-pixel shift passes: at 3/8 cycle a pixel
    # the cubic one keeps 0.55 of it, the 8-tap 0.92 (a chain of predictions compounds this)
    w = 2 * np.pi * 3 / 8
    gain = {f: abs(sum(t[2][k] * np.exp(-1j * w * (k + first)) for k in range(len(t[2])))) / 64
            for f, (t, first) in TAPS.items()}
    assert 0.5 < gain["cubic"] < 0.6 and 0.9 < gain["sharp8"] < 0.95, gain
    rng = np.random.default_rng(1)
    prev = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    m = Motion(16, np.array([[8, -4]]), np.zeros((2, 3), np.int64))  # 2 px right, 1 px up
    assert np.array_equal(compensate(prev, m, filt="cubic"), compensate(prev, m))  # whole pixels: a copy
    assert np.array_equal(compensate(prev, m, filt="sharp8"), compensate(prev, m))
    assert np.array_equal(compensate(prev, no_motion(48, 32), filt="cubic"), prev)
    # a half-pixel shift of a smooth ramp lands between its neighbours (the filter is not bilinear
    # on texture, but on a linear ramp it is exact)
    ramp = np.repeat(np.repeat((np.arange(48) * 4).astype(np.uint8)[None, :, None], 32, 0), 3, 2)
    half = compensate(ramp, Motion(16, np.array([[2, 0]]), np.zeros((2, 3), np.int64)), filt="cubic")
    assert np.array_equal(half[:, 2:-2].astype(int), (ramp[:, 1:-3].astype(int) + ramp[:, 2:-2]) // 2)
    with pytest.raises(ValueError):
        compensate(prev, Motion(16, np.array([[1, 0]]), np.zeros((2, 3), np.int64)), filt="lanczos")


@pytest.mark.parametrize("filt", ["cubic", "sharp8"])
def test_the_search_prices_vectors_with_the_tap_prediction(filt: str) -> None:
    """The search's float prediction of the luma is the exact integer one, to rounding."""
    rng = np.random.default_rng(2)
    # texture within 40..215 (8 taps: 100..155), so that no channel's overshoot is clipped by the
    # integer path
    lo, span = (40, 176) if filt == "cubic" else (100, 56)
    prev = (lo + rng.integers(0, span, (40, 56, 3))).astype(np.uint8)
    for v in ((1, 0), (3, -2), (-6, 5), (2, 2), (0, 0)):
        m = Motion(8, np.array([v]), np.zeros((5, 7), np.int64))
        exact = _luma(compensate(prev, m, filt=filt)) / 255.0
        fast = _moved_luma(_luma(prev) / 255.0, v, 2, filt)
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
    for (ftype, kw), sharp8 in ((c, s) for c in cases for s in (False, True)):
        data = pack_frame(ftype, sharp8=sharp8, **kw)  # type: ignore[arg-type]
        flag = SHARP8_FLAG if sharp8 and ftype != FRAME_I else 0  # version 5: predicted frames only
        assert data[0] == V3_MARK | flag | ftype and frame_type(data) == ftype
        parts = parse_frame(data)
        assert (parts.version, parts.ftype, parts.n_esc) == (5 if flag else 3, ftype, kw.get("n_esc", 0))
        want = {"MOTN": kw.get("motion", b""), "FLD ": kw.get("field", b""), "LAT ": kw.get("lat", b""),
                "ESC ": kw.get("esc", b"")}
        assert parts.chunks == {k: v for k, v in want.items() if v}
    # the framing of a latents-only frame: 4 bytes (version 2: 31 with its chunk headers)
    assert len(pack_frame(FRAME_P, motion=b"m" * 20, lat=b"L" * 9)) == 1 + 1 + 20 + 1 + 1 + 9
    assert pack_frame(FRAME_P_SKIP, sharp8=False) == bytes([V3_MARK | FRAME_P_SKIP])
    assert pack_frame(FRAME_P_SKIP) == bytes([V3_MARK | SHARP8_FLAG | FRAME_P_SKIP])
    assert interpolation(5) == "sharp8" and interpolation(4) == interpolation(3) == "cubic"
    assert interpolation(2) == interpolation(1) == "bilinear"


def test_damaged_layouts_are_refused() -> None:
    good = pack_frame(FRAME_P, motion=b"\x10" + b"m" * 200, lat=b"L" * 130, n_esc=0)
    for cut in range(1, 6):
        with pytest.raises(BitstreamError):
            parse_frame(good[:cut])
    with pytest.raises(BitstreamError, match="type"):
        parse_frame(bytes([V3_MARK | SHARP8_FLAG | FRAME_I]) + b"xx")  # version 5's bit on an intra frame
    with pytest.raises(BitstreamError, match="4 bytes"):
        parse_frame(bytes([V3_MARK | FRAME_P]) + b"\xff\xff\xff\xff\x01")
    with pytest.raises(BitstreamError):
        parse_frame(b"")


@pytest.fixture(scope="module")
def still() -> tuple[list[np.ndarray], object]:
    """A pattern that stops moving after frame 1: its later frames are the prediction alone."""
    frames = moving_pattern(2, 48, 32) + [moving_pattern(2, 48, 32)[1]] * 3
    return frames, encode_video(frames, 25, "field", dct=0, quality=4, gop=5, iterations=40, keep_recon=True)


def test_frames_that_need_no_residual_are_sent_without_one(still: tuple) -> None:
    _, res = still
    from dappled.codec.api import parse

    payloads = [p.payload for p in parse(res.data).frames()]
    types = [frame_type(p) for p in payloads]
    assert types[0] == FRAME_I and types[2:] == [FRAME_P_SKIP] * 3, types
    # nothing moves: one byte of payload (frame 2 may take a sub-pixel vector that sharpens frame
    # 1's decoded picture toward the same source; a few bytes)
    assert all(len(p) == 1 for p in payloads[3:]) and len(payloads[2]) <= 8, [len(p) for p in payloads]
    out = decode_video(res.data)
    assert all(np.array_equal(a, b) for a, b in zip(out, res.recon, strict=True))
    assert np.array_equal(out[4], out[2]) and np.array_equal(out[3], out[2])  # the still frames repeat


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
    forced = encode_video(frames, 25, "field", dct=0, quality=4, gop=5, iterations=40, skip=0)
    assert len(res.data) < len(forced.data) - 60, (len(res.data), len(forced.data))
    lam = LAMBDAS[4] * 1.4  # the predicted frames' (p_lambda)
    assert _cost(frames, res.data, lam) < _cost(frames, forced.data, lam)


def test_a_residual_is_kept_where_it_pays() -> None:
    """New content the motion cannot predict (a block appearing) at a high quality: the frame
    keeps its residual."""
    frames = moving_pattern(3, 48, 32)
    frames[2] = frames[2].copy()
    frames[2][4:20, 4:24] = (10, 220, 240)
    # no scene-cut check: the block could make frame 2 an intra frame instead, not the question here
    res = encode_video(frames, 25, "field", dct=0, quality=7, gop=3, iterations=60, cut_db=0)
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
    if filt in TAPS:
        taps, first = TAPS[filt]
        ty, tx = taps[int(sy[0] & 3)] / 64.0, taps[int(sx[0] & 3)] / 64.0
        rows = sum(a[np.clip(iy + k + first, 0, h - 1)] * ty[k] for k in range(len(ty)) if ty[k])
        out = sum(rows[:, np.clip(ix + k + first, 0, w - 1)] * tx[k] for k in range(len(tx)) if tx[k])
        return out.astype(np.float32)
    fy, fx = (sy & 3) / 4, (sx & 3) / 4
    y0, y1 = np.clip(iy, 0, h - 1), np.clip(iy + 1, 0, h - 1)
    x0, x1 = np.clip(ix, 0, w - 1), np.clip(ix + 1, 0, w - 1)
    top = a[y0][:, x0] * (1 - fx) + a[y0][:, x1] * fx
    bot = a[y1][:, x0] * (1 - fx) + a[y1][:, x1] * fx
    return (top * (1 - fy)[:, None] + bot * fy[:, None]).astype(np.float32)


@pytest.mark.parametrize("filt", ["bilinear", "cubic", "sharp8"])
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
    from dappled.codec.field.encoder import LAMBDAS
    from dappled.scale.gops import encode_video_gops

    a = moving_pattern(3, 48, 32)
    rng = np.random.default_rng(9)
    other = uniform_filter(rng.random((40, 60, 3)) * 255, (5, 5, 1)).astype(np.uint8)
    b = [np.ascontiguousarray(other[t : t + 32, 2 * t : 2 * t + 48]) for t in range(3)]
    frames = a + b
    res = encode_video(frames, 25, "field", dct=0, quality=5, gop=6, iterations=20)
    packets = parse(res.data).frames()
    types = [frame_type(p.payload) for p in packets]
    assert types[0] == FRAME_I and types[3] == FRAME_I, types
    assert [t == FRAME_I for t in types] == [True, False, False, True, False, False], types
    assert [bool(p.keyframe) for p in packets] == [True, False, False, True, False, False]
    out = decode_video(res.data)
    assert psnr(frames[3], out[3]) > 22
    # against a residual over the old picture (cut_db=0; without the prediction filter, which would
    # send the frames after the cut as a filtered old picture: 59 bytes at ~25 dB): fewer bytes,
    # and a lower rate-distortion cost of the frames after the cut at the quality's lambda (since
    # session 11's image recipe the intra frame is ~35 % smaller than the residual at ~1 dB less,
    # where before it was better on both)
    off = encode_video(frames, 25, "field", dct=0, quality=5, gop=6, iterations=20, cut_db=0, pfilter=0)
    off_packets = parse(off.data).frames()
    assert sum(len(p.payload) for p in packets[3:]) < sum(len(p.payload) for p in off_packets[3:])
    off_out = decode_video(off.data)

    def cost(pks: list, decoded: list) -> float:  # sum of MSE on [0, 1] + lambda * bits per pixel
        return sum(float(np.mean((f.astype(float) - o) ** 2)) / 255.0**2
                   + LAMBDAS[5] * 8 * len(p.payload) / (48 * 32)
                   for f, o, p in zip(frames[3:], decoded[3:], pks[3:], strict=True))

    assert cost(packets, out) < cost(off_packets, off_out)
    again = encode_video_gops(frames, 25, "field", dct=0, quality=5, gop=6, jobs=1, iterations=20)
    assert again.data == res.data


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_the_interpolation_option_writes_what_it_says(mode: int) -> None:
    """sharp8=0: version 3/4 frames (cubic); 1: every predicted frame version 5 (8 taps); 2: per
    frame, whichever predicts better. The decoder follows each frame's flag: its pixels are the
    encoder's."""
    from dappled.codec.api import parse

    frames = moving_pattern(4, 48, 32)
    res = encode_video(frames, 25, "field", dct=0, quality=5, gop=4, iterations=20, sharp8=mode,
                       keep_recon=True)
    versions = [parse_frame(p.payload).version for p in parse(res.data).frames()]
    assert versions[0] == 3  # the intra frame's layout
    predicted = set(versions[1:])
    assert predicted <= ({3, 4} if mode == 0 else {5} if mode == 1 else {3, 4, 5}), versions
    out = decode_video(res.data)
    assert all(np.array_equal(a, b) for a, b in zip(out, res.recon, strict=True))
    with pytest.raises(OptionError, match="sharp8"):
        encode_video(frames[:2], 25, "field", dct=0, quality=5, iterations=2, sharp8=3)

"""Field video payload version 4: the prediction filter (dappled.codec.prediction_filter) held to a
slow per-pixel reference, its least-squares fit, its coding in a frame (and the refusals), and the
encoder's choice (only where it pays; version 3 frames without it)."""

from __future__ import annotations

import numpy as np
import pytest
from _clips import moving_pattern

from dappled.codec import registry
from dappled.codec.container import unpack
from dappled.codec.field.video.format import (
    FRAME_I,
    FRAME_P,
    FRAME_P_NET,
    FRAME_P_SKIP,
    pack_filter,
    pack_frame,
    parse_frame,
)
from dappled.codec.prediction_filter import (
    BIAS_LIMIT,
    GROUPS,
    IDENTITY,
    N_COEFS,
    N_TAPS,
    TAP_LIMIT,
    apply_filter,
    fit_filter,
)
from dappled.codec.video import decode_video, encode_video
from dappled.errors import BitstreamError
from dappled.quality import psnr


def _slow_filter(img: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    """The filter pixel by pixel, as docs/format.md states it (the reference the fast one is held to)."""
    h, w, _ = img.shape
    out = np.zeros_like(img)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                acc = int(coefs[c, N_TAPS]) + 128
                for k, group in enumerate(GROUPS):
                    for dy, dx in group:
                        yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                        acc += int(coefs[c, k]) * int(img[yy, xx, c])
                out[y, x, c] = min(max(acc >> 8, 0), 255)  # floor, also below zero
    return out


@pytest.mark.parametrize("shape", [(13, 11), (1, 1), (1, 6), (5, 1)])
def test_filter_equals_the_slow_reference(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
    for scale in (30, TAP_LIMIT):
        coefs = rng.integers(-scale, scale + 1, (3, N_COEFS)).astype(np.int64) + IDENTITY
        coefs[:, :N_TAPS] = np.clip(coefs[:, :N_TAPS], -TAP_LIMIT, TAP_LIMIT)
        coefs[:, N_TAPS] = rng.integers(-BIAS_LIMIT, BIAS_LIMIT + 1, 3)
        assert np.array_equal(apply_filter(img, coefs), _slow_filter(img, coefs))
    assert np.array_equal(apply_filter(img, np.tile(IDENTITY, (3, 1))), img)


def test_fit_sharpens_a_blurred_prediction() -> None:
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    f = frame.astype(np.float64)
    blurred = np.clip(np.round(0.5 * f + 0.125 * (np.roll(f, 1, 0) + np.roll(f, -1, 0)
                                                  + np.roll(f, 1, 1) + np.roll(f, -1, 1)) + 6), 0, 255)
    pred = blurred.astype(np.uint8)
    coefs = fit_filter(pred, frame)
    assert coefs is not None and coefs.shape == (3, N_COEFS)
    assert psnr(frame, apply_filter(pred, coefs)) > psnr(frame, pred) + 1.0
    assert coefs[0, N_TAPS - 1] > 256  # the centre up: it sharpens
    flat = np.full((8, 8, 3), 7, np.uint8)  # every tap collinear with the bias: still a filter
    c = fit_filter(flat, flat)
    assert c is not None and np.array_equal(apply_filter(flat, c), flat)


def test_filter_round_trips_in_every_predicted_frame_type() -> None:
    coefs = np.tile(IDENTITY, (3, 1))
    coefs[0, :] += [3, -70, 0, 1, 200, -5000]
    coefs[2, N_TAPS] = BIAS_LIMIT
    filt = pack_filter(coefs)
    for ftype, kw in ((FRAME_P_SKIP, {"motion": b"\x08\x01"}), (FRAME_P, {"lat": b"abcd", "n_esc": 2}),
                      (FRAME_P_NET, {"field": b"xyz"})):
        f = parse_frame(pack_frame(ftype, filt=filt, sharp8=False, **kw))
        assert (f.version, f.ftype) == (4, ftype) and np.array_equal(f.filter, coefs)
        g = parse_frame(pack_frame(ftype, sharp8=False, **kw))  # without: version 3, no filter
        assert (g.version, g.filter) == (3, None) and g.chunks == f.chunks
        e = parse_frame(pack_frame(ftype, filt=filt, **kw))  # version 5: the 8-tap flag as well
        assert (e.version, e.ftype) == (5, ftype) and np.array_equal(e.filter, coefs) and e.chunks == f.chunks
    assert pack_filter(np.tile(IDENTITY, (3, 1))) == bytes(3 * N_COEFS)  # the identity: 18 zeros
    with pytest.raises(ValueError):
        pack_frame(FRAME_I, field=b"x", filt=filt)


def test_bad_filters_and_flags_are_refused() -> None:
    with pytest.raises(BitstreamError, match="intra"):
        parse_frame(bytes([0xF8]) + bytes(18) + b"x")
    with pytest.raises(BitstreamError, match="type 4"):  # version 5's flag on an intra frame
        parse_frame(bytes([0xF4]))
    assert parse_frame(bytes([0xF7])).version == 5  # a frame of type 3 with it: nothing moves
    big = np.tile(IDENTITY, (3, 1))
    big[1, 0] = TAP_LIMIT + 1
    with pytest.raises(BitstreamError, match="out of range"):
        parse_frame(pack_frame(FRAME_P_SKIP, filt=pack_filter(big)))
    with pytest.raises(BitstreamError, match="ends inside"):
        parse_frame(bytes([0xFB]) + bytes(10))  # cut inside the filter


def _blurry_clip(n: int) -> list[np.ndarray]:
    """A moving pattern whose frames get sharper than their predictions can stay (sub-pixel pans)."""
    return moving_pattern(n, w=64, h=48)


def test_encoder_sends_a_filter_only_where_it_pays_and_the_decoder_agrees() -> None:
    clip = _blurry_clip(4)
    kw = {"quality": 6, "gop": 4, "iterations": 20, "keep_recon": True}
    on = encode_video(clip, 25, "field", dct=0, pfilter=1, **kw)
    off = encode_video(clip, 25, "field", dct=0, pfilter=0, **kw)
    c_on, c_off = unpack(on.data, registry.ids()), unpack(off.data, registry.ids())
    v_on = [parse_frame(p.payload).version for p in c_on.frames()]
    assert {parse_frame(p.payload).version for p in c_off.frames()} == {3}
    assert 4 in v_on, v_on  # the pattern's predictions blur: the filter pays on some frame
    for res, data in ((on, on.data), (off, off.data)):
        frames = decode_video(data)
        assert all(np.array_equal(a, b) for a, b in zip(frames, res.recon, strict=True))


def test_by_default_only_frames_without_a_residual_carry_a_filter() -> None:
    """pfilter=2, the default: a filter rides only on predicted frames sent without a residual
    (those whose prediction is the picture, and the next frames' reference)."""
    clip = _blurry_clip(6)
    kw = {"quality": 6, "gop": 6, "iterations": 20}
    parts = [parse_frame(p.payload) for p in unpack(encode_video(clip, 25, "field", dct=0, **kw).data,
                                                     registry.ids()).frames()]
    filtered = [q.ftype for q in parts if q.filter is not None]
    assert filtered and set(filtered) == {FRAME_P_SKIP}, [(q.ftype, q.filter is not None) for q in parts]
    # and there were frames with a residual (which carry none)
    assert any(q.ftype in (FRAME_P, FRAME_P_NET) for q in parts), [q.ftype for q in parts]

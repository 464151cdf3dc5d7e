"""The transform residual of field video payload 6 (dappled.codec.residual_dct): the integer
inverse DCT held to a slow reference, the colour lifting exact, encode and decode agreeing on real
streams, rate falling and quality rising with lambda as they should, and damaged streams refused."""

from __future__ import annotations

import numpy as np
import pytest

from dappled.codec import residual_dct as rd
from dappled.errors import BitstreamError
from dappled.quality import psnr


def _slow_inverse(levels: np.ndarray, qp: int) -> np.ndarray:
    """The integer inverse of one 8x8 block, element by element (the module docstring's formula)."""
    scale = rd.LEVEL_SCALE[qp % 6] * 2 ** (qp // 6)
    d = [[int(levels[i, j]) * scale for j in range(8)] for i in range(8)]
    m = rd.M8.tolist()
    t = [[(sum(m[i][k] * d[i][j] for i in range(8)) + 64) >> 7 for j in range(8)] for k in range(8)]
    return np.array([[(sum(t[k][i] * m[i][j] for i in range(8)) + 8192) >> 14 for j in range(8)]
                     for k in range(8)], np.int64)


def _pair(h: int = 37, w: int = 53, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth textured frame and a noisy, shifted prediction of it."""
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(seed)
    big = uniform_filter(rng.random((h + 2, w + 2, 3)) * 255, (5, 5, 1))
    frame = big[1:-1, 1:-1].astype(np.uint8)
    pred = np.clip(big[:-2, 2:] + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)
    return frame, pred


def test_the_fast_inverse_equals_the_slow_reference_and_the_float_transform() -> None:
    rng = np.random.default_rng(1)
    for qp in (0, 7, 23, 40, rd.MAX_QP):
        levels = rng.integers(-50, 51, (8, 8)) * (rng.random((8, 8)) < 0.3)
        fast = rd.inverse_blocks(levels, qp)
        assert np.array_equal(fast, _slow_inverse(levels, qp)), qp
        exact = rd._D.T @ (levels * rd.step(qp)) @ rd._D  # the real-valued inverse of those levels
        assert np.abs(fast - exact).max() <= 1 + 1e-3 * np.abs(exact).max(), qp
    big = np.full((8, 8), (1 << rd.MAX_BITS) - 1)  # the largest levels: no overflow, still exact
    assert np.array_equal(rd.inverse_blocks(big, rd.MAX_QP), _slow_inverse(big, rd.MAX_QP))


def test_the_colour_lifting_is_exact() -> None:
    x = np.random.default_rng(2).integers(-255, 256, (19, 23, 3))
    assert np.array_equal(rd.from_ycocg(rd.to_ycocg(x)), x)


def test_encode_and_decode_agree_and_lambda_trades_rate_for_quality() -> None:
    frame, pred = _pair()
    sizes, quality = [], []
    for lam in (3e-3, 1e-3, 3e-4, 1e-4):
        r = rd.encode(frame, pred, 3 * lam * 255**2)
        out = rd.decode(r.data, pred)
        assert np.array_equal(out, r.recon) and np.array_equal(rd.decode(r.data, pred), out)
        assert r.sse == float(((out.astype(np.int64) - frame) ** 2).sum())
        sizes.append(len(r.data))
        quality.append(psnr(frame, out))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert quality == sorted(quality) and quality[-1] > psnr(frame, pred) + 6
    # a fixed qp: finer steps, more bytes
    assert len(rd.encode(frame, pred, 1.0, qp=10).data) > len(rd.encode(frame, pred, 1.0, qp=30).data)


def test_damaged_streams_are_refused() -> None:
    frame, pred = _pair()
    data = rd.encode(frame, pred, 3 * 3e-4 * 255**2).data
    assert len(data) > 40
    with pytest.raises(BitstreamError, match="too short"):
        rd.decode(data[:2], pred)
    with pytest.raises(BitstreamError, match="qp"):
        rd.decode(bytes([rd.MAX_QP + 1]) + data[1:], pred)
    for cut in (len(data) - 1, len(data) // 2):
        with pytest.raises(BitstreamError, match="damaged or truncated"):
            rd.decode(data[:cut], pred)
    with pytest.raises(BitstreamError):
        rd.decode(data + b"\x07\x01", pred)


def test_a_small_stream_on_a_large_frame_is_bounded_work() -> None:
    """200 random bytes against a 1024x1024 prediction: refused, or decoded to a frame of that size
    (the walk reads at most 64 coefficients a block, and the blocks are the frame's)."""
    pred = np.zeros((1024, 1024, 3), np.uint8)
    rng = np.random.default_rng(5)
    for _ in range(2):
        data = bytes([20, 28, 26]) + bytes(rng.integers(1, 256, 197, dtype=np.uint8))
        try:
            out = rd.decode(data, pred)
            assert out.shape == pred.shape
        except BitstreamError:
            pass


def test_the_numba_level_decoder_equals_the_python_walk() -> None:
    """decode_levels (numba) against walk_levels with the Python BinaryDecoder, on real streams and
    on damaged ones: the same levels, or both refuse."""
    from dappled.entropy.binary import BinaryDecoder

    frame, pred = _pair(45, 61, seed=3)
    rows, cols = rd.grid_of(61, 45)
    rng = np.random.default_rng(7)
    same = refused = 0
    for lam in (1e-3, 1e-4):
        data = rd.encode(frame, pred, 3 * lam * 255**2).data[3:]
        for k in range(12):
            bad = bytearray(data)
            if k:
                bad[int(rng.integers(0, len(bad)))] ^= int(rng.integers(1, 256))
            try:
                dec = BinaryDecoder(bytes(bad), rd.N_CONTEXTS)
                ref = rd.walk_levels(dec, None, rows, cols)
                dec.finish()
            except BitstreamError:
                ref = None
            try:
                got = rd.decode_levels(bytes(bad), rows, cols)
            except BitstreamError:
                got = None
            assert (got is None) == (ref is None)
            if ref is not None:
                assert np.array_equal(got, ref)
                same += 1
            else:
                refused += 1
    assert same >= 2 and refused > 0

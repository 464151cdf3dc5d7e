"""An adaptive 3x3 filter on a motion-compensated prediction, codec-agnostic (numpy, numba).

Repeated sub-pixel interpolation blurs a chain of predictions (each frame predicted from the
last); a small filter fitted per frame by least squares against the frame to code sharpens it
back (and fixes small colour shifts) for a few bytes. Per channel, five point-symmetric taps
(the centre, and each pair of opposite neighbours shares one coefficient) and a bias, all
integers in 1/256: pixel = clip((sum_g w_g * S_g + bias + 128) >> 8, 0, 255), S_g the sum of the
group's pixels (edges replicated). Integer arithmetic throughout, so every decoder agrees.
"""

from __future__ import annotations

import numba
import numpy as np

SHIFT = 8
ONE = 1 << SHIFT
# the five groups of offsets (dy, dx): opposite neighbours share a coefficient; the centre last
GROUPS = (((-1, -1), (1, 1)), ((-1, 0), (1, 0)), ((-1, 1), (1, -1)), ((0, -1), (0, 1)), ((0, 0),))
N_TAPS = len(GROUPS)
N_COEFS = N_TAPS + 1  # per channel: the taps, then the bias
TAP_LIMIT = 2048  # |w| <= 8.0
BIAS_LIMIT = 1 << 16  # |bias| <= 256 levels
IDENTITY = np.array([0, 0, 0, 0, ONE, 0], np.int64)


def _group_sums(plane: np.ndarray) -> list[np.ndarray]:
    """S_g for each group of one channel (int64, edges replicated)."""
    h, w = plane.shape
    pad = np.pad(plane.astype(np.int64), 1, mode="edge")
    return [sum(pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in g) for g in GROUPS]


def apply_filter(pred: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    """The filtered prediction (H, W, 3) uint8; ``coefs`` (3, N_COEFS) integers in 1/256 (a numba
    kernel; tests/test_fieldv_filter.py holds it to a per-pixel reference)."""
    out = np.empty_like(pred)
    _filter_kernel(np.ascontiguousarray(pred), np.ascontiguousarray(coefs, dtype=np.int64), out)
    return out


@numba.njit(cache=True, nogil=True)
def _filter_kernel(src: np.ndarray, c: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    h, w = src.shape[0], src.shape[1]
    for y in range(h):
        yu, yd = max(y - 1, 0), min(y + 1, h - 1)
        for x in range(w):
            xl, xr = max(x - 1, 0), min(x + 1, w - 1)
            for ch in range(3):
                acc = (c[ch, 0] * (np.int64(src[yu, xl, ch]) + src[yd, xr, ch])
                       + c[ch, 1] * (np.int64(src[yu, x, ch]) + src[yd, x, ch])
                       + c[ch, 2] * (np.int64(src[yu, xr, ch]) + src[yd, xl, ch])
                       + c[ch, 3] * (np.int64(src[y, xl, ch]) + src[y, xr, ch])
                       + c[ch, 4] * np.int64(src[y, x, ch]) + c[ch, 5] + (ONE >> 1)) >> SHIFT
                out[y, x, ch] = min(max(acc, 0), 255)


def check_coefs(coefs: np.ndarray) -> bool:
    """Whether every coefficient is within its limit."""
    taps, bias = np.abs(coefs[:, :N_TAPS]), np.abs(coefs[:, N_TAPS])
    return bool(np.all(taps <= TAP_LIMIT) and np.all(bias <= BIAS_LIMIT))


def fit_filter(pred: np.ndarray, frame: np.ndarray, ridge: float = 1.0) -> np.ndarray | None:
    """The least-squares filter taking ``pred`` nearest to ``frame`` (ridge-pulled towards the
    identity), quantized to 1/256: (3, N_COEFS) int64, or None when the fit is degenerate."""
    n = pred.shape[0] * pred.shape[1]
    out = np.zeros((3, N_COEFS), np.int64)
    target = IDENTITY.astype(np.float64) / ONE  # (its bias is 0)
    for c in range(3):
        a = np.stack([s.ravel().astype(np.float64) for s in _group_sums(pred[..., c])] + [np.ones(n)], 1)
        g = a.T @ a
        reg = ridge * n * np.eye(N_COEFS)
        reg[N_TAPS, N_TAPS] = 0.0
        try:
            w = np.linalg.solve(g + reg, a.T @ frame[..., c].ravel().astype(np.float64) + reg @ target)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(w)):
            return None
        out[c] = np.round(w * ONE)
    out[:, :N_TAPS] = np.clip(out[:, :N_TAPS], -TAP_LIMIT, TAP_LIMIT)
    out[:, N_TAPS] = np.clip(out[:, N_TAPS], -BIAS_LIMIT, BIAS_LIMIT)
    return out

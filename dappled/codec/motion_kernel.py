"""Motion compensation's cubic interpolation in numba (integer, exact): the slow reference is
the same sum written with numpy in the tests (tests/test_fieldv_motion.py)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def cubic_compensate(prev: np.ndarray, iy: np.ndarray, fy: np.ndarray, ix: np.ndarray, fx: np.ndarray,
                     taps: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """(H, W, 3) uint8: pixel (y, x) = clip((sum over a, b of taps[fy][a] * taps[fx][b] *
    prev[iy + a - 1, ix + b - 1] + 2**11) >> 12, 0, 255), source rows and columns clipped to the
    frame (edges replicated)."""
    h, w = prev.shape[0], prev.shape[1]
    out = np.empty((h, w, 3), np.uint8)
    for y in range(h):
        for x in range(w):
            py, px = fy[y, x], fx[y, x]
            by, bx = iy[y, x] - 1, ix[y, x] - 1
            a0 = 0
            a1 = 0
            a2 = 0
            for a in range(4):
                ta = taps[py, a]
                if ta == 0:
                    continue
                r = min(max(by + a, 0), h - 1)
                s0 = 0
                s1 = 0
                s2 = 0
                for b in range(4):
                    tb = taps[px, b]
                    if tb == 0:
                        continue
                    c = min(max(bx + b, 0), w - 1)
                    s0 += tb * np.int64(prev[r, c, 0])
                    s1 += tb * np.int64(prev[r, c, 1])
                    s2 += tb * np.int64(prev[r, c, 2])
                a0 += ta * s0
                a1 += ta * s1
                a2 += ta * s2
            out[y, x, 0] = min(max((a0 + 2048) >> 12, 0), 255)
            out[y, x, 1] = min(max((a1 + 2048) >> 12, 0), 255)
            out[y, x, 2] = min(max((a2 + 2048) >> 12, 0), 255)
    return out

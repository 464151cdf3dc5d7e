"""Motion compensation's tap interpolations (cubic, sharp8) in numba (integer, exact): the slow
reference is the same sum written with numpy in the tests (tests/test_fieldv_v3.py)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def taps_compensate(prev: np.ndarray, block: int, vectors: np.ndarray, labels: np.ndarray,
                    taps: np.ndarray, first: int) -> np.ndarray:  # pragma: no cover - compiled
    """(H, W, 3) uint8: pixel (y, x) of a block with vector v (quarter pixels) = clip((sum over
    a, b of taps[fy][a] * taps[fx][b] * prev[iy + a + first, ix + b + first] + 2**11) >> 12, 0,
    255), where iy = y + ((-v_y) >> 2), fy = (-v_y) & 3 (x alike), source rows and columns
    clipped to the frame (edges replicated); the last row and column of blocks reach the frame's
    edges. A block's vector is one, so its rows are filtered across once and then down: the same
    integers as the 2-D sum, with 2T multiplications a sample instead of T * T."""
    h, w = prev.shape[0], prev.shape[1]
    n = taps.shape[1]
    rows, cols = labels.shape[0], labels.shape[1]
    out = np.empty((h, w, 3), np.uint8)
    max_h = max(min(block, h), h - (rows - 1) * block)  # the tallest and widest block
    max_w = max(min(block, w), w - (cols - 1) * block)
    hs = np.empty((max_h + n - 1, max_w, 3), np.int64)
    for by in range(rows):
        ya = by * block
        yb = h if by == rows - 1 else min(h, ya + block)
        for bx in range(cols):
            xa = bx * block
            xb = w if bx == cols - 1 else min(w, xa + block)
            if ya >= yb or xa >= xb:
                continue
            k = labels[by, bx]
            vy, vx = -vectors[k, 1], -vectors[k, 0]
            py, px = vy & 3, vx & 3
            oy, ox = (vy >> 2) + first, (vx >> 2) + first
            nh, nw = yb - ya, xb - xa
            for a in range(nh + n - 1):  # the rows the block reads, filtered across
                r = min(max(ya + oy + a, 0), h - 1)
                for j in range(nw):
                    s0 = np.int64(0)
                    s1 = np.int64(0)
                    s2 = np.int64(0)
                    for b in range(n):
                        tb = taps[px, b]
                        if tb == 0:
                            continue
                        c = min(max(xa + j + ox + b, 0), w - 1)
                        s0 += tb * np.int64(prev[r, c, 0])
                        s1 += tb * np.int64(prev[r, c, 1])
                        s2 += tb * np.int64(prev[r, c, 2])
                    hs[a, j, 0] = s0
                    hs[a, j, 1] = s1
                    hs[a, j, 2] = s2
            for y in range(nh):
                for j in range(nw):
                    a0 = np.int64(0)
                    a1 = np.int64(0)
                    a2 = np.int64(0)
                    for a in range(n):
                        ta = taps[py, a]
                        if ta == 0:
                            continue
                        a0 += ta * hs[y + a, j, 0]
                        a1 += ta * hs[y + a, j, 1]
                        a2 += ta * hs[y + a, j, 2]
                    out[ya + y, xa + j, 0] = min(max((a0 + 2048) >> 12, 0), 255)
                    out[ya + y, xa + j, 1] = min(max((a1 + 2048) >> 12, 0), 255)
                    out[ya + y, xa + j, 2] = min(max((a2 + 2048) >> 12, 0), 255)
    return out

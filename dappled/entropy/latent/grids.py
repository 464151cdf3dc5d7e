"""The padded buffer the context model reads: integer grids, each zero-padded by PAD above and
on both sides, one after another in a flat int64 array (no padding below: nothing reads it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAD = 3  # the farthest neighbour offset a context model may use


def layout_of(heights: Sequence[int],
              widths: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(offsets, heights, widths, total length) of the padded buffer of grids of these sizes."""
    hs = np.array(heights, dtype=np.int64)
    ws = np.array(widths, dtype=np.int64)
    sizes = (hs + PAD) * (ws + 2 * PAD)
    offs = np.zeros(len(hs), dtype=np.int64)
    if len(hs) > 1:
        np.cumsum(sizes[:-1], out=offs[1:])
    return offs, hs, ws, int(sizes.sum())


def pack_grids(grids: Sequence[np.ndarray]) -> np.ndarray:
    """2-D integer grids -> one zero-padded flat int64 buffer."""
    offs, hs, ws, total = layout_of([q.shape[0] for q in grids], [q.shape[1] for q in grids])
    buf = np.zeros(total, dtype=np.int64)
    for q, o, h, w in zip(grids, offs, hs, ws, strict=True):
        view = buf[o : o + (h + PAD) * (w + 2 * PAD)].reshape(h + PAD, w + 2 * PAD)
        view[PAD:, PAD : PAD + w] = q
    return buf


def unpack_grids(buf: np.ndarray, shapes: Sequence[tuple[int, int]], copy: bool = True) -> list[np.ndarray]:
    """Inverse of :func:`pack_grids`, given the grids' (height, width); ``copy=False`` returns
    views into `buf` (a decoder's own buffer: no second copy of every latent)."""
    offs, hs, ws, _ = layout_of([s[0] for s in shapes], [s[1] for s in shapes])
    out = []
    for o, h, w in zip(offs, hs, ws, strict=True):
        view = buf[o : o + (h + PAD) * (w + 2 * PAD)].reshape(h + PAD, w + 2 * PAD)
        grid = view[PAD:, PAD : PAD + w]
        out.append(grid.copy() if copy else grid)
    return out

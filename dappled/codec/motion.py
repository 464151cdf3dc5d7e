"""Block motion search between two frames, codec-agnostic (pure numpy on RGB arrays): candidate
translations from the phase correlation of the luma, then per block the candidate with the least
squared error. The splat video encoder uses it to move its Gaussians; a field is also what its
MOTN chunk stores (``splat.video.format.pack_motion``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MOTION_BLOCK = 32
"""Side of the square blocks that share one motion vector (pixels)."""


@dataclass
class Motion:
    """A block motion field: vectors (K, 2) in position units, labels (rows, cols) of blocks."""

    block: int
    vectors: np.ndarray
    labels: np.ndarray

    def is_zero(self) -> bool:
        """True when nothing moves."""
        return not np.any(self.vectors[self.labels.ravel()])


def _grid(width: int, height: int, block: int) -> tuple[int, int]:
    return -(-height // block), -(-width // block)


def no_motion(width: int, height: int, block: int = MOTION_BLOCK) -> Motion:
    """The motion field that moves nothing."""
    return Motion(block, np.zeros((1, 2), np.int64), np.zeros(_grid(width, height, block), np.int64))


def _luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def motion_candidates(prev: np.ndarray, cur: np.ndarray, k: int = 3,
                      max_shift: float = 0.3) -> list[tuple[float, float]]:
    """Up to k translations (dx, dy) in pixels that move parts of `prev` onto `cur`: the highest
    peaks of the phase correlation of the luma, with parabolic sub-pixel refinement."""
    a, b = _luma(prev), _luma(cur)
    h, w = a.shape
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    r = np.fft.rfft2((b - b.mean()) * win) * np.conj(np.fft.rfft2((a - a.mean()) * win))
    r /= np.abs(r) + 1e-6
    corr = np.fft.irfft2(r, s=(h, w))
    out: list[tuple[float, float]] = []
    c = corr.copy()
    for _ in range(k):
        iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
        if c[iy, ix] <= 0.02:
            break

        def sub(c_m: float, c_0: float, c_p: float) -> float:
            den = c_m - 2 * c_0 + c_p
            return 0.0 if den >= 0 else float(np.clip(0.5 * (c_m - c_p) / den, -0.5, 0.5))

        dy = iy + sub(corr[iy - 1, ix], corr[iy, ix], corr[(iy + 1) % h, ix])
        dx = ix + sub(corr[iy, ix - 1], corr[iy, ix], corr[iy, (ix + 1) % w])
        dy = dy - h if dy > h / 2 else dy
        dx = dx - w if dx > w / 2 else dx
        if abs(dx) <= max_shift * w and abs(dy) <= max_shift * h:
            out.append((float(dx), float(dy)))
        ys = [(iy + d) % h for d in range(-3, 4)]
        xs = [(ix + d) % w for d in range(-3, 4)]
        c[np.ix_(ys, xs)] = -np.inf  # suppress the peak's neighbourhood
    return out


def estimate_motion(prev: np.ndarray, cur: np.ndarray, scale: int, block: int = MOTION_BLOCK) -> Motion:
    """A block motion field from `prev` (the decoder's last frame) to `cur`: candidate vectors by
    phase correlation (plus zero), each block takes the one with the least squared error."""
    h, w = prev.shape[:2]
    vecs = [(0, 0)]
    for dx, dy in motion_candidates(prev, cur):
        v = (round(dx * scale), round(dy * scale))
        if v not in vecs:
            vecs.append(v)
    rows, cols = _grid(w, h, block)
    if len(vecs) == 1:
        return no_motion(w, h, block)
    a, b = _luma(prev), _luma(cur)
    cost = np.full((len(vecs), rows, cols), np.inf)
    pad_r, pad_c = rows * block - h, cols * block - w
    for i, (vx, vy) in enumerate(vecs):
        ix, iy = round(vx / scale), round(vy / scale)
        moved = np.full((h, w), np.nan, np.float32)  # moved(p) = prev(p - v)
        ys, yd = slice(max(0, -iy), min(h, h - iy)), slice(max(0, iy), min(h, h + iy))
        xs, xd = slice(max(0, -ix), min(w, w - ix)), slice(max(0, ix), min(w, w + ix))
        moved[yd, xd] = a[ys, xs]
        err = np.pad((moved - b) ** 2, ((0, pad_r), (0, pad_c)), constant_values=np.nan)
        blocks = err.reshape(rows, block, cols, block)
        valid = np.isfinite(blocks).sum(axis=(1, 3))
        with np.errstate(invalid="ignore"):
            mean = np.nansum(blocks, axis=(1, 3)) / np.maximum(valid, 1)
        # the block's source must be mostly inside the previous frame
        total = np.isfinite(np.pad(b, ((0, pad_r), (0, pad_c)), constant_values=np.nan)).reshape(
            rows, block, cols, block).sum(axis=(1, 3))
        cost[i] = np.where(valid >= 0.5 * total, mean, np.inf)
    cost[0] *= 0.98  # ties go to "no motion"
    labels = np.argmin(cost, axis=0)
    used = np.unique(labels)
    remap = np.zeros(len(vecs), np.int64)
    remap[used] = np.arange(len(used))
    return Motion(block, np.array(vecs, np.int64)[used], remap[labels])


def compensate(prev: np.ndarray, m: Motion, frac_bits: int = 2) -> np.ndarray:
    """The motion-compensated prediction of the next frame from `prev` (H, W, 3) uint8: every
    pixel p of a block takes prev(p - v), v the block's vector in units of 2**-frac_bits pixel,
    bilinear between the four nearest pixels (edges replicated), in integers: exact everywhere."""
    h, w = prev.shape[:2]
    if m.is_zero():
        return prev.copy()
    one = 1 << frac_bits
    rows, cols = m.labels.shape
    by = np.minimum(np.arange(h) // m.block, rows - 1)
    bx = np.minimum(np.arange(w) // m.block, cols - 1)
    v = m.vectors[m.labels[by[:, None], bx[None, :]]]  # (H, W, 2)
    sy = (np.arange(h, dtype=np.int64)[:, None] << frac_bits) - v[..., 1]
    sx = (np.arange(w, dtype=np.int64)[None, :] << frac_bits) - v[..., 0]
    iy, fy = sy >> frac_bits, sy & (one - 1)
    ix, fx = sx >> frac_bits, sx & (one - 1)
    y0, y1 = np.clip(iy, 0, h - 1), np.clip(iy + 1, 0, h - 1)
    x0, x1 = np.clip(ix, 0, w - 1), np.clip(ix + 1, 0, w - 1)
    p = prev.astype(np.int64)
    wy0, wy1 = (one - fy)[..., None], fy[..., None]
    wx0, wx1 = (one - fx)[..., None], fx[..., None]
    acc = (p[y0, x0] * wy0 * wx0 + p[y0, x1] * wy0 * wx1 + p[y1, x0] * wy1 * wx0 + p[y1, x1] * wy1 * wx1)
    half = 1 << (2 * frac_bits - 1)
    return ((acc + half) >> (2 * frac_bits)).astype(np.uint8)

"""Block motion between two frames, codec-agnostic (pure numpy on RGB arrays).
:func:`estimate_motion`: candidate translations from the phase correlation of the luma, then per
block the candidate with the least squared error (the splat video encoder moves its Gaussians
with it; a field is also what its MOTN chunk stores, ``splat.video.format.pack_motion``).
:func:`search_motion`: a per-block search refined to quarter pixels, whose vectors are chosen
against their bits (the field video encoder's)."""

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


# The 4-tap sub-pixel filters of the "cubic" interpolation (quarter-pixel phases 0..3, taps at
# -1, 0, +1, +2 pixels; each phase sums to 64): sharper than bilinear, which blurs a little more
# at every predicted frame of a group (on carphone the skip-only chain of 9 frames keeps +0.2 dB
# with it, docs/results.md).
CUBIC_TAPS = np.array([[0, 64, 0, 0], [-4, 54, 16, -2], [-4, 36, 36, -4], [-2, 16, 54, -4]], np.int64)
# The 8-tap filters of the "sharp8" interpolation (taps at -3 .. +4 pixels; those of HEVC's luma,
# used here for every channel). A 4-tap filter keeps 0.88 of a quarter-cycle-per-pixel detail at a
# half-pixel shift and 0.55 at 3/8 cycle; these keep ~1.0 and 0.92. A chain of predicted frames
# without a residual interpolates again at every frame, so what one filter loses compounds.
SHARP8_TAPS = np.array([[0, 0, 0, 64, 0, 0, 0, 0], [-1, 4, -10, 58, 17, -5, 1, 0],
                        [-1, 4, -11, 40, 40, -11, 4, -1], [0, 1, -5, 17, 58, -10, 4, -1]], np.int64)
FILTERS = ("bilinear", "cubic", "sharp8")
# filter -> (taps by quarter-pixel phase, offset of the first tap in pixels)
TAPS = {"cubic": (CUBIC_TAPS, -1), "sharp8": (SHARP8_TAPS, -3)}


def compensate(prev: np.ndarray, m: Motion, frac_bits: int = 2, filt: str = "bilinear") -> np.ndarray:
    """The motion-compensated prediction of the next frame from `prev` (H, W, 3) uint8: every
    pixel p of a block takes prev(p - v), v the block's vector in units of 2**-frac_bits pixel,
    interpolated (``filt``: bilinear between the four nearest pixels; "cubic", the 4x4 taps of
    :data:`CUBIC_TAPS`, or "sharp8", the 8x8 of :data:`SHARP8_TAPS`, both in quarter pixels only)
    with edges replicated, in integers: exact everywhere."""
    h, w = prev.shape[:2]
    if m.is_zero():
        return prev.copy()
    if filt not in FILTERS:
        raise ValueError(f"unknown interpolation {filt!r}")
    if filt in TAPS:
        if frac_bits != 2:
            raise ValueError(f"the {filt} interpolation is in quarter pixels")
        from dappled.codec.motion_kernel import taps_compensate

        taps, first = TAPS[filt]
        return taps_compensate(np.ascontiguousarray(prev), m.block, np.ascontiguousarray(m.vectors, np.int64),
                               np.ascontiguousarray(m.labels, np.int64), taps, first)
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


def _block_sse(err: np.ndarray, rows: int, cols: int, block: int) -> np.ndarray:
    """Per-block sums of an (H, W) error map (blocks at the right and bottom edges cut short)."""
    h, w = err.shape
    pad = np.pad(err, ((0, rows * block - h), (0, cols * block - w)))
    return pad.reshape(rows, block, cols, block).sum(axis=(1, 3))


def _moved_luma(prev_luma: np.ndarray, v: tuple[int, int], frac_bits: int,
                filt: str = "bilinear", padded: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """prev moved by one vector (units of 2**-frac_bits pixel), edges replicated:
    :func:`compensate`'s prediction of the luma (same interpolation), in floats. ``padded``:
    (prev_luma edge-padded by p on every side, p) to read shifted slices from instead of gathering
    (the same values, far faster on large frames); used when the vector's taps stay within p."""
    h, w = prev_luma.shape
    one = 1 << frac_bits
    oy, ox = (-v[1]) >> frac_bits, (-v[0]) >> frac_bits  # source row = y + oy (+ tap offsets)
    py, px = (-v[1]) & (one - 1), (-v[0]) & (one - 1)
    # the farthest tap, in pixels (bilinear: 1, within the same margin as the cubic filter)
    reach = max(-TAPS[filt][1], TAPS[filt][0].shape[1] - 1 + TAPS[filt][1]) if filt in TAPS else 2
    if padded is None or max(abs(oy), abs(ox)) + reach > padded[1]:
        p = max(abs(oy), abs(ox)) + reach
        padded = (np.pad(prev_luma, p, mode="edge"), p)
    big, p = padded

    def rows(d: int) -> np.ndarray:  # prev_luma[clip(y + oy + d)] for every y, padded columns
        return big[p + oy + d : p + oy + d + h]

    def cols(m: np.ndarray, d: int) -> np.ndarray:
        return m[:, p + ox + d : p + ox + d + w]

    if filt in TAPS:  # one vector: the same phase everywhere, so the filter is separable
        taps, first = TAPS[filt]
        ty, tx = taps[py] / 64.0, taps[px] / 64.0
        mid = sum(rows(k + first) * ty[k] for k in range(len(ty)) if ty[k])
        out = sum(cols(mid, k + first) * tx[k] for k in range(len(tx)) if tx[k])
        return out.astype(np.float32)
    fy, fx = np.full(1, py / one), np.full(1, px / one)  # float64 arrays: the sums in float64
    top = cols(rows(0), 0) * (1 - fx) + cols(rows(0), 1) * fx
    bot = cols(rows(1), 0) * (1 - fx) + cols(rows(1), 1) * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def search_motion(prev: np.ndarray, cur: np.ndarray, block: int, bit_cost: float, *,
                  search: int = 7, frac_bits: int = 2, max_vectors: int = 64, subpel: int = 2,
                  filt: str = "bilinear") -> Motion:
    """A rate-aware block motion field from `prev` to `cur` (both (H, W, 3) uint8).

    Every block searches integer vectors within ``search`` pixels (plus the phase-correlation
    candidates: global translations), then refines its best by half and quarter pixels. The
    field's vectors are then chosen greedily from the blocks' candidates: each added vector must
    lower the blocks' summed squared luma error (on [0, 1]) by more than ``bit_cost`` times the
    bits it costs (32 for the vector, about one per block for the labels it makes necessary).
    ``subpel``: refinement steps (0: whole pixels, 1: half, 2: quarter pixels). ``filt``: the
    interpolation :func:`compensate` will use.
    """
    h, w = prev.shape[:2]
    rows, cols = _grid(w, h, block)
    one = 1 << frac_bits
    a, b = _luma(prev) / 255.0, _luma(cur) / 255.0
    costs: dict[tuple[int, int], np.ndarray] = {}
    r = max(0, min(search, max(h, w)))
    padded = (np.pad(a, r + 4, mode="edge"), r + 4)  # the search's moves read slices of it

    def cost(v: tuple[int, int]) -> np.ndarray:
        if v not in costs:
            costs[v] = _block_sse((_moved_luma(a, v, frac_bits, filt, padded) - b) ** 2, rows, cols, block)
        return costs[v]

    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            cost((dx * one, dy * one))
    for dx, dy in motion_candidates(prev, cur):
        q = one >> min(subpel, frac_bits)  # the finest step the search may use
        cost((q * round(dx * one / q), q * round(dy * one / q)))
    # sub-pixel refinement of each block's best, half then quarter pixels
    for step in (one // 2, one // 4)[:subpel]:
        if step < 1:
            continue
        vecs = list(costs)
        table = np.stack([costs[v] for v in vecs])
        for v in {vecs[i] for i in np.unique(np.argmin(table, axis=0))}:
            for sy in (-step, 0, step):
                for sx in (-step, 0, step):
                    cost((v[0] + sx, v[1] + sy))
    vecs = list(costs)
    table = np.stack([costs[v] for v in vecs]).reshape(len(vecs), -1)
    n_blocks = table.shape[1]
    # greedy choice: start from the best single vector (ties to zero motion)
    totals = table.sum(axis=1)
    zero = vecs.index((0, 0))
    first = zero if totals[zero] <= totals.min() * 1.001 + 1e-9 else int(np.argmin(totals))
    chosen = [first]
    best = table[first].copy()
    while len(chosen) < min(max_vectors, len(vecs)):
        gains = np.maximum(best[None, :] - table, 0.0).sum(axis=1)
        gains[chosen] = -1.0
        i = int(np.argmax(gains))
        bits = 32.0 + (n_blocks if len(chosen) == 1 else 0.0) + np.count_nonzero(table[i] < best)
        if gains[i] <= bit_cost * bits:
            break
        chosen.append(i)
        best = np.minimum(best, table[i])
    labels = np.argmin(table[chosen], axis=0).reshape(rows, cols)
    used = np.unique(labels)
    remap = np.zeros(len(chosen), np.int64)
    remap[used] = np.arange(len(used))
    vectors = np.array([vecs[chosen[i]] for i in used], np.int64)
    return Motion(block, vectors, remap[labels].astype(np.int64))

"""The decoder's synthesis in exact dyadic arithmetic: the same pixels on any machine.

Latents are integers, quantization steps and the 2x upsampling taps (1/4, 3/4) are dyadic,
network weights are ``ints * 2**-k``, and every stage is rounded to a fixed power of two and
clamped (the level accumulator to 2**-24 within +-2**20, activations to 2**-12 within +-256).
With the format's bounds (|latent| <= 4095, |weight int| < 2**15, k <= 16) every intermediate
sum is then exact in float64, whatever the summation order, BLAS, thread count or device: numpy
on the CPU and torch on CUDA (float64) give bit-identical images.

Order of work (that of :meth:`FieldModel.render`): the first 1x1 layer is applied at each
level's resolution (mixing that level's grids), and the mixes are accumulated from the coarsest
level up with 2x upsampling. The full-size stage runs in strips of rows, so memory stays
bounded.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from dappled.models.field.integer import QuantNet
from dappled.models.field.layout import ACT_BITS, Grid, level_size, step

ACT_LIMIT = 256.0  # |activation| clamp (value units)
ACC_BITS = 24  # fraction bits of the level accumulator
ACC_LIMIT = float(1 << 20)
STRIP_ROWS = 64


def _round_to(xp: Any, v: Any, bits: int, limit: float) -> Any:
    s = float(1 << bits)
    return xp.clip(xp.floor(v * s + 0.5) / s, -limit, limit)


def _round_act(xp: Any, v: Any) -> Any:
    return _round_to(xp, v, ACT_BITS, ACT_LIMIT)


def _up2_index(n_in: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outputs lo..hi of a 2x upsampling of n_in samples: (main source, partner, partner weight
    1/4); the main source has weight 3/4."""
    i = np.arange(lo, hi, dtype=np.int64)
    k = i // 2
    partner = np.where(i % 2 == 0, np.maximum(k - 1, 0), np.minimum(k + 1, n_in - 1))
    return np.minimum(k, n_in - 1), partner, np.full(i.size, 0.25)


def _up2(xp: Any, arr: Any, x: Any, rows: tuple[int, int], cols: int) -> Any:
    """Rows rows[0]..rows[1] and the first `cols` columns of the 2x upsampling of x (C, h, w)."""
    _, h, w = x.shape
    r_main, r_part, _ = _up2_index(h, *rows)
    c_main, c_part, _ = _up2_index(w, 0, cols)
    r_main, r_part, c_main, c_part = (arr(a) for a in (r_main, r_part, c_main, c_part))
    t = x[:, r_main] * 0.75 + x[:, r_part] * 0.25
    return t[:, :, c_main] * 0.75 + t[:, :, c_part] * 0.25


def _conv3x3(xp: Any, x: Any, k: Any, b: Any) -> Any:
    """Zero-padded 3x3 convolution of (C, h, w) by (O, C, 3, 3) as shifted-plane sums."""
    c, h, w = x.shape
    if xp is np:
        pad = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    else:
        pad = xp.nn.functional.pad(x, (1, 1, 1, 1))
    out = None
    for dy in range(3):
        for dx in range(3):
            win = pad[:, dy : dy + h, dx : dx + w].reshape(c, h * w)
            term = k[:, :, dy, dx] @ win
            out = term if out is None else out + term
    return (out + b[:, None]).reshape(-1, h, w)


@numba.njit(cache=True, nogil=True, inline="always")
def _rnd(v: float, scale: float, limit: float) -> float:
    # scale is a power of two, so multiplying by its inverse is the exact division, and cheaper
    r = np.floor(v * scale + 0.5) * (1.0 / scale)
    if r > limit:
        return limit
    if r < -limit:
        return -limit
    return r


@numba.njit(cache=True, nogil=True, inline="always")
def _up2_cols(vert: np.ndarray, half: int, ww: int, out: np.ndarray) -> None:
    """out[:ww] = the horizontal 2x upsampling of a row (:func:`_up2_index`'s taps): column x
    takes 3/4 of source column x // 2 and 1/4 of column x // 2 - 1 (x even) or x // 2 + 1 (x
    odd), clamped to the row. vert[1 + j] holds source column j, vert[0] and vert[-1] repeat
    the edge columns (the clamp); half = ww // 2. Plain strided loops, no index gather."""
    for j in range(half):
        out[2 * j] = vert[j + 1] * 0.75 + vert[j] * 0.25
        out[2 * j + 1] = vert[j + 1] * 0.75 + vert[j + 2] * 0.25
    if ww % 2:
        out[ww - 1] = vert[half + 1] * 0.75 + vert[half] * 0.25


@numba.njit(cache=True, nogil=True)
def _full_size(acc: np.ndarray, q0: np.ndarray, wa0: np.ndarray, ba: np.ndarray, wb: np.ndarray,
               bb: np.ndarray, step0: float, y0: int, s0: int, h1: int, rgb: np.ndarray) -> None:
    """Full-size stage per pixel: 2x-upsampled accumulator + level-0 mix, ReLU layer, RGB layer.

    A strip: rgb and q0 (the level-0 latents, integers) hold image rows y0.., acc holds level-1
    rows s0.. of the h1 there are; the columns are upsampled by :func:`_up2_cols`. Row by row,
    with the loops over a row innermost (vectorized); every sum is exact, so the order of the
    terms does not change a value."""
    s_dim, _, w1 = acc.shape
    _, hh, ww = rgb.shape
    acc_s = float(1 << ACC_BITS)
    act_s = float(1 << ACT_BITS)
    inv_acc = 1.0 / acc_s
    inv_act = 1.0 / act_s
    vert = np.empty(w1 + 2)  # vert[1 + j]: column j; the edge columns repeated at both ends
    up = np.empty(ww)
    hid = np.empty((s_dim, ww))
    out = np.empty(ww)
    qs = np.empty(ww)
    half = ww // 2
    for y in range(hh):
        yy = y0 + y
        k = yy // 2
        ym = min(k, h1 - 1) - s0
        yp = (max(k - 1, 0) if yy % 2 == 0 else min(k + 1, h1 - 1)) - s0
        qrow = q0[y]
        for x in range(ww):  # the level-0 latents times their step, once per row
            qs[x] = qrow[x] * step0
        for s in range(s_dim):
            am = acc[s, ym]
            ap = acc[s, yp]
            for j in range(w1):
                vert[1 + j] = am[j] * 0.75 + ap[j] * 0.25
            vert[0] = vert[1]
            vert[w1 + 1] = vert[w1]
            _up2_cols(vert, half, ww, up)
            h = hid[s]
            w0 = wa0[s]
            bs = ba[s]
            for x in range(ww):
                v = up[x] + w0 * qs[x]
                v = min(max(np.floor(v * acc_s + 0.5) * inv_acc, -ACC_LIMIT), ACC_LIMIT)
                v = min(max(np.floor((v + bs) * act_s + 0.5) * inv_act, -ACT_LIMIT), ACT_LIMIT)
                h[x] = v if v > 0 else 0.0
        for o in range(3):
            bo = bb[o]
            for x in range(ww):
                out[x] = bo
            for s in range(s_dim):
                w = wb[o, s]
                h = hid[s]
                for x in range(ww):
                    out[x] += w * h[x]
            r = rgb[o, y]
            for x in range(ww):
                r[x] = min(max(np.floor(out[x] * act_s + 0.5) * inv_act, -ACT_LIMIT), ACT_LIMIT)


@numba.njit(cache=True, nogil=True)
def conv3x3_row(x: np.ndarray, k: np.ndarray, o: int, y: int, t: np.ndarray) -> None:
    """Adds row y of output channel o of the zero-padded 3x3 convolution of x (C, H, W) by k
    (O, C, 3, 3) into t (W,), in loops over the row (vectorized). Shared by the decoder (exact
    sums, in any order) and the fit's float32 kernel (:mod:`.synth_kernel`)."""
    c, hh, ww = x.shape
    for ci in range(c):
        for dy in range(3):
            yy = y + dy - 1
            if yy < 0 or yy >= hh:
                continue
            src = x[ci, yy]
            k0 = k[o, ci, dy, 0]
            k1 = k[o, ci, dy, 1]
            k2 = k[o, ci, dy, 2]
            for xx in range(ww):
                t[xx] += k1 * src[xx]
            for xx in range(1, ww):
                t[xx] += k0 * src[xx - 1]
            for xx in range(ww - 1):
                t[xx] += k2 * src[xx + 1]


@numba.njit(cache=True, nogil=True, inline="always")
def _conv_row3(src: np.ndarray, k: np.ndarray, o: int, ci: int, dy: int, t: np.ndarray, o2: int,
               t2: np.ndarray) -> None:
    """t[x] += k0 * src[x - 1] + k1 * src[x] + k2 * src[x + 1] (zero beyond the row), the taps
    k[o, ci, dy], and the same into t2 with output channel o2's taps when o2 >= 0: a kernel
    row's three taps for two output channels in one pass over the row (:func:`conv3x3_row`
    makes three passes per channel)."""
    ww = t.size
    k0, k1, k2 = k[o, ci, dy, 0], k[o, ci, dy, 1], k[o, ci, dy, 2]
    if o2 < 0:
        if ww == 1:
            t[0] += k1 * src[0]
            return
        t[0] += k1 * src[0] + k2 * src[1]
        for xx in range(1, ww - 1):
            t[xx] += k0 * src[xx - 1] + k1 * src[xx] + k2 * src[xx + 1]
        t[ww - 1] += k0 * src[ww - 2] + k1 * src[ww - 1]
        return
    m0, m1, m2 = k[o2, ci, dy, 0], k[o2, ci, dy, 1], k[o2, ci, dy, 2]
    if ww == 1:
        t[0] += k1 * src[0]
        t2[0] += m1 * src[0]
        return
    t[0] += k1 * src[0] + k2 * src[1]
    t2[0] += m1 * src[0] + m2 * src[1]
    for xx in range(1, ww - 1):
        a = float(src[xx - 1])
        b = float(src[xx])
        c = float(src[xx + 1])
        t[xx] += k0 * a + k1 * b + k2 * c
        t2[xx] += m0 * a + m1 * b + m2 * c
    t[ww - 1] += k0 * src[ww - 2] + k1 * src[ww - 1]
    t2[ww - 1] += m0 * src[ww - 2] + m1 * src[ww - 1]


@numba.njit(cache=True, nogil=True)
def _conv_layer(x: np.ndarray, k: np.ndarray, b: np.ndarray, relu: bool, out: np.ndarray) -> None:
    """out = round(conv3x3(x) + b), zero padding, optionally ReLU (all exact). Row by row, two
    output channels at a time, a kernel row's three taps per pass (:func:`_conv_row3`); the
    sums are exact (every partial sum a multiple of the products' common step, far below 2**53
    of it), so their order and grouping do not change a value: the same as
    :func:`conv3x3_row`'s."""
    c, hh, ww = x.shape
    o_dim = k.shape[0]
    act_s = float(1 << ACT_BITS)
    inv_act = 1.0 / act_s
    t = np.empty(ww)
    t2 = np.empty(ww)
    for o in range(0, o_dim, 2):
        o2 = o + 1 if o + 1 < o_dim else -1
        for y in range(hh):
            t[:] = b[o]
            t2[:] = b[o2] if o2 >= 0 else 0.0
            for ci in range(c):
                for dy in range(3):
                    yy = y + dy - 1
                    if 0 <= yy < hh:
                        _conv_row3(x[ci, yy], k, o, ci, dy, t, o2, t2)
            for oo, tt in ((o, t), (o2, t2)):
                if oo < 0:
                    continue
                r = out[oo, y]
                for xx in range(ww):
                    v = min(max(np.floor(tt[xx] * act_s + 0.5) * inv_act, -ACT_LIMIT), ACT_LIMIT)
                    r[xx] = (v if v > 0 else 0.0) if relu else v


@numba.njit(cache=True, nogil=True)
def _to_pixels(rgb: np.ndarray, res: np.ndarray, base: np.ndarray, out: np.ndarray) -> None:
    """Rounded uint8 pixels of the output (plus the residual block's), plus the prediction
    `base` (H, W, 3) uint8 of a residual field (an empty array for an image)."""
    act_s = float(1 << ACT_BITS)
    _, hh, ww = rgb.shape
    for y in range(hh):
        for x in range(ww):
            for o in range(3):
                v = rgb[o, y, x]
                if res.shape[0]:
                    v = _rnd(v + res[o, y, x], act_s, ACT_LIMIT)
                p = np.floor(v * 255.0 + 0.5)
                if base.shape[0]:
                    p += base[y, x, o]
                out[y, x, o] = 0 if p < 0 else (255 if p > 255 else np.uint8(p))


@numba.njit(cache=True, nogil=True)
def _level_rows(src: np.ndarray, s0: int, h_in: int, r0: int, lat: np.ndarray, wa: np.ndarray,
                step_lv: float, out: np.ndarray) -> None:
    """Rows r0.. of a level's accumulator into out (S, rows, cols): the 2x upsampling of the
    coarser level's rows (src holds its rows s0.. of the h_in there are; no rows: the coarsest
    level) plus this level's mix of its latents lat (n, rows, cols) by wa (S, n), rounded to
    the accumulator's precision. Row by row, loops over a row innermost; every sum is exact."""
    s_dim, hh, ww = out.shape
    acc_s = float(1 << ACC_BITS)
    inv_acc = 1.0 / acc_s
    n = lat.shape[0]
    w_in = src.shape[2]
    vert = np.empty(w_in + 2)  # vert[1 + j]: column j; the edge columns repeated at both ends
    half = ww // 2
    q = np.empty((n, ww))
    for y in range(hh):
        for g in range(n):
            lr = lat[g, y]
            qr = q[g]
            for x in range(ww):
                qr[x] = lr[x] * step_lv
        for s in range(s_dim):
            o = out[s, y]
            if src.shape[0]:
                yy = r0 + y
                k = yy // 2
                ym = min(k, h_in - 1) - s0
                yp = (max(k - 1, 0) if yy % 2 == 0 else min(k + 1, h_in - 1)) - s0
                am = src[s, ym]
                ap = src[s, yp]
                for j in range(w_in):
                    vert[1 + j] = am[j] * 0.75 + ap[j] * 0.25
                vert[0] = vert[1]
                vert[w_in + 1] = vert[w_in]
                _up2_cols(vert, half, ww, o)
            else:
                for x in range(ww):
                    o[x] = 0.0
            for g in range(n):
                w = wa[s, g]
                qr = q[g]
                for x in range(ww):
                    o[x] += w * qr[x]
            for x in range(ww):
                o[x] = min(max(np.floor(o[x] * acc_s + 0.5) * inv_acc, -ACC_LIMIT), ACC_LIMIT)


def _source_rows(n_in: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Rows lo..hi of a 2x upsampling of n_in rows: (main, partner) source rows and the range
    s0..s1 of source rows they read."""
    main, part, _ = _up2_index(n_in, lo, hi)
    return main, part, int(min(main.min(), part.min())), int(max(main.max(), part.max())) + 1


class _Levels:
    """The level accumulator, computed rows at a time from the coarsest level down (numpy,
    exact): a strip of the image needs a strip of each level, so nothing here is image-sized.

    Every value is the one a whole-array computation gives (each is a sum of exact terms,
    rounded once per level), so the pixels do not depend on the strip height (tested)."""

    def __init__(self, latents: list[np.ndarray], gs: list[Grid], wa: np.ndarray, height: int,
                 width: int, shift: int, ladder: int) -> None:
        self.latents, self.wa, self.height, self.width = latents, wa, height, width
        self.by_level = {lv: [k for k, g in enumerate(gs) if g.level == lv] for lv in {g.level for g in gs}}
        self.steps = {lv: step(lv, shift, ladder) for lv in self.by_level}
        self.top = max(self.by_level)

    def rows(self, lv: int, r0: int, r1: int) -> np.ndarray:
        """Accumulator rows r0..r1 at level lv (lv >= 1): (synth_hidden, r1 - r0, columns)."""
        _, cols = level_size(self.height, self.width, lv)
        idx = self.by_level.get(lv, [])
        lat = (np.stack([self.latents[k][r0:r1] for k in idx]) if idx
               else np.zeros((0, r1 - r0, cols), np.int64))
        wa = np.ascontiguousarray(self.wa[:, idx]) if idx else np.zeros((self.wa.shape[0], 0))
        out = np.empty((self.wa.shape[0], r1 - r0, cols))
        if lv < self.top:
            h_in = level_size(self.height, self.width, lv + 1)[0]
            _, _, s0, s1 = _source_rows(h_in, r0, r1)
            _level_rows(self.rows(lv + 1, s0, s1), s0, h_in, r0, lat, wa, self.steps[lv], out)
        else:
            _level_rows(np.zeros((0, 0, 0)), 0, 0, r0, lat, wa, self.steps[lv], out)
        return out


def strip_rows(width: int, synth_hidden: int) -> int:
    """Rows per strip of the CPU synthesis: STRIP_ROWS, fewer for very wide images so that a
    strip's planes (synthesis width x rows x width, float64) stay near 64 MiB."""
    return min(STRIP_ROWS, max(8, (64 << 20) // (8 * max(1, synth_hidden) * max(1, width))))


def synthesize(latents: list[np.ndarray], gs: list[Grid], net: QuantNet, height: int, width: int,
               device: str = "cpu", backend: str | None = None,
               base: np.ndarray | None = None) -> np.ndarray:
    """Integer latents + quantized network -> (H, W, 3) uint8 RGB.

    base: a (H, W, 3) uint8 prediction (a video's predicted frame); the field is then a residual
    and a pixel is clip(base + round(255 * output), 0, 255), exact in every backend.

    backend: "numba" (the default on the CPU), "numpy" or "torch" (the default on CUDA). All
    three give the same pixels (tested); the float32 planes of the numba path hold multiples of
    2**-12 below 256, which float32 represents exactly. The numba path works in strips of rows
    (:func:`strip_rows`), every level included: its memory beyond the latents and the output
    is O(width x strip), whatever the height.
    """
    backend = backend or ("numba" if device == "cpu" else "torch")
    if backend == "numba" and len(gs) > 1 and gs[0].level == 0 and any(g.level == 1 for g in gs):
        wa, ba, wb, bb, ka, kba, kb, kbb = (t.values() for t in net.synth)
        levels = _Levels(latents, gs, wa, height, width, net.step_shift, net.step_ladder)
        wa0 = np.ascontiguousarray(wa[:, 0])
        step0 = step(0, net.step_shift, net.step_ladder)
        h1 = level_size(height, width, 1)[0]
        rh = net.arch.res_hidden
        halo = 2 if rh else 0  # the two 3x3 layers: rows two from a strip edge are final
        n = strip_rows(width, net.arch.synth_hidden)
        out = np.empty((height, width, 3), dtype=np.uint8)
        # the prediction of a residual field, or an empty array: pred[y0:y1] stays empty
        pred = (np.zeros((0, 0, 3), np.uint8) if base is None
                else np.ascontiguousarray(base, dtype=np.uint8))
        for y0 in range(0, height, n):
            y1 = min(height, y0 + n)
            a0, a1 = max(0, y0 - halo), min(height, y1 + halo)
            _, _, s0, s1 = _source_rows(h1, a0, a1)
            acc = levels.rows(1, s0, s1)
            rgb = np.zeros((3, a1 - a0, width), dtype=np.float32)
            _full_size(acc, latents[0][a0:a1], wa0, ba, wb, bb, step0, a0, s0, h1, rgb)
            del acc
            res = np.zeros((0, y1 - y0, width), dtype=np.float32)
            if rh:
                t = np.zeros((rh, a1 - a0, width), dtype=np.float32)
                _conv_layer(rgb, ka, kba, True, t)
                full = np.zeros((3, a1 - a0, width), dtype=np.float32)
                _conv_layer(t, kb, kbb, False, full)
                del t
                res = np.ascontiguousarray(full[:, y0 - a0 : y1 - a0])
            rows = np.ascontiguousarray(rgb[:, y0 - a0 : y1 - a0])
            _to_pixels(rows, res, pred[y0:y1], out[y0:y1])
        return out
    return _synthesize_arrays(latents, gs, net, height, width, device, backend == "torch", base)


def _synthesize_arrays(latents: list[np.ndarray], gs: list[Grid], net: QuantNet, height: int,
                       width: int, device: str, use_torch: bool,
                       base: np.ndarray | None = None) -> np.ndarray:
    """:func:`synthesize` in whole-array operations, for numpy or torch."""
    if use_torch:
        import torch

        xp: Any = torch
        dev = torch.device(device)

        def arr(a: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(a)).to(dev)
    else:
        xp = np
        arr = np.asarray
    wa, ba, wb, bb, ka, kba, kb, kbb = (arr(t.values()) for t in net.synth)
    levels = sorted({g.level for g in gs}, reverse=True)
    by_level = {lv: [k for k, g in enumerate(gs) if g.level == lv] for lv in levels}

    def mix(lv: int, r0: int, r1: int) -> Any:
        """The first layer's share from level lv's grids, rows r0..r1 of that level."""
        idx = by_level[lv]
        _, cols = level_size(height, width, lv)
        s_lv = step(lv, net.step_shift, net.step_ladder)
        x = xp.stack([arr(latents[k][r0:r1].astype(np.float64) * s_lv) for k in idx])
        return (wa[:, idx] @ x.reshape(len(idx), -1)).reshape(-1, r1 - r0, cols)

    # coarse levels: whole arrays (a quarter of the pixels and less)
    acc: Any = None
    for lv in levels:
        if lv == 0:
            break
        rows, cols = level_size(height, width, lv)
        z = mix(lv, 0, rows)
        acc = z if acc is None else _up2(xp, arr, acc, (0, rows), cols) + z
        acc = _round_to(xp, acc, ACC_BITS, ACC_LIMIT)
    res = net.arch.res_hidden > 0
    halo = 2 if res else 0
    out = np.empty((height, width, 3), dtype=np.uint8)
    for y0 in range(0, height, STRIP_ROWS):
        y1 = min(height, y0 + STRIP_ROWS)
        a0, a1 = max(0, y0 - halo), min(height, y1 + halo)
        z = mix(0, a0, a1) if 0 in by_level else None
        up = _up2(xp, arr, acc, (a0, a1), width) if acc is not None else None
        full = up if z is None else (z if up is None else up + z)
        full = _round_to(xp, full, ACC_BITS, ACC_LIMIT)
        s, h, w = full.shape
        hid = xp.clip(_round_act(xp, full + ba[:, None, None]), 0.0, None).reshape(s, h * w)
        rgb = _round_act(xp, wb @ hid + bb[:, None]).reshape(3, h, w)
        if res:
            # the strip's own borders are zero-padded like the image's: only rows two away
            # from a strip edge (or at an image edge) are final, hence the halo
            t = xp.clip(_round_act(xp, _conv3x3(xp, rgb, ka, kba)), 0.0, None)
            rgb = _round_act(xp, rgb + _round_act(xp, _conv3x3(xp, t, kb, kbb)))
        part = rgb[:, y0 - a0 : y0 - a0 + (y1 - y0)]
        pix = xp.floor(part * 255.0 + 0.5)
        if use_torch:
            pix = pix.cpu().numpy()
        pix = np.transpose(pix, (1, 2, 0))
        if base is not None:
            pix = pix + base[y0:y1]
        out[y0:y1] = np.clip(pix, 0, 255).astype(np.uint8)
    return out

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


def synthesize(latents: list[np.ndarray], gs: list[Grid], net: QuantNet, height: int, width: int,
               device: str = "cpu", backend: str | None = None) -> np.ndarray:
    """Integer latents + quantized network -> (H, W, 3) uint8 RGB.

    backend: "numpy" (the default on the CPU) or "torch" (the default on CUDA; on the CPU it is
    how tests check the CUDA code path gives the same pixels).
    """
    use_torch = (backend or ("numpy" if device == "cpu" else "torch")) == "torch"
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
        x = xp.stack([arr(latents[k][r0:r1].astype(np.float64) * step(lv)) for k in idx])
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
        pix = xp.clip(xp.floor(part * 255.0 + 0.5), 0, 255)
        if use_torch:
            pix = pix.cpu().numpy()
        out[y0:y1] = np.transpose(pix, (1, 2, 0)).astype(np.uint8)
    return out

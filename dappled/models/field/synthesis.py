"""The decoder's synthesis in exact dyadic arithmetic: the same pixels on any machine.

Latents are integers, upsampling taps and quantization steps are dyadic rationals, network
weights are ``ints * 2**-k`` and every layer's output is rounded to ``2**-ACT_BITS`` and
clamped. With the bounds of the format (|latent| <= 4095, |weight int| < 2**15, k <= 16) every
intermediate sum is exact in float64, whatever the summation order, BLAS, thread count or
device. So numpy on the CPU and torch on CUDA (float64) give bit-identical images.

Work and memory are bounded: the image is synthesized in strips of rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dappled.models.field.integer import QuantNet
from dappled.models.field.layout import ACT_BITS, Grid, step, upsample_taps

ACT_LIMIT = 256.0  # |activation| clamp (value units)
STRIP_ROWS = 64


def _round_act(xp: Any, v: Any) -> Any:
    s = float(1 << ACT_BITS)
    return xp.clip(xp.floor(v * s + 0.5) / s, -ACT_LIMIT, ACT_LIMIT)


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
    vals = [arr(t.values()) for t in net.synth]
    wa, ba, wb, bb, ka, kba, kb, kbb = vals
    res = net.arch.res_hidden > 0
    lat = [arr(q.astype(np.float64) * step(g.level)) for q, g in zip(latents, gs, strict=True)]
    taps = []
    for g in gs:
        r0, r1, rw = upsample_taps(height, g.level)
        c0, c1, cw = upsample_taps(width, g.level)
        taps.append(tuple(arr(a) for a in (r0, r1, rw, c0, c1, cw)))
    halo = 2 if res else 0
    out = np.empty((height, width, 3), dtype=np.uint8)
    for y0 in range(0, height, STRIP_ROWS):
        y1 = min(height, y0 + STRIP_ROWS)
        a0, a1 = max(0, y0 - halo), min(height, y1 + halo)
        feats = xp.stack([_upsample_rows(xp, q, t, a0, a1) for q, t in zip(lat, taps, strict=True)])
        n, h, w = feats.shape
        x = feats.reshape(n, h * w)
        hid = xp.clip(_round_act(xp, wa @ x + ba[:, None]), 0.0, None)
        rgb = _round_act(xp, wb @ hid + bb[:, None]).reshape(3, h, w)
        if res:
            # the strip's own borders are zero-padded like the image's: only rows that are
            # two away from a strip edge (or at an image edge) are final, hence the halo
            t = xp.clip(_round_act(xp, _conv3x3(xp, rgb, ka, kba)), 0.0, None)
            rgb = _round_act(xp, rgb + _round_act(xp, _conv3x3(xp, t, kb, kbb)))
        part = rgb[:, y0 - a0 : y0 - a0 + (y1 - y0)]
        pix = xp.clip(xp.floor(part * 255.0 + 0.5), 0, 255)
        if use_torch:
            pix = pix.cpu().numpy()
        out[y0:y1] = np.transpose(pix, (1, 2, 0)).astype(np.uint8)
    return out


def _upsample_rows(xp: Any, q: Any, taps: tuple, a0: int, a1: int) -> Any:
    """Rows a0..a1 of a grid bilinearly upsampled to full size (exact in float64)."""
    r0, r1, rw, c0, c1, cw = taps
    r0, r1, rw = r0[a0:a1], r1[a0:a1], rw[a0:a1]
    rows = q[r0] * (1 - rw)[:, None] + q[r1] * rw[:, None]
    return rows[:, c0] * (1 - cw) + rows[:, c1] * cw

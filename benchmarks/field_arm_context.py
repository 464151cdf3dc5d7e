"""What a richer ARM context could save (issue 20, "Model"): an upper bound on fixed latents.

A field is fitted as the fast effort does (300 iterations, network learning rate 0.04) on a
384x256 Kodak crop at a fixed lambda; its hard-rounded latents are then kept fixed and a fresh
ARM is trained on them (1,500 full-batch Adam steps, the fit's discretized Laplace and per-grid
output bias) for each context variant; the estimated bits of the variants are compared with the
same ARM retrained on the codec's own context (``base8``: the 8 nearest causal neighbours in the
latent's grid). The latents do not adapt to the new context, and the network's own bytes are
not counted (``*_np``: its parameter count, ~9 bits each in the stream).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/field_arm_context.py [VARIANT ...]

Variants: ``ctx12`` 12 neighbours; ``par1`` / ``par9`` also the co-located latent (or its 3x3
window) of the next coarser grid of the same channel (which the decoder would then have to
decode first); ``luma`` the co-located luma latent of a chroma grid, ``cb`` also Cb for Cr;
``abs``: |x| of every feature as well; ``hid16`` / ``hid16_2l`` a wider (deeper) ARM. One JSON
line per crop case on stdout.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from field_rate import _image

from dappled.models.field.fit import FitConfig, fit, rate_cap_for
from dappled.models.field.layout import NEIGHBOURS, PAD, PRESETS, Grid, steps_for
from dappled.models.field.model import laplace_bits

CASES = [("kodim05", 0.002), ("kodim23", 0.008), ("kodim15", 0.004), ("kodim05", 0.008)]
VARIANTS: dict[str, dict[str, Any]] = {
    "base8": {}, "ctx12": {"ctx": 12}, "par1": {"parent": 1}, "par9": {"parent": 9},
    "luma": {"luma": True}, "luma_cb": {"luma": True, "cb": True},
    "par1_luma_cb": {"parent": 1, "luma": True, "cb": True},
    "par9_luma_cb": {"parent": 9, "luma": True, "cb": True},
    "par1_luma_cb_abs": {"parent": 1, "luma": True, "cb": True, "abs": True},
    "base8_abs": {"abs": True}, "par1_abs": {"parent": 1, "abs": True},
    "par9_abs": {"parent": 9, "abs": True},
    "ctx12_abs": {"ctx": 12, "abs": True}, "hid16": {"hidden": 16}, "hid16_2l": {"hidden": 16, "layers": 2},
}


def features(lat: list[np.ndarray], grids: list[Grid], ctx: int, parent: int, luma: bool,
             cb: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(latents x features) contexts, the grid index and the value of every latent."""
    rows, gidx = [], []
    by = {(g.channel, g.level): k for k, g in enumerate(grids)}
    for k, g in enumerate(grids):
        y = torch.from_numpy(lat[k]).float()
        p = F.pad(y[None, None], (PAD, PAD, PAD, 0))[0, 0]
        cols = [p[PAD + dy: PAD + dy + g.height, PAD + dx: PAD + dx + g.width].reshape(-1)
                for dy, dx in NEIGHBOURS[:ctx]]
        if parent:
            kp = by.get((g.channel, g.level + 1))
            offs = [(0, 0)] if parent == 1 else [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
            if kp is None:
                cols += [torch.zeros(g.size)] * len(offs)
            else:
                pp = F.pad(torch.from_numpy(lat[kp]).float()[None, None], (1, 1, 1, 1))[0, 0]
                iy, ix = torch.arange(g.height) // 2, torch.arange(g.width) // 2
                cols += [pp[(iy + 1 + a)[:, None], (ix + 1 + b)[None, :]].reshape(-1) for a, b in offs]
        if luma:
            other = [(0, g.level)] + ([(1, g.level)] if cb else [])
            for i, key in enumerate(other):
                use = g.channel > i  # luma for Cb and Cr, Cb for Cr
                src = torch.from_numpy(lat[by[key]]).float().reshape(-1) if use else torch.zeros(g.size)
                cols.append(src)
        rows.append(torch.stack(cols, 1))
        gidx.append(torch.full((g.size,), k))
    values = torch.cat([torch.from_numpy(v).float().reshape(-1) for v in lat])
    return torch.cat(rows), torch.cat(gidx), values


def train_arm(x: torch.Tensor, gi: torch.Tensor, v: torch.Tensor, n_grids: int, hidden: int = 8,
              layers: int = 1, steps: int = 1500, cap: float = 16.0) -> tuple[float, int]:
    """(estimated bits of v, parameter count) of an ARM trained on these contexts."""
    torch.manual_seed(0)
    c = x.shape[1]
    ws = [torch.nn.Parameter(torch.randn(hidden, c) / math.sqrt(c))]
    bs = [torch.nn.Parameter(torch.zeros(hidden))]
    for _ in range(layers - 1):
        ws.append(torch.nn.Parameter(torch.randn(hidden, hidden) / math.sqrt(hidden)))
        bs.append(torch.nn.Parameter(torch.zeros(hidden)))
    wo = torch.nn.Parameter(torch.randn(2, hidden + c) * 0.01)
    bo = torch.nn.Parameter(torch.zeros(n_grids, 2))
    with torch.no_grad():
        for k in range(n_grids):
            m = gi == k
            bo[k, 1] = math.log(min(max(float(v[m].abs().mean()) if m.any() else 1.0, 0.05), 32.0))
    params = [*ws, *bs, wo, bo]
    opt = torch.optim.Adam(params, lr=0.01)
    bits = torch.zeros(())
    for i in range(steps):
        for grp in opt.param_groups:
            grp["lr"] = 0.01 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * i / steps)))
        h = x
        for w, b in zip(ws, bs, strict=True):
            h = F.relu(F.linear(h, w, b))
        out = F.linear(torch.cat([h, x], 1), wo) + bo[gi]
        bits = laplace_bits(v, out[:, 0], out[:, 1], cap).sum()
        opt.zero_grad()
        bits.backward()
        opt.step()
    return float(bits.detach()), sum(p.numel() for p in params)


def main() -> None:
    """One JSON line per case: the fitted ARM's bits, then each variant's bits and parameters."""
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(VARIANTS)
    for im, lam in CASES:
        img = _image(im, "384x256")
        shift, ladder = steps_for(lam)
        cfg = FitConfig(iterations=300, lam=lam, lr_net=0.04, step_shift=shift, step_ladder=ladder,
                        rate_cap=rate_cap_for(lam))
        res = fit(img, PRESETS["low"], cfg)
        lat, grids = res.model.hard_latents(), res.model.grids
        with torch.no_grad():
            fitted = float(res.model.rate_bits([torch.from_numpy(q).float() for q in lat], 16.0))
        row: dict[str, object] = {"image": im, "lam": lam, "fitted_arm_bits": fitted}
        for name in names:
            o = VARIANTS[name]
            x, gi, v = features(lat, grids, int(o.get("ctx", 8)), int(o.get("parent", 0)),
                                bool(o.get("luma")), bool(o.get("cb")))
            if o.get("abs"):
                x = torch.cat([x, x.abs()], 1)
            bits, n_par = train_arm(x, gi, v, len(grids), int(o.get("hidden", 8)), int(o.get("layers", 1)))
            row[name], row[name + "_np"] = round(bits), n_par
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

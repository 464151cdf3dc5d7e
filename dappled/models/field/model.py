"""The field representation in torch, for fitting: latent grids, the autoregressive entropy
model (ARM) and the synthesis, with soft rounding and a differentiable rate.

The float network here is what the fit trains. Its integer twin (:mod:`.integer`, coded by
:mod:`dappled.entropy.latent`) is what the stream carries and the decoder runs; they share
layouts and parameter order (``state``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dappled.models.field.layout import (
    NEIGHBOURS,
    PAD,
    RGB_TO_YCBCR,
    YCBCR_TO_RGB,
    Arch,
    Grid,
    grids,
    level_size,
    step,
)

LOG_SCALE_MIN = math.log(0.02)  # the ARM's Laplace scale range (that of the coding tables)
LOG_SCALE_MAX = math.log(64.0)


def soft_round(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """Agustsson & Theis soft rounding: identity as T -> inf, rounding as T -> 0."""
    if temperature <= 0:
        return torch.round(x)
    m = torch.floor(x)
    r = x - m - 0.5
    a = 1.0 / temperature
    return m + 0.5 + torch.tanh(a * r) / (2.0 * math.tanh(a / 2.0))


def laplace_bits(x: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor,
                 cap_bits: float = 16.0) -> torch.Tensor:
    """-log2 P(bin of x) under a discretized Laplace(mu, exp(log_scale)), at most cap_bits."""
    b = torch.exp(log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX))
    a = (x - mu).abs()
    upper = (a + 0.5) / b
    lower = (a - 0.5) / b
    tail = 0.5 * (torch.exp(-lower.clamp(min=0)) - torch.exp(-upper))
    centre = 1.0 - 0.5 * (torch.exp(lower.clamp(max=0)) + torch.exp(-upper))
    p = torch.where(lower >= 0, tail, centre)
    return -torch.log2(p.clamp(min=2.0**-cap_bits))


def up2(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(C, h, w) -> (C, rows, cols): 2x bilinear at half-pixel centres (taps 1/4, 3/4, edges
    clamped), cropped to the finer level's size. The decoder's exact up2 has the same taps."""
    return F.interpolate(x[None], scale_factor=2.0, mode="bilinear", align_corners=False)[0, :, :rows, :cols]


def conv3x3(x: torch.Tensor, k: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Zero-padded 3x3 convolution (C, H, W) -> (O, H, W) as nine shifted 1x1 products: with a
    handful of channels this is faster than oneDNN's convolution, backward above all."""
    _, h, w = x.shape
    p = F.pad(x, (1, 1, 1, 1))
    out = b[:, None, None]
    for dy in range(3):
        for dx in range(3):
            out = out + torch.einsum("oc,chw->ohw", k[:, :, dy, dx], p[:, dy : dy + h, dx : dx + w])
    return out


def down2(x: torch.Tensor) -> torch.Tensor:
    """(C, h, w) -> (C, ceil(h/2), ceil(w/2)) 2x2 means, for the pyramid start."""
    return F.avg_pool2d(x[None], 2, ceil_mode=True)[0]


class FieldModel(nn.Module):
    """Latent grids + ARM + synthesis of one image, ready to fit."""

    def __init__(self, height: int, width: int, arch: Arch, device: str = "cpu", seed: int = 0,
                 step_shift: int = 0, step_ladder: int = 0) -> None:
        super().__init__()
        arch.check()
        self.height, self.width, self.arch = height, width, arch
        self.step_shift, self.step_ladder = step_shift, step_ladder
        # the fit's cap on a latent's cost: 16 bits is what an escape costs in the stream, but
        # with a higher cap the ARM also pays for over-confidence (see fit.rate_cap_for)
        self.rate_cap = 16.0
        self.grids: list[Grid] = grids(height, width)
        dev = torch.device(device)
        gen = torch.Generator().manual_seed(seed)
        self.latents = nn.ParameterList(
            [nn.Parameter(torch.zeros(g.height, g.width, device=dev)) for g in self.grids])
        h, c = arch.arm_hidden, arch.ctx
        arm_shapes = [(h, c)] + [(h, h)] * (arch.arm_layers - 1) + [(2, h + c)]
        self.arm_w = nn.ParameterList()
        self.arm_b = nn.ParameterList()
        for o, i in arm_shapes:
            self.arm_w.append(nn.Parameter((torch.randn(o, i, generator=gen) / math.sqrt(i)).to(dev)))
            self.arm_b.append(nn.Parameter(torch.zeros(o, device=dev)))
        # the output layer's bias is per grid (mu, log scale): one ARM serves sparse fine grids
        # and dense coarse ones, whose latents would otherwise all be costly outliers
        self.arm_b[-1] = nn.Parameter(torch.zeros(len(self.grids), 2, device=dev))
        self._grid_index: torch.Tensor | None = None
        with torch.no_grad():  # the output layer starts at mu = 0, scale = 1
            self.arm_w[-1].mul_(0.01)
        n_ch, sh, rh = len(self.grids), arch.synth_hidden, arch.res_hidden
        self.wa = nn.Parameter((torch.randn(sh, n_ch, generator=gen) * 0.05).to(dev))
        self.ba = nn.Parameter(torch.zeros(sh, device=dev))
        self.wb = nn.Parameter(torch.zeros(3, sh, device=dev))
        self.bb = nn.Parameter(torch.full((3,), 0.5, device=dev))
        self.ka = nn.Parameter((torch.randn(rh, 3, 3, 3, generator=gen) * 0.05).to(dev))
        self.kba = nn.Parameter(torch.zeros(rh, device=dev))
        self.kb = nn.Parameter(torch.zeros(3, rh, 3, 3, device=dev))
        self.kbb = nn.Parameter(torch.zeros(3, device=dev))
        self._linear_start()
        self._levels = sorted({g.level for g in self.grids})
        self._by_level = {lv: [k for k, g in enumerate(self.grids) if g.level == lv] for lv in self._levels}
        kernel = torch.zeros(arch.ctx, 1, PAD + 1, 2 * PAD + 1)
        for k, (dy, dx) in enumerate(NEIGHBOURS[: arch.ctx]):
            kernel[k, 0, PAD + dy, PAD + dx] = 1.0
        self._ctx_kernel = kernel
        self._layout: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.base: torch.Tensor | None = None
        """A (3, H, W) prediction the synthesis output is added to (a video's predicted frame,
        whose residual the field codes); None for an image."""

    @torch.no_grad()
    def residual_start(self) -> None:
        """Start as a residual field: the synthesis' output bias at zero (output 0 from zero latents),
        for use with :attr:`base`."""
        self.bb.zero_()

    @torch.no_grad()
    def _linear_start(self) -> None:
        """Synthesis = YCbCr -> RGB of the summed levels, through three ReLU pairs."""
        m = torch.from_numpy(YCBCR_TO_RGB).float()
        for c in range(3):
            sel = torch.tensor([float(g.channel == c) for g in self.grids])
            self.wa[2 * c].copy_(sel)
            self.wa[2 * c + 1].copy_(-sel)
            self.ba[2 * c : 2 * c + 2].zero_()
            self.wb[:, 2 * c] = m[:, c]
            self.wb[:, 2 * c + 1] = -m[:, c]

    # ------------------------------------------------------------ parameters in a fixed order

    def network_params(self) -> list[nn.Parameter]:
        """ARM then synthesis tensors, in the order the stream stores them."""
        return [*self.arm_params(), *self.synth_params()]

    def arm_params(self) -> list[nn.Parameter]:
        out: list[nn.Parameter] = []
        for w, b in zip(self.arm_w, self.arm_b, strict=True):
            out += [w, b]
        return out

    def synth_params(self) -> list[nn.Parameter]:
        return [self.wa, self.ba, self.wb, self.bb, self.ka, self.kba, self.kb, self.kbb]

    # ------------------------------------------------------------ initialisation

    @torch.no_grad()
    def init_from_image(self, image: torch.Tensor, arm_scales: bool = True) -> None:
        """Latents from a coarse-to-fine pyramid of the image, so the first decode is already
        close: each level codes (in its own step units) what the coarser levels left over.
        ``arm_scales``: also set the ARM's per-grid log scales (off for a frozen network)."""
        ycc = torch.einsum("ij,jhw->ihw", torch.from_numpy(RGB_TO_YCBCR).float().to(image.device),
                           image - 0.5)
        means = [ycc]
        for _ in range(max(self._levels)):
            means.append(down2(means[-1]))
        for c in range(3):
            idx = sorted((k for k, g in enumerate(self.grids) if g.channel == c),
                         key=lambda k: -self.grids[k].level)
            recon: torch.Tensor | None = None  # what the coarser levels give, at this level
            prev = None
            for k in idx:
                lv = self.grids[k].level
                if recon is not None and prev is not None:
                    for j in range(prev - 1, lv - 1, -1):
                        r, cc = level_size(self.height, self.width, j)
                        recon = up2(recon, r, cc)
                target = means[lv][c : c + 1]
                s = step(lv, self.step_shift, self.step_ladder)
                val = torch.round((target - (recon if recon is not None else 0.0)) / s)
                self.latents[k].copy_(val[0])
                recon = val * s + (recon if recon is not None else 0.0)
                prev = lv
        if not arm_scales:
            return
        with torch.no_grad():  # each grid's log scale starts at its latents' Laplace fit
            for k, y in enumerate(self.latents):
                b = float(y.abs().mean()) if y.numel() else 1.0
                self.arm_b[-1][k, 1] = math.log(min(max(b, 0.05), 32.0))

    # ------------------------------------------------------------ forward

    def quantized(self, temperature: float, noise: float) -> list[torch.Tensor]:
        """Soft-rounded latents (with uniform noise before the second rounding, as Cool-chic)."""
        y0 = self.latents[0]
        if temperature > 0 and y0.device.type == "cpu" and y0.dtype == torch.float32:  # fused (numba)
            from dappled.models.field.round_kernel import SoftRoundNoise

            return [SoftRoundNoise.apply(y, temperature, noise) for y in self.latents]
        out = []
        for y in self.latents:
            t = soft_round(y, temperature)
            if noise > 0:
                t = soft_round(t + noise * (torch.rand_like(t) - 0.5), temperature)
            out.append(t)
        return out

    def contexts(self, q: list[torch.Tensor]) -> torch.Tensor:
        """(N, ctx) causal neighbourhoods of every latent of every grid (zeros outside)."""
        rows = []
        kernel = self._ctx_kernel.to(q[0].device)
        for y in q:  # one convolution with one-hot kernels gathers all neighbours of a grid
            p = F.pad(y[None, None], (PAD, PAD, PAD, 0))
            rows.append(F.conv2d(p, kernel)[0].reshape(self.arch.ctx, -1).t())
        return torch.cat(rows, dim=0)

    def grid_index(self) -> torch.Tensor:
        """(N,) grid number of every latent, in the order of :meth:`contexts`."""
        if self._grid_index is None or self._grid_index.device != self.arm_b[-1].device:
            self._grid_index = torch.cat([torch.full((g.size,), k, dtype=torch.long)
                                          for k, g in enumerate(self.grids)]).to(self.arm_b[-1].device)
        return self._grid_index

    def arm(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Laplace mean and log scale of each latent (all grids, in order) from its context."""
        h = ctx
        n = len(self.arm_w)
        for i in range(n - 1):
            h = F.relu(F.linear(h, self.arm_w[i], self.arm_b[i]))
        out = F.linear(torch.cat([h, ctx], dim=1), self.arm_w[-1]) + self.arm_b[-1][self.grid_index()]
        return out[:, 0], out[:, 1]

    def rate_bits(self, q: list[torch.Tensor], cap_bits: float | None = None) -> torch.Tensor:
        """Estimated bits of all latents under the ARM (a scalar), each capped at `cap_bits`
        (None: :attr:`rate_cap`): the fused numba kernel on the CPU, plain torch elsewhere (same
        value, see tests)."""
        cap = self.rate_cap if cap_bits is None else cap_bits
        if q[0].device.type != "cpu":
            return self.rate_bits_torch(q, cap)
        from dappled.models.field.arm_kernel import ArmRate, padded_buffer

        if self._layout is None:
            from dappled.models.field.arm_kernel import layout_arrays

            self._layout = layout_arrays(q)
        return ArmRate.apply(padded_buffer(q), self._layout, self.arch, cap, *self.arm_params())

    def rate_bits_torch(self, q: list[torch.Tensor], cap_bits: float | None = None) -> torch.Tensor:
        """:meth:`rate_bits` in torch ops (the reference, and the CUDA path)."""
        mu, ls = self.arm(self.contexts(q))
        x = torch.cat([y.reshape(-1) for y in q])
        return laplace_bits(x, mu, ls, self.rate_cap if cap_bits is None else cap_bits).sum()

    def render(self, q: list[torch.Tensor]) -> torch.Tensor:
        """Latents -> (3, H, W) RGB in [0, 1] (unclamped), plus :attr:`base` when set: the
        full-size stage fused in numba on the CPU, plain torch elsewhere (same values, see
        tests)."""
        if q[0].device.type != "cpu":
            return self.render_torch(q)
        from dappled.models.field.synth_kernel import FullSize

        idx0 = self._by_level[0]
        q0 = torch.stack([q[k] for k in idx0]) * step(0, self.step_shift, self.step_ladder)
        rgb = FullSize.apply(self._accumulate(q, 1), q0, self.wa[:, idx0], self.ba, self.wb,
                             self.bb, self.ka, self.kba, self.kb, self.kbb)
        return rgb if self.base is None else rgb + self.base

    def _accumulate(self, q: list[torch.Tensor], down_to: int) -> torch.Tensor:
        """The first synthesis layer's mix of the levels from the coarsest down to `down_to`,
        at that level's resolution (S, rows, cols).

        The first synthesis layer is linear, so it is applied at each level's own resolution
        (mixing that level's grids) and the mixes are accumulated coarse to fine with 2x
        upsampling; the full-size tensor has synth_hidden channels, not one per grid.
        """
        acc: torch.Tensor | None = None
        for lv in sorted(self._levels, reverse=True):
            if lv < down_to:
                break
            idx = self._by_level[lv]
            rows, cols = level_size(self.height, self.width, lv)
            x = torch.stack([q[k] for k in idx]).reshape(len(idx), -1) * step(lv, self.step_shift,
                                                                                self.step_ladder)
            z = (self.wa[:, idx] @ x).reshape(-1, rows, cols)
            acc = z if acc is None else up2(acc, rows, cols) + z
        assert acc is not None
        return acc

    def render_torch(self, q: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`render` in torch ops (the reference, and the CUDA path)."""
        hid = F.relu(self._accumulate(q, 0) + self.ba[:, None, None])
        rgb = torch.einsum("oc,chw->ohw", self.wb, hid) + self.bb[:, None, None]
        if self.arch.res_hidden:
            t = F.relu(conv3x3(rgb, self.ka, self.kba))
            rgb = rgb + conv3x3(t, self.kb, self.kbb)
        return rgb if self.base is None else rgb + self.base

    def forward(self, temperature: float, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(RGB image (3, H, W), estimated latent bits)."""
        q = self.quantized(temperature, noise)
        return self.render(q), self.rate_bits(q)

    def forward_hard(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(RGB image, latent bits) with the latents hard-rounded as the decoder sees them, the
        gradient passed straight through the rounding."""
        q = [y + (torch.round(y) - y).detach() for y in self.latents]
        return self.render(q), self.rate_bits(q)

    @torch.no_grad()
    def hard_latents(self) -> list[np.ndarray]:
        """The latents as the stream codes them: rounded integers."""
        return [torch.round(y).to(torch.int64).cpu().numpy() for y in self.latents]

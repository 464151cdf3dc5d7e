"""Fitting 2D Gaussians to one image: the splat codec's encoder-side optimisation.

Steps, after GaussianImage and Image-GS:
1. content-adaptive initialisation: positions sampled from a mix of uniform and image-gradient
   density, sizes from the distance to neighbouring samples, colors by a least-squares solve
   (rendering is linear in the colors, so the best colors for a geometry are one CGLS away);
2. Adam on positions, Cholesky factors and colors, with error-guided addition of Gaussians
   where the residual is largest until the target count is reached;
3. quantization-aware fine-tuning: the last iterations see the quantized parameters through
   straight-through rounding, so the fit is good *after* quantization;
4. pruning to an exact count by an importance score (used by the rate control).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.spatial import cKDTree

from dappled.models.splat import render
from dappled.models.splat.quantize import QuantConfig, fake_quantize
from dappled.quality import psnr_from_mse


@dataclass
class Gaussians:
    """N Gaussians: means (N,2) px, chol (N,3) = (l11, l21, l22), colors (N,3) RGB in [0,1] units."""

    means: torch.Tensor
    chol: torch.Tensor
    colors: torch.Tensor

    def __len__(self) -> int:
        return self.means.shape[0]

    def detach(self) -> Gaussians:
        """A copy without autograd history."""
        return Gaussians(self.means.detach().clone(), self.chol.detach().clone(),
                         self.colors.detach().clone())

    def take(self, idx: torch.Tensor) -> Gaussians:
        """A subset, by index."""
        return Gaussians(self.means[idx], self.chol[idx], self.colors[idx])

    @staticmethod
    def cat(a: Gaussians, b: Gaussians) -> Gaussians:
        """Concatenate two sets."""
        return Gaussians(torch.cat([a.means, b.means]), torch.cat([a.chol, b.chol]),
                         torch.cat([a.colors, b.colors]))


@dataclass
class FitConfig:
    """Knobs of the fit; the codec derives them from the rate target."""

    n_gaussians: int
    iterations: int = 1500
    init_fraction: float = 0.75
    densify_at: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)
    qat_fraction: float = 0.2
    lr_means: float = 0.1
    lr_chol: float = 0.04
    lr_colors: float = 0.008
    lr_final: float = 0.1
    uniform_share: float = 0.3
    color_solve_iters: int = 20
    densify_solve_iters: int = 6
    seed: int = 0


ProgressFn = Callable[[int, int, float], None]


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> float32 tensor in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.float32)) / 255.0


def gradient_density(target: torch.Tensor) -> np.ndarray:
    """Per-pixel sampling weight: local gradient magnitude of the luma (Image-GS style)."""
    luma = target.numpy() @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gy = np.gradient(luma, axis=0) if luma.shape[0] > 1 else np.zeros_like(luma)  # 1-pixel sides
    gx = np.gradient(luma, axis=1) if luma.shape[1] > 1 else np.zeros_like(luma)
    g = np.sqrt(gx * gx + gy * gy)
    return g.astype(np.float64)


def sample_positions(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sample n pixel positions with probability proportional to weights, jittered within pixels."""
    _h, w = weights.shape
    p = weights.ravel().astype(np.float64)
    total = p.sum()
    p = np.full_like(p, 1.0 / p.size) if total <= 0 else p / total
    idx = rng.choice(p.size, size=n, replace=True, p=p)
    ys, xs = np.divmod(idx, w)
    jitter = rng.random((n, 2))
    return np.stack([xs + jitter[:, 0], ys + jitter[:, 1]], axis=1).astype(np.float32)


def scales_from_spacing(points: np.ndarray, k: int = 4, factor: float = 0.6,
                        max_sigma: float = 64.0) -> np.ndarray:
    """Isotropic sigma per point from the mean distance to its k nearest neighbours."""
    if len(points) <= 1:
        return np.full(len(points), 8.0, dtype=np.float32)
    k = min(k, len(points) - 1)
    dist, _ = cKDTree(points).query(points, k=k + 1)
    d = dist[:, 1:].mean(axis=1)
    return np.clip(factor * d, 0.7, max_sigma).astype(np.float32)


def _isotropic_chol(sigma: np.ndarray) -> torch.Tensor:
    s = torch.from_numpy(sigma)
    return torch.stack([s, torch.zeros_like(s), s], dim=-1)


def solve_colors(means: torch.Tensor, chol: torch.Tensor, target: torch.Tensor,
                 init: torch.Tensor | None = None, iters: int = 20) -> torch.Tensor:
    """Least-squares colors for a fixed geometry by CGLS (rendering is linear in the colors)."""
    h, w = target.shape[:2]
    n = means.shape[0]
    means, chol = means.detach(), chol.detach()

    def forward(c: torch.Tensor) -> torch.Tensor:
        return render(means, chol, c, h, w)

    def adjoint(r: torch.Tensor) -> torch.Tensor:
        c = torch.zeros(n, 3, requires_grad=True)
        out = render(means, chol, c, h, w)
        (g,) = torch.autograd.grad(out, c, grad_outputs=r)
        return g

    x = torch.zeros(n, 3) if init is None else init.detach().clone()
    r = target - forward(x)
    s = adjoint(r)
    p = s.clone()
    gamma = (s * s).sum(0)
    for _ in range(iters):
        q = forward(p)
        qq = (q * q).sum((0, 1))
        alpha = torch.where(qq > 0, gamma / qq.clamp_min(1e-30), torch.zeros_like(qq))
        x = x + alpha * p
        r = r - alpha * q
        s = adjoint(r)
        gamma_new = (s * s).sum(0)
        beta = torch.where(gamma > 0, gamma_new / gamma.clamp_min(1e-30), torch.zeros_like(gamma))
        p = s + beta * p
        gamma = gamma_new
    return x


def quantize_colors_with_feedback(g: Gaussians, target: torch.Tensor,
                                   snap: Callable[[torch.Tensor], torch.Tensor],
                                   groups: int = 4, iters: int = 8, seed: int = 0) -> torch.Tensor:
    """Quantize colors group by group, re-solving the not-yet-quantized ones after each group so
    they absorb the rounding error of those already fixed (error feedback, as in GPTQ/OPTQ).

    `snap` maps float colors to the nearest quantizer level. Measured on kodim23 at 0.5 bpp:
    +0.35 dB over rounding all colors at once, at the same rate.
    """
    h, w = target.shape[:2]
    n = len(g)
    colors = g.colors.detach().clone()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fixed = torch.zeros(n, dtype=torch.bool)
    for k in range(groups):
        idx = order[k * n // groups : (k + 1) * n // groups]
        colors[idx] = snap(colors[idx])
        fixed[idx] = True
        if k == groups - 1 or bool(fixed.all()):
            break
        free = ~fixed
        with torch.no_grad():
            done = render(g.means[fixed], g.chol[fixed], colors[fixed], h, w)
        colors[free] = solve_colors(g.means[free], g.chol[free], target - done,
                                    init=colors[free], iters=iters)
    return colors


def initialise(target: torch.Tensor, n: int, cfg: FitConfig, rng: np.random.Generator) -> Gaussians:
    """Content-adaptive initial Gaussians: positions by gradient density, sizes by spacing."""
    h, w = target.shape[:2]
    density = gradient_density(target)
    density = density / max(density.mean(), 1e-12)
    weights = cfg.uniform_share + (1 - cfg.uniform_share) * density
    pts = sample_positions(weights, n, rng)
    sigma = scales_from_spacing(pts, max_sigma=max(h, w) / 4)
    means = torch.from_numpy(pts)
    chol = _isotropic_chol(sigma)
    colors = solve_colors(means, chol, target, iters=cfg.color_solve_iters)
    return Gaussians(means, chol, colors)


def add_by_error(g: Gaussians, target: torch.Tensor, rendered: torch.Tensor, count: int,
                 rng: np.random.Generator) -> Gaussians:
    """Add `count` small Gaussians where the residual is largest, colored by the residual there."""
    if count <= 0:
        return g
    h, w = target.shape[:2]
    resid = (target - rendered).detach()
    err = (resid * resid).sum(-1).numpy().astype(np.float64)
    pts = sample_positions(err**1.5, count, rng)
    existing = g.means.detach().numpy()
    tree = cKDTree(existing) if len(existing) else None
    if tree is not None:
        d, _ = tree.query(pts, k=min(3, len(existing)))
        d = d.reshape(len(pts), -1).mean(axis=1)
        sigma = np.clip(0.5 * d, 0.7, max(h, w) / 8).astype(np.float32)
    else:
        sigma = np.full(count, 2.0, dtype=np.float32)
    ix = np.clip(pts[:, 0].astype(int), 0, w - 1)
    iy = np.clip(pts[:, 1].astype(int), 0, h - 1)
    colors = resid[torch.from_numpy(iy), torch.from_numpy(ix)]
    new = Gaussians(torch.from_numpy(pts), _isotropic_chol(sigma), colors.float())
    return Gaussians.cat(g.detach(), new)


def importance(g: Gaussians) -> torch.Tensor:
    """How much a Gaussian contributes: squared color norm times its area (sqrt det of Sigma)."""
    a, _b, c = g.chol.detach().unbind(-1)
    area = (a * c).abs() + 0.1
    return (g.colors.detach() ** 2).sum(-1) * area


def prune(g: Gaussians, keep: int) -> Gaussians:
    """Keep the `keep` most important Gaussians (stable order)."""
    if keep >= len(g):
        return g.detach()
    idx = torch.topk(importance(g), keep).indices.sort().values
    return g.take(idx).detach()


class _Trainer:
    """Adam over (means, chol, colors) with a cosine learning-rate decay."""

    def __init__(self, g: Gaussians, cfg: FitConfig, total: int) -> None:
        self.params = [t.detach().clone().requires_grad_(True) for t in (g.means, g.chol, g.colors)]
        self.cfg = cfg
        self.total = max(total, 1)
        self.base = [cfg.lr_means, cfg.lr_chol, cfg.lr_colors]
        self.opt = torch.optim.Adam(
            [{"params": [p], "lr": lr} for p, lr in zip(self.params, self.base, strict=True)],
            betas=(0.9, 0.99),
        )

    def gaussians(self) -> Gaussians:
        return Gaussians(*self.params)

    def step(self, it: int, target: torch.Tensor, quant: QuantConfig | None) -> tuple[float, torch.Tensor]:
        frac = min(it / self.total, 1.0)
        mult = self.cfg.lr_final + (1 - self.cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * frac))
        for group, lr in zip(self.opt.param_groups, self.base, strict=True):
            group["lr"] = lr * mult
        h, w = target.shape[:2]
        means, chol, colors = self.params
        if quant is not None:
            means, chol, colors = fake_quantize(means, chol, colors, quant, w, h)
        out = render(means, chol, colors, h, w)
        loss = torch.mean((out - target) ** 2)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            m, c = self.params[0], self.params[1]
            m[:, 0].clamp_(0.0, w - 1e-3)
            m[:, 1].clamp_(0.0, h - 1e-3)
            lim = max(h, w) / 3.0
            c.clamp_(-lim, lim)
        return float(loss.detach()), out.detach()


def fit(image: np.ndarray, cfg: FitConfig, quant: QuantConfig | None = None,
        progress: ProgressFn | None = None) -> Gaussians:
    """Fit cfg.n_gaussians Gaussians to an (H, W, 3) uint8 image; QAT with `quant` at the end."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    target = image_to_tensor(image)
    n_total = max(1, cfg.n_gaussians)
    n0 = max(1, round(n_total * cfg.init_fraction))
    g = initialise(target, n0, cfg, rng)
    iters = max(1, cfg.iterations)
    qat_start = int(iters * (1 - cfg.qat_fraction)) if quant is not None else iters + 1
    # a densification needs a render of the step before it: none at step 0 (very short fits)
    densify = sorted({int(iters * f) for f in cfg.densify_at if 0 < f < 1 and int(iters * f) >= 1})
    trainer = _Trainer(g, cfg, iters)
    rendered = None
    for it in range(iters):
        if densify and it == densify[0]:
            densify.pop(0)
            missing = n_total - len(trainer.gaussians())
            share = missing if not densify else math.ceil(missing / (len(densify) + 1))
            g = add_by_error(trainer.gaussians(), target, rendered, share, rng)
            # new Gaussians overlap each other: re-solve all colors jointly instead of trusting
            # each one's local residual
            g.colors = solve_colors(g.means, g.chol, target, init=g.colors, iters=cfg.densify_solve_iters)
            trainer = _Trainer(g, cfg, iters)
        loss, rendered = trainer.step(it, target, quant if it >= qat_start else None)
        if progress is not None:
            progress(it + 1, iters, psnr_from_mse(loss))
    return trainer.gaussians().detach()


def finetune(image: np.ndarray, g: Gaussians, cfg: FitConfig, iterations: int,
             quant: QuantConfig | None, progress: ProgressFn | None = None) -> Gaussians:
    """A short fit from given Gaussians (after pruning), quantization-aware if `quant` is set."""
    if iterations <= 0:
        return g.detach()
    target = image_to_tensor(image)
    small = replace(cfg, lr_means=cfg.lr_means * 0.3, lr_chol=cfg.lr_chol * 0.3,
                    lr_colors=cfg.lr_colors * 0.5)
    trainer = _Trainer(g, small, iterations)
    for it in range(iterations):
        loss, _ = trainer.step(it, target, quant)
        if progress is not None:
            progress(it + 1, iterations, psnr_from_mse(loss))
    return trainer.gaussians().detach()

"""Fitting a field to one image: Adam on MSE + lambda * bits per pixel, from a pyramid start,
with warm-up + cosine learning rates and soft rounding annealed towards hard rounding.

Rate control (--bpp) lives in :mod:`.rate`: lambda is predicted before the fit, and the fit
only nudges it (by bounded factors, early) from the rate its hard-rounded latents would cost,
so a bpp target costs one fit and lands on the same rate-distortion curve as a fixed lambda.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dappled.models.field.layout import Arch, steps_for
from dappled.models.field.model import FieldModel

# effort -> iterations at 768x512 (scaled for other sizes, see iterations_for). The fast effort
# fills its budget (60 s of one core at 768x512: ~0.15 s an iteration plus ~8 s of analysis,
# quantization and coding): 300 iterations gave +0.29 dB at equal rate over 200 on Kodak crops
# (docs/results.md, session 4). The default effort's 1,800 iterations (~140 s of one core at
# 768x512, inside its 300-s budget) gave +0.33 dB at equal rate over 1,000 on three 384x256 Kodak
# crops with noise 0.5 (+0.22 to +0.46; session 13; the networks' learning rate 0.02 added
# nothing on top).
EFFORTS: dict[str, int] = {"fast": 300, "default": 1800, "slow": 4000}
NET_BITS_PER_PARAM = 9.0  # rough cost of a quantized network weight, for the rate estimate
# A short fit on a large image (the fast effort on a photo) takes the networks' learning rate up
# to SHORT_LR_NET: at 200 iterations on 384x256 Kodak crops +0.50 dB at equal rate (+0.06 to
# +0.84 over 5 cases), whole kodim23 -6.5 % rate and +0.23 dB; at 1000 iterations it loses
# 0.21 dB, so longer fits keep 0.01 (docs/results.md, recipe ablations). Rate control has its own
# calibration for these fits (models/field/rate.py).
SHORT_FIT_ITERATIONS = 500
SHORT_FIT_PIXELS = 200_000
SHORT_LR_NET = 0.04


# An image fit rounds more softly than FitConfig's defaults (which video residual fits keep):
# soft-rounding temperature 0.5 -> 0.1 instead of 0.3 -> 0.05. With the coarser steps of
# layout.steps_for, +0.77 dB at equal rate on 5 Kodak crop cases at 300 iterations, +0.84 dB on 3
# at 1000 (session 11, docs/results.md "Coarser steps and softer rounding"); 0.7 -> 0.15 and
# 0.5 -> 0.2 gave less.
IMAGE_TEMPERATURES = (0.5, 0.1)
# ... and with half the uniform noise before the second soft rounding (FitConfig.noise 1.0): on
# top of the above, +0.77 dB at equal rate on the 5 crop cases at 300 iterations, +0.86 at lambda
# 0.0005; noise 0.25 +0.23 dB, none at all fails (session 11).
IMAGE_NOISE = 0.5


def is_short_fit(iterations: int, pixels: int) -> bool:
    """Whether a fit of `iterations` on `pixels` gets the short-fit recipe and rate control."""
    return iterations < SHORT_FIT_ITERATIONS and pixels >= SHORT_FIT_PIXELS


@dataclass
class FitConfig:
    """Knobs of one fit."""

    iterations: int = 1000
    lam: float = 0.002  # weight of bits per pixel against MSE on [0, 1] RGB
    lr_latent: float = 0.1
    lr_net: float = 0.01
    warmup: float = 0.05  # share of iterations with a rising learning rate
    t_start: float = 0.3  # soft-rounding temperature at the start ...
    t_end: float = 0.05  # ... and at the end (geometric schedule)
    noise: float = 1.0
    seed: int = 0
    step_shift: int = 0  # latent steps times 2**step_shift (layout.steps_for picks it)
    step_ladder: int = 0  # which ladder of level steps (layout.step)
    rate_cap: float = 16.0  # a latent's cost in the fit is capped at this many bits
    probes: tuple[float, ...] = ()  # fractions of the fit at which the hard rate is measured
    freeze_net: bool = False  # fit the latents alone (a network already sent, e.g. a video group's)
    hard_tail: float = 0.0  # share of the fit (at its end) with hard rounding, straight-through
    tail_lr: float = 1.0  # learning-rate factor in that tail
    beta2: float = 0.999  # Adam's second-moment decay
    net_bits_per_param: float = NET_BITS_PER_PARAM  # the rate estimate's cost of a network weight


@dataclass
class FitResult:
    """What a fit produced, and its trajectory."""

    model: FieldModel
    lam: float
    seconds: float
    history: list[tuple[int, float, float]]  # (iteration, psnr, estimated bpp)
    probes: list[tuple[float, float, float]]  # (fraction, hard-rounded bpp, lambda then)
    stopped: bool = False  # ended early by the fit's `stop`


# (fraction of the fit, lambda) -> new lambda; called at each of FitConfig.probes with the bpp
# the hard-rounded latents (and the network's estimated bits) would cost at that point
Steer = Callable[[float, float, float], float]
# (fraction of the fit, the model) -> whether to end the fit there; called at each of
# FitConfig.probes (a video frame whose residual is not worth coding ends early)
Stop = Callable[[float, FieldModel], bool]


ProgressFn = Callable[[int, int, float, float], None]


def image_config(lam: float, iterations: int, pixels: int, **overrides: object) -> FitConfig:
    """The fit of an image at a lambda, chosen in one place for the encoder and the benchmarks:
    the latent steps (layout.steps_for), the rounding (IMAGE_TEMPERATURES, IMAGE_NOISE), the cost
    cap (:func:`rate_cap_for`) and, for a short fit, the networks' learning rate; ``overrides``
    replace any FitConfig field."""
    shift, ladder = steps_for(lam)
    fields: dict[str, object] = {
        "iterations": iterations, "lam": lam, "step_shift": shift, "step_ladder": ladder,
        "rate_cap": rate_cap_for(lam), "t_start": IMAGE_TEMPERATURES[0], "t_end": IMAGE_TEMPERATURES[1],
        "noise": IMAGE_NOISE,
        "lr_net": SHORT_LR_NET if is_short_fit(iterations, pixels) else FitConfig.lr_net,
        "net_bits_per_param": net_bits_per_param(pixels)}
    return FitConfig(**{**fields, **overrides})  # type: ignore[arg-type]


def net_bits_per_param(pixels: int) -> float:
    """What a network weight of an image fit will cost in the stream, for the fit's rate estimate
    (the probes of rate control): quantize_network spends fewer bits on the weights of a smaller
    image. Measured on 34 fits with noise 0.5 (session 12): ~6.3 bits at 128x128, ~7.9 at
    256x256, ~8.4 at 384x256; 9 (the estimate of sessions 1-11) from ~160k pixels up, where the
    short-fit steer's calibration was made with it."""
    return float(np.clip(6.3 + 0.8 * math.log2(max(pixels, 1) / 16384), 5.0, NET_BITS_PER_PARAM))


def rate_cap_for(lam: float) -> float:
    """The fit's cap on one latent's cost at a lambda. The stream codes an improbable latent as
    an escape for ~16 bits, but a 16-bit cap in the fit leaves the ARM free to be over-confident
    (no gradient past it), so rare non-zero latents pile up as escapes. A 24-bit cap fixes that
    at low and middle rates (measured on 256x384 Kodak crops, 300 iterations, quality 4: -8 %
    rate at the same PSNR on kodim23, +0.5 dB at the same rate on kodim05) but overshoots at
    high rates (kodim23, quality 7: 0.47 -> 0.87 bpp for +0.9 dB), which keep 16."""
    return 24.0 if lam >= 0.004 else 16.0


def image_tensor(image: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.array(image.transpose(2, 0, 1), dtype=np.float32)).to(device) / 255.0


def lr_factor(i: int, n: int, warmup: float) -> float:
    """Linear warm-up, then cosine decay to 1 % of the peak."""
    nw = max(1, int(n * warmup))
    if i < nw:
        return (i + 1) / nw
    p = (i - nw) / max(1, n - nw)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p))


def fit(image: np.ndarray, arch: Arch, cfg: FitConfig, device: str = "cpu",
        progress: ProgressFn | None = None, model: FieldModel | None = None,
        steer: Steer | None = None, stop: Stop | None = None) -> FitResult:
    """Fit (or continue fitting `model`) to an (H, W, 3) uint8 image; at each of cfg.probes the
    hard-rounded rate is measured, `steer` (rate control) may move lambda and `stop` may end the
    fit (then :attr:`FitResult.stopped`)."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    h, w = image.shape[:2]
    target = image_tensor(image, device)
    if model is None:
        model = FieldModel(h, w, arch, device, cfg.seed, cfg.step_shift, cfg.step_ladder)
        model.init_from_image(target)
    model.rate_cap = cfg.rate_cap
    n_pix = float(h * w)
    n_params = sum(p.numel() for p in model.network_params())
    net_bits = 0.0 if cfg.freeze_net else cfg.net_bits_per_param * n_params
    groups = [{"params": list(model.latents), "lr": cfg.lr_latent}]
    if not cfg.freeze_net:
        groups.append({"params": model.network_params(), "lr": cfg.lr_net})
    opt = torch.optim.Adam(groups, betas=(0.9, cfg.beta2))
    base = [g["lr"] for g in opt.param_groups]
    n = max(1, cfg.iterations)
    lam = cfg.lam
    log_t0, log_t1 = math.log(cfg.t_start), math.log(cfg.t_end)
    history: list[tuple[int, float, float]] = []
    at_probe: dict[int, list[float]] = {}  # iteration -> the probes there (a short fit may merge some)
    for f in sorted(cfg.probes):
        at_probe.setdefault(max(1, round(n * f)), []).append(f)
    probes: list[tuple[float, float, float]] = []
    n_soft = n - round(n * cfg.hard_tail)
    for i in range(n):
        f = lr_factor(i, n, cfg.warmup) * (cfg.tail_lr if i >= n_soft else 1.0)
        for g, b in zip(opt.param_groups, base, strict=True):
            g["lr"] = b * f
        if i < n_soft:
            temp = math.exp(log_t0 + (log_t1 - log_t0) * i / max(1, n_soft - 1))
            rgb, bits = model(temp, cfg.noise)
        else:  # the tail: the decoder's hard rounding, gradients straight through it
            rgb, bits = model.forward_hard()
        mse = torch.mean((rgb - target) ** 2)
        loss = mse + lam * bits / n_pix
        model.zero_grad(set_to_none=True)  # frozen tensors too: no gradient piles up on them
        loss.backward()
        opt.step()
        bpp = (float(bits.detach()) + net_bits) / n_pix
        if i + 1 in at_probe:
            with torch.no_grad():
                hard = (float(model.rate_bits([torch.round(y) for y in model.latents])) + net_bits) / n_pix
            for frac in at_probe[i + 1]:
                probes.append((frac, hard, lam))
                if steer is not None:  # rate control; the cost cap follows lambda as at a fixed one
                    lam = steer(frac, hard, lam)
                    model.rate_cap = rate_cap_for(lam)
            if stop is not None and any(stop(frac, model) for frac in at_probe[i + 1]):
                if progress is not None:
                    progress(n, n, -10 * math.log10(max(float(mse.detach()), 1e-10)), bpp)
                return FitResult(model, lam, time.perf_counter() - t0, history, probes, True)
        if i % 10 == 0 or i == n - 1:
            psnr = -10 * math.log10(max(float(mse.detach()), 1e-10))
            history.append((i + 1, psnr, bpp))
            if progress is not None:
                progress(i + 1, n, psnr, bpp)
    return FitResult(model, lam, time.perf_counter() - t0, history, probes)

"""The splat encoder: fit Gaussians to an image (dappled.models.splat, torch), then rate control:
quantize, re-solve the colors, tune the color step to the byte budget, prune if it does not fit."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dappled.codec.chunks import pack_chunks
from dappled.codec.defaults import IMAGE_CONTAINER_BYTES, image_payload_budget
from dappled.codec.progress import FitProgress
from dappled.codec.registry import EncodeParams
from dappled.codec.splat.format import max_gaussians, pack_gaussians, payload_size
from dappled.codec.threads import numba_threads
from dappled.errors import OptionError
from dappled.models.splat.symbols import QuantConfig
from dappled.threads import parse_threads

# quality preset -> target bits per pixel
PRESETS: dict[int, float] = {1: 0.15, 2: 0.25, 3: 0.35, 4: 0.5, 5: 0.72, 6: 1.0, 7: 1.4, 8: 2.0}
BITS_PER_GAUSSIAN_GUESS = 40.0
CONTAINER_OVERHEAD = IMAGE_CONTAINER_BYTES
# An image too small for its rate target to hold a few Gaussians (a 3x5 icon at 0.5 bpp) gets
# this many payload bytes: the target is exceeded, but the image still codes.
MIN_PAYLOAD_BYTES = 384  # ~100 go to chunk headers, ~100 to the symbol tables


@dataclass
class RateResult:
    """What the rate control settled on."""

    chunks: dict[str, bytes]
    n_gaussians: int
    quant: QuantConfig


def _serialize(g: Any, cfg: QuantConfig, w: int, h: int) -> dict[str, bytes]:
    from dappled.models.splat.quantize import quantize

    return pack_gaussians(quantize(g.means, g.chol, g.colors, cfg, w, h), cfg, w, h)


def quantize_geometry(image: np.ndarray, g: Any, cfg: QuantConfig, solve_iters: int = 25) -> Any:
    """Snap positions and shapes to the quantizer grid, then re-solve the colors for that grid.

    Rendering is linear in the colors, so least squares undoes most of the damage the geometry
    quantization did (measured: +2 dB over quantizing everything at once).
    """
    from dappled.models.splat.fit import Gaussians, image_to_tensor, solve_colors
    from dappled.models.splat.quantize import dequantize, quantize

    h, w = image.shape[:2]
    means, chol, _ = dequantize(quantize(g.means, g.chol, g.colors, cfg, w, h), cfg)
    colors = solve_colors(means, chol, image_to_tensor(image), init=g.colors, iters=solve_iters)
    return Gaussians(means, chol, colors)


def tune_color_step(g: Any, cfg: QuantConfig, w: int, h: int, budget: int,
                    low_share: float = 0.97) -> tuple[QuantConfig, dict[str, bytes]] | None:
    """Pick the color step (the finest rate knob) so the payload lands in [low_share, 1] x budget.

    Searches steps from cfg.color_step / 4 to x 4; returns the largest payload within the budget,
    or None when even the coarsest step does not fit.
    """
    best: tuple[QuantConfig, dict[str, bytes]] | None = None
    lo, hi = cfg.color_step / 4, cfg.color_step * 4
    for trial_step in (cfg.color_step, hi):
        trial = replace(cfg, color_step=trial_step).canonical()
        c = _serialize(g, trial, w, h)
        if payload_size(c) <= budget:
            best = (trial, c)
            break
    if best is None:
        return None
    if payload_size(best[1]) >= low_share * budget:
        return best
    hi = best[0].color_step
    for _ in range(16):  # log-space bisection: a smaller step costs more bytes
        mid = float(np.sqrt(lo * hi))
        trial = replace(cfg, color_step=mid).canonical()
        c = _serialize(g, trial, w, h)
        s = payload_size(c)
        if s <= budget:
            if s > payload_size(best[1]):
                best = (trial, c)
            if s >= low_share * budget:
                break
            hi = mid
        else:
            lo = mid
    return best


def fit_to_budget(image: np.ndarray, g: Any, cfg: QuantConfig, budget: int,
                  feedback_groups: int = 4) -> tuple[QuantConfig, dict[str, bytes]]:
    """Rate control after the fit: quantize the geometry, re-solve colors, tune the color step,
    then quantize the colors with error feedback; if the payload does not fit, drop the least
    important Gaussians and repeat."""
    from dappled.models.splat.fit import prune

    h, w = image.shape[:2]
    for _ in range(8):
        gq = quantize_geometry(image, g, cfg)
        found = tune_color_step(gq, cfg, w, h, budget)
        if found is None:
            size = payload_size(_serialize(gq, replace(cfg, color_step=cfg.color_step * 4), w, h))
            g = prune(g, max(1, int(len(g) * min(0.97, 0.98 * budget / size))))
            continue
        if feedback_groups > 1:
            return _with_feedback(image, gq, found, budget, feedback_groups)
        return found
    raise OptionError(f"could not fit the image into {budget} bytes")


def _with_feedback(image: np.ndarray, gq: Any, found: tuple[QuantConfig, dict[str, bytes]], budget: int,
                   groups: int) -> tuple[QuantConfig, dict[str, bytes]]:
    """Re-quantize the colors with error feedback at the chosen step; the rate barely moves, but
    if it crosses the budget, step up slightly and retry, else keep the plain result."""
    from dappled.models.splat.fit import Gaussians, image_to_tensor, quantize_colors_with_feedback
    from dappled.models.splat.quantize import snap_colors

    h, w = image.shape[:2]
    target = image_to_tensor(image)
    cfg = found[0]
    for _ in range(3):
        colors = quantize_colors_with_feedback(gq, target, lambda c, q=cfg: snap_colors(c, q), groups)
        chunks = _serialize(Gaussians(gq.means, gq.chol, colors), cfg, w, h)
        if payload_size(chunks) <= budget:
            return cfg, chunks
        cfg = replace(cfg, color_step=cfg.color_step * 1.01).canonical()
    return found


def default_iterations(bpp: float, width: int, height: int) -> int:
    """Fit length: more Gaussians need more steps, but the encode time stays bounded."""
    base = 600  # 400 until 2026-11-23: 600 buys +0.2-0.4 dB, affordable with one numba thread
    return int(base * min(1.5, max(0.7, (bpp / 0.5) ** 0.3)))



def encode_splat(image: np.ndarray, params: EncodeParams, bpp: float) -> bytes:
    """Fit, quantize and entropy code one image to `bpp` (the whole file's rate); the payload."""
    from dappled.models.splat.fit import FitConfig, fit

    h, w = image.shape[:2]
    opts = dict(params.options)
    budget = max(image_payload_budget(bpp, w, h), MIN_PAYLOAD_BYTES)
    try:
        iterations = int(opts.pop("iterations", 0))
        over = float(opts.pop("overprovision", 1.0))
        # numba threads; 0: numba_cpu.default_threads()
        n_threads = parse_threads(opts.pop("threads", 0), "splat option threads", allow_zero=True)
    except ValueError as exc:
        raise OptionError(f"bad splat option: {exc}") from None
    if iterations < 0:
        raise OptionError(f"splat option iterations must be >= 0 (0: default), got {iterations}")
    if not (math.isfinite(over) and 0 < over <= 100):
        raise OptionError(f"splat option overprovision must be in (0, 100], got {over}")
    iterations = iterations or default_iterations(bpp, w, h)
    if opts:
        raise OptionError(f"unknown splat option(s): {', '.join(opts)}")
    quant = QuantConfig().canonical()
    n_est = max(8, int(budget * 8 / BITS_PER_GAUSSIAN_GUESS * over))
    n_est = min(n_est, max_gaussians(w, h))
    cfg = FitConfig(n_gaussians=n_est, iterations=iterations, seed=params.seed)
    with numba_threads(params.device, n_threads), FitProgress(params.progress, "fit") as bar:
        g = fit(image, cfg, progress=bar.update)
        quant, chunks = fit_to_budget(image, g, quant, budget)
    return pack_chunks(chunks)

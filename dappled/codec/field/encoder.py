"""The field encoder: fit the latent grids and networks to one image (dappled.models.field, torch),
quantize them, code the latents, and with a bpp target steer lambda until the file lands near it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dappled.codec.defaults import IMAGE_CONTAINER_BYTES
from dappled.codec.field.format import MAX_PIXELS, pack_payload
from dappled.codec.registry import EncodeParams
from dappled.codec.threads import torch_threads
from dappled.errors import OptionError
from dappled.models.field.integer import QMAX, QuantNet, encode_latents
from dappled.models.field.layout import PRESETS, grids, steps_for

# quality preset -> lambda (weight of bits per pixel against RGB MSE on [0, 1])
LAMBDAS: dict[int, float] = {q: 0.064 / 2.0 ** (q - 1) for q in range(1, 9)}
DEFAULT_COMPLEXITY = "low"


def lambda_for_bpp(bpp: float) -> float:
    """Starting lambda for a bpp target (bpp falls roughly as lambda**-0.5 on Kodak)."""
    return 0.002 * (0.6 / bpp) ** 2



@dataclass
class FieldEncoding:
    """An encoded image and the figures of its encode."""

    payload: bytes
    net: QuantNet
    lam: float
    seconds: float
    history: list[tuple[int, float, float]]


def _options(opts: dict[str, Any]) -> tuple[str, str, int | None, int, float | None]:
    from dappled.models.field.fit import EFFORTS

    opts = dict(opts)
    try:
        effort = str(opts.pop("effort", "default"))
        complexity = str(opts.pop("complexity", DEFAULT_COMPLEXITY))
        it = opts.pop("iterations", None)
        iterations = None if it is None else int(it)
        threads = int(opts.pop("threads", 1))
        lam = opts.pop("lambda", None)
        lam_v = None if lam is None else float(lam)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"bad field option: {exc}") from None
    if opts:
        raise OptionError(f"unknown field option(s): {', '.join(opts)}")
    if effort not in EFFORTS:
        raise OptionError(f"effort must be one of {', '.join(EFFORTS)}, got {effort!r}")
    if complexity not in PRESETS:
        raise OptionError(f"complexity must be one of {', '.join(PRESETS)}, got {complexity!r}")
    if iterations is not None and not 1 <= iterations <= 1_000_000:
        raise OptionError(f"iterations must be in 1..1000000, got {iterations}")
    if not 1 <= threads <= 256:
        raise OptionError(f"threads must be in 1..256, got {threads}")
    if lam_v is not None and not (math.isfinite(lam_v) and 0 < lam_v < 10):
        raise OptionError(f"lambda must be in (0, 10), got {lam_v}")
    return effort, complexity, iterations, threads, lam_v


def iterations_for(effort: str, height: int, width: int) -> int:
    """Iterations of an effort: the 768x512 count, more for small images (they are cheap)."""
    from dappled.models.field.fit import EFFORTS

    base = EFFORTS[effort]
    scale = min(2.0, max(1.0, math.sqrt(768 * 512 / max(1, height * width))))
    return int(base * scale)


def encode_field(image: np.ndarray, params: EncodeParams, lam: float | None = None,
                 target_bpp: float | None = None, progress: Any = None) -> FieldEncoding:
    """Fit, quantize and code one image; with target_bpp, steer lambda to land near that rate."""

    from dappled.models.field.fit import FitConfig, fit, image_tensor, rate_cap_for
    from dappled.models.field.quantize import quantize_network

    effort, complexity, iterations, threads, lam_opt = _options(params.options)
    h, w = image.shape[:2]
    if h * w > MAX_PIXELS:
        raise OptionError(f"the field codec takes at most {MAX_PIXELS} pixels, got {w}x{h}")
    n_it = iterations or iterations_for(effort, h, w)
    lam0 = lam_opt or lam or (lambda_for_bpp(target_bpp) if target_bpp else LAMBDAS[4])
    arch = PRESETS[complexity]
    t0 = time.perf_counter()
    gs = grids(h, w)
    with torch_threads(params.device, threads):
        cfg = FitConfig(iterations=n_it, lam=lam0, target_bpp=target_bpp, seed=params.seed,
                        step_shift=steps_for(lam0)[0], step_ladder=steps_for(lam0)[1],
                        rate_cap=rate_cap_for(lam0))
        res = fit(image, arch, cfg, params.device, progress)
        model, lam_used, history = res.model, res.lam, res.history
        target = image_tensor(image, params.device)
        best: tuple[float, bytes, QuantNet, float] | None = None
        for attempt in range(4):
            net = quantize_network(model, target, lam_used)
            latents = [np.clip(q, -QMAX, QMAX) for q in model.hard_latents()]
            coded = encode_latents(latents, gs, net)
            payload = pack_payload(net, coded.words, coded.excess)
            if target_bpp is None:
                break
            # the rate of the whole file, as the user counts it (container included)
            bpp = 8 * (len(payload) + IMAGE_CONTAINER_BYTES) / (h * w)
            err = math.log(bpp / target_bpp)
            if best is None or abs(err) < abs(best[0]):
                best = (err, payload, net, lam_used)
            if abs(err) < 0.05 or attempt == 3:
                break
            # too far off: a short continued fit with lambda moved by the measured error
            lam_used *= math.exp(1.5 * err)
            more = FitConfig(iterations=max(30, n_it // 4), lam=lam_used, target_bpp=target_bpp,
                             rate_cap=model.rate_cap,
                             lr_latent=0.05, lr_net=0.005, warmup=0.0, t_start=0.1, t_end=0.05,
                             seed=params.seed + attempt + 1)
            again = fit(image, arch, more, params.device, progress, model=model)
            history += again.history
            lam_used = again.lam
        if best is not None:  # the closest of the attempts
            _, payload, net, lam_used = best
    return FieldEncoding(payload, net, lam_used, time.perf_counter() - t0, history)

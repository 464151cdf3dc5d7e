"""The field encoder: fit the latent grids and networks to one image (dappled.models.field, torch),
quantize them, code the latents; with a bpp target, lambda is predicted before the fit and nudged
early in it (dappled.models.field.rate)."""

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
from dappled.errors import EncodeError, OptionError
from dappled.models.field.integer import QMAX, QuantNet, encode_latents
from dappled.models.field.layout import AUTO, PRESETS, grids, preset_for
from dappled.threads import parse_threads

# quality preset -> lambda (weight of bits per pixel against RGB MSE on [0, 1])
LAMBDAS: dict[int, float] = {q: 0.064 / 2.0 ** (q - 1) for q in range(1, 11)}
DEFAULT_COMPLEXITY = AUTO  # the decoder size follows lambda (layout.preset_for)


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
        threads = parse_threads(opts.pop("threads", 1), "field option threads")
        lam = opts.pop("lambda", None)
        lam_v = None if lam is None else float(lam)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"bad field option: {exc}") from None
    if opts:
        raise OptionError(f"unknown field option(s): {', '.join(opts)}")
    if effort not in EFFORTS:
        raise OptionError(f"effort must be one of {', '.join(EFFORTS)}, got {effort!r}")
    if complexity not in PRESETS and complexity != AUTO:
        raise OptionError(f"complexity must be one of {', '.join([AUTO, *PRESETS])}, got {complexity!r}")
    if iterations is not None and not 1 <= iterations <= 1_000_000:
        raise OptionError(f"iterations must be in 1..1000000, got {iterations}")
    if lam_v is not None and not (math.isfinite(lam_v) and 0 < lam_v < 10):
        raise OptionError(f"lambda must be in (0, 10), got {lam_v}")
    return effort, complexity, iterations, threads, lam_v


def iterations_for(effort: str, height: int, width: int,
                   efforts: dict[str, int] | None = None) -> int:
    """Iterations of an effort: the 768x512 count (of `efforts`, default fit.EFFORTS), more for
    small images (they are cheap)."""
    from dappled.models.field.fit import EFFORTS

    base = (efforts or EFFORTS)[effort]
    scale = min(2.0, max(1.0, math.sqrt(768 * 512 / max(1, height * width))))
    return int(base * scale)


def encode_field(image: np.ndarray, params: EncodeParams, lam: float | None = None,
                 target_bpp: float | None = None, progress: Any = None) -> FieldEncoding:
    """Fit, quantize and code one image; with target_bpp, lambda is predicted before the fit and
    nudged early in it (models/field/rate.py), so the rate lands near the target on the same
    rate-distortion curve as a fixed lambda."""

    from dappled.models.field.fit import fit, image_config, image_tensor, is_short_fit
    from dappled.models.field.quantize import quantize_network
    from dappled.models.field.rate import predict_lambda, steer_for

    effort, complexity, iterations, threads, lam_opt = _options(params.options)
    h, w = image.shape[:2]
    if h * w > MAX_PIXELS:
        raise OptionError(f"the field codec takes at most {MAX_PIXELS} pixels, got {w}x{h}")
    n_it = iterations or iterations_for(effort, h, w)
    short = is_short_fit(n_it, h * w)
    steer = None
    if target_bpp is not None and lam_opt is None:  # the steer sees the payload's rate alone
        payload_bpp = max(target_bpp - 8 * IMAGE_CONTAINER_BYTES / (h * w), 0.25 * target_bpp)
        steer = steer_for(payload_bpp, short, n_it)
    lam0 = lam_opt or lam or (predict_lambda(image, target_bpp, n_it, short) if target_bpp else LAMBDAS[4])
    arch = PRESETS[preset_for(complexity, lam0)]
    t0 = time.perf_counter()
    gs = grids(h, w)
    with torch_threads(params.device, threads):
        cfg = image_config(lam0, n_it, h * w, seed=params.seed, probes=steer.probes if steer else ())
        res = fit(image, arch, cfg, params.device, progress, steer=steer)
        bad = _non_finite(res.model)
        if bad:  # a diverged fit never reaches the quantizer and the entropy coder
            raise EncodeError(f"the field fit diverged (non-finite {bad}) at lambda {res.lam:.3g}; "
                              "try a higher --bpp or --quality")
        net = quantize_network(res.model, image_tensor(image, params.device), res.lam)
        latents = [np.clip(q, -QMAX, QMAX) for q in res.model.hard_latents()]
        coded = encode_latents(latents, gs, net)
        payload = pack_payload(net, coded.words, coded.excess)
    return FieldEncoding(payload, net, res.lam, time.perf_counter() - t0, res.history)


def _non_finite(model: Any) -> str | None:
    """The name of the first fitted tensor holding a NaN or an infinity (None when all are
    finite): such a fit must never reach the quantizer and the entropy coder."""
    import torch

    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return name
    return None

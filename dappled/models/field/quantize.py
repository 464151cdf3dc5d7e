"""Quantizing a fitted field's network for the stream: one step 2**-k per tensor, chosen by
rate-distortion (the loss the fit minimised, with the weights' own bits counted).

ARM tensors are chosen against the latents' rate (the ARM only moves bits), synthesis tensors
against MSE + lambda * weight bits. A layer's weight and bias share one step in the ARM, as its
fixed-point arithmetic needs.
"""

from __future__ import annotations

import numpy as np
import torch

from dappled.models.field.integer import KMAX, WMAX, QuantNet, QuantTensor, arm_layer_count, zigzag
from dappled.models.field.model import FieldModel

K_CANDIDATES = range(3, KMAX + 1)
ESCAPE_BITS = 16.0


def weight_bits(ints: np.ndarray) -> float:
    """Approximate Exp-Golomb length of integer weights (what the NET chunk spends on them)."""
    z = zigzag(ints.ravel()) + 1
    return float(np.sum(2 * np.floor(np.log2(z)) + 1))


def _quant(t: torch.Tensor, k: int) -> tuple[np.ndarray, torch.Tensor]:
    ints = np.clip(np.rint(t.detach().cpu().double().numpy() * (1 << k)), -WMAX, WMAX).astype(np.int64)
    return ints, torch.from_numpy(np.ldexp(ints.astype(np.float64), -k)).to(t)


@torch.no_grad()
def quantize_network(model: FieldModel, target: torch.Tensor, lam: float) -> QuantNet:
    """Pick each tensor's step and return the integer network (the model's weights are replaced
    by their quantized values, so later evaluations see what the decoder will)."""
    q = [torch.round(y) for y in model.latents]
    n_pix = float(model.height * model.width)

    def rate() -> float:  # the stream's escapes cost ~16 bits: the cap of the codec's tables
        return float(model.rate_bits(q, ESCAPE_BITS))

    def distortion() -> float:
        return float(torch.mean((model.render(q) - target) ** 2)) * n_pix / lam

    params = model.network_params()
    n_arm = arm_layer_count(model.arch)
    chosen: dict[int, tuple[np.ndarray, int]] = {}
    # ARM: weight and bias of a layer share a step; cost = latent bits + weight bits
    for i in range(0, n_arm, 2):
        w, b = params[i], params[i + 1]
        w0, b0 = w.clone(), b.clone()
        best = None
        for k in K_CANDIDATES:
            wi, wq = _quant(w0, k)
            bi, bq = _quant(b0, k)
            w.copy_(wq)
            b.copy_(bq)
            cost = rate() + weight_bits(wi) + weight_bits(bi)
            if best is None or cost < best[0]:
                best = (cost, k, wi, bi, wq, bq)
        assert best is not None
        _, k, wi, bi, wq, bq = best
        w.copy_(wq)
        b.copy_(bq)
        chosen[i], chosen[i + 1] = (wi, k), (bi, k)
    # synthesis: cost = MSE * pixels / lambda + weight bits (in bits, like the fit's loss)
    for i in range(n_arm, len(params)):
        p = params[i]
        p0 = p.clone()
        best = None
        for k in K_CANDIDATES:
            pi, pq = _quant(p0, k)
            p.copy_(pq)
            cost = distortion() + weight_bits(pi)
            if best is None or cost < best[0]:
                best = (cost, k, pi, pq)
        assert best is not None
        _, k, pi, pq = best
        p.copy_(pq)
        chosen[i] = (pi, k)
    tensors = [QuantTensor(*chosen[i]) for i in range(len(params))]
    return QuantNet(model.arch, tensors[:n_arm], tensors[n_arm:], model.step_shift, model.step_ladder)

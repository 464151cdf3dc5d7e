"""The fit's soft rounding (with the uniform noise between its two passes) and its derivative in
one numba pass, for the CPU fit.

In torch, `soft_round(soft_round(y) + noise)` is a dozen element-wise sweeps over the ~800k
latents of a 768x512 image, each with its backward: ~15 ms of one core an iteration, a sixth of
it. Here one pass writes the rounded latents and the derivative the backward needs (the floors'
derivative is zero, so it is a product of two tanh derivatives). The noise itself still comes
from torch's generator (the same draws, in the same order, as the torch path). Float32, as the
fit; the tests hold it to :func:`dappled.models.field.model.soft_round`, the CUDA path.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

# tanh(v) ~ v P(v^2) / Q(v^2) on |v| <= 8 (beyond, v is clamped: tanh(8) = 1 - 2.3e-7), a rational
# least-squares fit made for this module: at most 5.5e-7 off in float32. libm's tanhf is a call the
# compiler cannot vectorize (3x slower than torch's whole soft rounding); this is mul/add/div only.
_TP = (0.9999992213, 0.1271462333, 0.002699473794, 7.194235319e-06, -6.215423613e-09)
_TQ = (1.0, 0.4604766926, 0.0228614882, 0.0001972098343)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _tanh32(v: float) -> float:
    """float32 tanh, branch-free (see _TP, _TQ)."""
    f32 = np.float32
    v = min(max(v, f32(-8.0)), f32(8.0))
    s = v * v
    p = f32(_TP[0]) + s * (f32(_TP[1]) + s * (f32(_TP[2]) + s * (f32(_TP[3]) + s * f32(_TP[4]))))
    q = f32(_TQ[0]) + s * (f32(_TQ[1]) + s * (f32(_TQ[2]) + s * f32(_TQ[3])))
    return v * p / q


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _soft_round_noise(y: np.ndarray, u: np.ndarray, noise: float, a: float, k: float,
                      out: np.ndarray, grad: np.ndarray) -> None:
    """out = sr(sr(y) + noise (u - 1/2)) (or sr(y) without noise), grad = d out / d y; sr(x) = m +
    1/2 + k tanh(a (x - m - 1/2)), m = floor(x), k = 1 / (2 tanh(a / 2))."""
    f32 = np.float32
    a32, k32, half = f32(a), f32(k), f32(0.5)
    ak = a32 * k32
    nz = f32(noise)
    with_noise = noise > 0
    for i in range(y.size):
        x = y[i]
        m = np.floor(x)
        th = _tanh32(a32 * (x - m - half))
        t = m + half + k32 * th
        d = ak * (f32(1.0) - th * th)
        if with_noise:
            z = t + nz * (u[i] - half)
            m2 = np.floor(z)
            th2 = _tanh32(a32 * (z - m2 - half))
            t = m2 + half + k32 * th2
            d *= ak * (f32(1.0) - th2 * th2)
        out[i] = t
        grad[i] = d


class SoftRoundNoise(torch.autograd.Function):
    """soft_round(soft_round(y, T) + noise * (U - 1/2), T) on the CPU, fused (noise 0: one pass)."""

    @staticmethod
    def forward(ctx, y, temperature, noise):  # type: ignore[override]
        a = 1.0 / temperature
        k = 1.0 / (2.0 * math.tanh(a / 2.0))
        u = torch.rand_like(y) if noise > 0 else torch.empty(0)
        yn = y.detach().contiguous().numpy().reshape(-1)
        out = np.empty_like(yn)
        grad = np.empty_like(yn)
        _soft_round_noise(yn, u.contiguous().numpy().reshape(-1), float(noise), a, k, out, grad)
        ctx.save_for_backward(torch.from_numpy(grad).reshape(y.shape))
        return torch.from_numpy(out).reshape(y.shape)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return g * grad, None, None

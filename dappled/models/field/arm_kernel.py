"""The ARM's rate and its gradient in one fused numba pass, for the fit.

In torch the rate term costs most of an iteration: the (latents x context) matrix, two or three
small matrix products, the Laplace bin probabilities and all their backward passes, each a
separate sweep over ~800k latents. Here one loop over the latents gathers each context from
the padded grids, runs the MLP, takes -log2 of the bin probability and back-propagates straight
away (the loss is a plain sum of bits), accumulating the gradients of the latents and weights.
Float32 with fastmath: this is the fit's estimate, not the decoder's arithmetic (that is
:mod:`dappled.entropy.latent`). :func:`reference_bits` in tests checks it against the torch ARM.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
import torch.nn.functional as F

from dappled.entropy.latent import layout_of
from dappled.models.field.layout import NEIGHBOURS, PAD

_LN2 = math.log(2.0)
_LS_MIN = math.log(0.02)
_LS_MAX = math.log(64.0)
_NB = np.array(NEIGHBOURS, dtype=np.int64)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _arm_rate(buf: np.ndarray, offs: np.ndarray, hs: np.ndarray, ws: np.ndarray, nb: np.ndarray,
              c: int, hdim: int, n_hidden: int, w1t: np.ndarray, b1: np.ndarray, w2t: np.ndarray,
              b2: np.ndarray, wo: np.ndarray, bo: np.ndarray, gbuf: np.ndarray, gw1t: np.ndarray,
              gb1: np.ndarray, gw2t: np.ndarray, gb2: np.ndarray, gwo: np.ndarray,
              gbo: np.ndarray, cap_bits: float) -> float:
    """Total bits of all latents; gradients of that total are added into the g* arrays.

    Hidden-layer weights come transposed (inputs x units), so every inner loop runs over the
    units of a contiguous row: the loops the compiler vectorizes.
    """
    ctx = np.zeros(c, dtype=np.float32)
    z1 = np.zeros(hdim, dtype=np.float32)
    a1 = np.zeros(hdim, dtype=np.float32)
    z2 = np.zeros(hdim, dtype=np.float32)
    a2 = np.zeros(hdim, dtype=np.float32)
    g_last = np.zeros(hdim, dtype=np.float32)
    g_a1 = np.zeros(hdim, dtype=np.float32)
    gz = np.zeros(hdim, dtype=np.float32)
    total = 0.0
    min_p = 2.0**-cap_bits
    for g in range(hs.size):
        stride = ws[g] + 2 * PAD
        for y in range(hs[g]):
            for x in range(ws[g]):
                pos = offs[g] + (PAD + y) * stride + PAD + x
                for i in range(c):
                    ctx[i] = buf[pos + nb[i, 0] * stride + nb[i, 1]]
                v = buf[pos]
                for j in range(hdim):
                    z1[j] = b1[j]
                for i in range(c):
                    ci = ctx[i]
                    for j in range(hdim):
                        z1[j] += w1t[i, j] * ci
                for j in range(hdim):
                    a1[j] = max(z1[j], 0.0)
                if n_hidden == 2:
                    for j in range(hdim):
                        z2[j] = b2[j]
                    for i in range(hdim):
                        ai = a1[i]
                        for j in range(hdim):
                            z2[j] += w2t[i, j] * ai
                    for j in range(hdim):
                        a2[j] = max(z2[j], 0.0)
                    last = a2
                else:
                    last = a1
                mu = bo[g, 0]
                ls = bo[g, 1]
                for i in range(hdim):
                    mu += wo[0, i] * last[i]
                    ls += wo[1, i] * last[i]
                for i in range(c):
                    mu += wo[0, hdim + i] * ctx[i]
                    ls += wo[1, hdim + i] * ctx[i]
                dls = 1.0
                if ls < _LS_MIN:
                    ls = _LS_MIN
                    dls = 0.0
                elif ls > _LS_MAX:
                    ls = _LS_MAX
                    dls = 0.0
                b = math.exp(ls)
                d = v - mu
                sgn = 1.0 if d >= 0 else -1.0
                a = abs(d)
                up = (a + 0.5) / b
                lo = (a - 0.5) / b
                e_u = math.exp(-up)
                if lo >= 0:
                    e_l = math.exp(-lo)
                    p = 0.5 * (e_l - e_u)
                    dp_da = 0.5 * (e_u - e_l) / b
                    dp_db = 0.5 * (e_l * lo - e_u * up) / b
                else:
                    e_l = math.exp(lo)
                    p = 1.0 - 0.5 * (e_l + e_u)
                    dp_da = -0.5 * (e_l - e_u) / b
                    dp_db = -0.5 * (e_u * up - e_l * lo) / b
                if p < min_p:
                    total += cap_bits
                    continue
                total += -math.log(p) / _LN2
                gp = -1.0 / (p * _LN2)
                g_mu = np.float32(-gp * dp_da * sgn)
                g_ls = np.float32(gp * dp_db * b * dls)
                gbuf[pos] += gp * dp_da * sgn
                gbo[g, 0] += g_mu
                gbo[g, 1] += g_ls
                for i in range(hdim):
                    gwo[0, i] += g_mu * last[i]
                    gwo[1, i] += g_ls * last[i]
                    g_last[i] = g_mu * wo[0, i] + g_ls * wo[1, i]
                for i in range(c):
                    gwo[0, hdim + i] += g_mu * ctx[i]
                    gwo[1, hdim + i] += g_ls * ctx[i]
                if n_hidden == 2:
                    for j in range(hdim):
                        gz[j] = g_last[j] if z2[j] > 0 else 0.0
                        gb2[j] += gz[j]
                    for i in range(hdim):
                        ai = a1[i]
                        s = 0.0
                        for j in range(hdim):
                            gw2t[i, j] += ai * gz[j]
                            s += w2t[i, j] * gz[j]
                        g_a1[i] = s
                else:
                    for i in range(hdim):
                        g_a1[i] = g_last[i]
                for j in range(hdim):
                    gz[j] = g_a1[j] if z1[j] > 0 else 0.0
                    gb1[j] += gz[j]
                for i in range(c):
                    ci = ctx[i]
                    s = g_mu * wo[0, hdim + i] + g_ls * wo[1, hdim + i]
                    for j in range(hdim):
                        gw1t[i, j] += ci * gz[j]
                        s += w1t[i, j] * gz[j]
                    gbuf[pos + nb[i, 0] * stride + nb[i, 1]] += s
    return total


def padded_buffer(latents: list[torch.Tensor]) -> torch.Tensor:
    """Grids zero-padded above and on both sides, flattened and joined (differentiable)."""
    return torch.cat([F.pad(y[None], (PAD, PAD, PAD, 0))[0].reshape(-1) for y in latents])


class ArmRate(torch.autograd.Function):
    """Total bits of the latents (given as their padded buffer) under the ARM: fused numba. A
    latent's cost is capped at cap_bits (its gradient is zero beyond)."""

    @staticmethod
    def forward(ctx, buf, layout, arch, cap_bits, *weights):  # type: ignore[override]
        offs, hs, ws = layout
        w = [t.detach().float().cpu().contiguous().numpy() for t in weights]
        if arch.arm_layers == 2:
            w1, b1, w2, b2, wo, bo = w
        else:
            w1, b1, wo, bo = w
            w2, b2 = np.zeros((1, 1), np.float32), np.zeros(1, np.float32)
        w1t, w2t = np.ascontiguousarray(w1.T), np.ascontiguousarray(w2.T)
        b = buf.detach().float().cpu().contiguous().numpy()
        grads = [np.zeros_like(a) for a in (b, w1t, b1, w2t, b2, wo, bo)]
        total = _arm_rate(b, offs, hs, ws, _NB, arch.ctx, arch.arm_hidden, arch.arm_layers,
                          w1t, b1, w2t, b2, wo, bo, *grads, float(cap_bits))
        grads[1], grads[3] = grads[1].T.copy(), grads[3].T.copy()
        gb, gw1, gb1, gw2, gb2, gwo, gbo = (torch.from_numpy(a).to(buf.device) for a in grads)
        wg = [gw1, gb1, gw2, gb2, gwo, gbo] if arch.arm_layers == 2 else [gw1, gb1, gwo, gbo]
        ctx.save_for_backward(gb, *wg)
        return buf.new_tensor(total)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        gb, *wg = ctx.saved_tensors
        return (gb * grad, None, None, None, *(g * grad for g in wg))


def layout_arrays(latents: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, heights, widths) of the padded buffer of these grids (that of the integer ARM)."""
    offs, hs, ws, _ = layout_of([y.shape[0] for y in latents], [y.shape[1] for y in latents])
    return offs, hs, ws

"""The ARM's rate and its gradient in one fused numba pass, for the fit.

In torch the rate term costs most of an iteration: the (latents x context) matrix, two or three
small matrix products, the Laplace bin probabilities and all their backward passes, each a
separate sweep over ~800k latents. Here one pass over the grids' rows reads each context from
the padded grids, runs the MLP, takes -log2 of the bin probability and back-propagates straight
away (the loss is a plain sum of bits), accumulating the gradients of the latents and weights.
Float32 with fastmath: this is the fit's estimate, not the decoder's arithmetic (that is
:mod:`dappled.entropy.latent`). The tests hold it to the torch ARM (``rate_bits_torch``).
numpy's error model: a diverged fit's NaN flows through (as in torch) to the encoder's
non-finite check, instead of raising ZeroDivisionError in the kernel.
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


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy", inline="always")
def _dense_relu_rows(inp: np.ndarray, n_in: int, wt: np.ndarray, bias: np.ndarray, wd: int,
                     z: np.ndarray, a: np.ndarray) -> None:
    """One hidden layer over a row of wd latents: z = bias + inp[:n_in] . wt (wt: inputs x
    units), a = ReLU(z); loops over the row innermost."""
    for j in range(z.shape[0]):
        zr = z[j]
        bj = bias[j]
        for x in range(wd):
            zr[x] = bj
        for i in range(n_in):
            wij = wt[i, j]
            ir = inp[i]
            for x in range(wd):
                zr[x] += wij * ir[x]
        ar = a[j]
        for x in range(wd):
            ar[x] = max(zr[x], np.float32(0.0))


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy", inline="always")
def _relu_back_rows(g: np.ndarray, z: np.ndarray, gbias: np.ndarray, wd: int) -> None:
    """Back through :func:`_dense_relu_rows`' ReLU: g (the gradient at its output, units x row)
    becomes the gradient at z, and its row sums are added into gbias."""
    for j in range(z.shape[0]):
        gr = g[j]
        zr = z[j]
        sm = np.float32(0.0)
        for x in range(wd):
            gr[x] = gr[x] if zr[x] > 0 else np.float32(0.0)
            sm += gr[x]
        gbias[j] += sm


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _arm_rate(buf: np.ndarray, offs: np.ndarray, hs: np.ndarray, ws: np.ndarray,
                   nb: np.ndarray, c: int, hdim: int, n_hidden: int, w1t: np.ndarray,
                   b1: np.ndarray, w2t: np.ndarray, b2: np.ndarray, wo: np.ndarray,
                   bo: np.ndarray, gbuf: np.ndarray, gw1t: np.ndarray, gb1: np.ndarray,
                   gw2t: np.ndarray, gb2: np.ndarray, gwo: np.ndarray, gbo: np.ndarray,
                   cap_bits: float) -> float:
    """Total bits of all latents; gradients of that total are added into the g* arrays.

    A grid row at a time: in the fit every latent's context is already known (nothing is
    decoded), so a row's latents are independent and each layer runs as loops over the row, the
    ones the compiler vectorizes (a loop over 8 units per latent did not: 3x slower). Hidden-layer
    weights come transposed (inputs x units).
    """
    f32 = np.float32
    wmax = 1
    for g in range(ws.size):
        wmax = max(wmax, ws[g])
    ctx = np.zeros((c, wmax), dtype=f32)
    z1 = np.zeros((hdim, wmax), dtype=f32)
    a1 = np.zeros((hdim, wmax), dtype=f32)
    z2 = np.zeros((hdim, wmax), dtype=f32)
    a2 = np.zeros((hdim, wmax), dtype=f32)
    gl = np.zeros((hdim, wmax), dtype=f32)
    ga = np.zeros((hdim, wmax), dtype=f32)
    mu = np.zeros(wmax, dtype=f32)
    ls = np.zeros(wmax, dtype=f32)
    gmu = np.zeros(wmax, dtype=f32)
    gls = np.zeros(wmax, dtype=f32)
    srow = np.zeros(wmax, dtype=f32)
    total = 0.0
    min_p = f32(2.0**-cap_bits)
    half = f32(0.5)
    inv_ln2 = f32(1.0 / _LN2)
    ls_min = f32(_LS_MIN)
    ls_max = f32(_LS_MAX)
    for g in range(hs.size):
        wd = ws[g]
        stride = wd + 2 * PAD
        for y in range(hs[g]):
            base = offs[g] + (PAD + y) * stride + PAD
            for i in range(c):
                o = base + nb[i, 0] * stride + nb[i, 1]
                cr = ctx[i]
                for x in range(wd):
                    cr[x] = buf[o + x]
            # forward: hidden layer(s), then (mu, log scale) from the last layer and the context
            _dense_relu_rows(ctx, c, w1t, b1, wd, z1, a1)
            last = a1
            if n_hidden == 2:
                _dense_relu_rows(a1, hdim, w2t, b2, wd, z2, a2)
                last = a2
            m0 = bo[g, 0]
            l0 = bo[g, 1]
            for x in range(wd):
                mu[x] = m0
                ls[x] = l0
            for j in range(hdim):
                w0 = wo[0, j]
                w1 = wo[1, j]
                lr = last[j]
                for x in range(wd):
                    mu[x] += w0 * lr[x]
                    ls[x] += w1 * lr[x]
            for i in range(c):
                w0 = wo[0, hdim + i]
                w1 = wo[1, hdim + i]
                cr = ctx[i]
                for x in range(wd):
                    mu[x] += w0 * cr[x]
                    ls[x] += w1 * cr[x]
            # the bin probability, its bits and their derivatives, latent by latent
            for x in range(wd):
                lsx = ls[x]
                dls = f32(1.0)
                if lsx < ls_min:
                    lsx = ls_min
                    dls = f32(0.0)
                elif lsx > ls_max:
                    lsx = ls_max
                    dls = f32(0.0)
                b = math.exp(lsx)
                rb = f32(1.0) / b
                d = buf[base + x] - mu[x]
                sgn = f32(1.0) if d >= 0 else f32(-1.0)
                a = abs(d)
                up = (a + half) * rb
                lo = (a - half) * rb
                e_u = math.exp(-up)
                if lo >= 0:
                    e_l = math.exp(-lo)
                    p = half * (e_l - e_u)
                    dp_da = half * (e_u - e_l) * rb
                    dp_db = half * (e_l * lo - e_u * up) * rb
                else:
                    e_l = math.exp(lo)
                    p = f32(1.0) - half * (e_l + e_u)
                    dp_da = -half * (e_l - e_u) * rb
                    dp_db = -half * (e_u * up - e_l * lo) * rb
                if p < min_p:
                    total += cap_bits
                    gmu[x] = 0.0
                    gls[x] = 0.0
                    continue
                total += -math.log(p) * inv_ln2
                gp = -inv_ln2 / p
                gmu[x] = -gp * dp_da * sgn
                gls[x] = gp * dp_db * b * dls
                gbuf[base + x] += gp * dp_da * sgn
            # backward through the output layer
            sm = f32(0.0)
            sl = f32(0.0)
            for x in range(wd):
                sm += gmu[x]
                sl += gls[x]
            gbo[g, 0] += sm
            gbo[g, 1] += sl
            for j in range(hdim):
                lr = last[j]
                sm = f32(0.0)
                sl = f32(0.0)
                for x in range(wd):
                    sm += gmu[x] * lr[x]
                    sl += gls[x] * lr[x]
                gwo[0, j] += sm
                gwo[1, j] += sl
                w0 = wo[0, j]
                w1 = wo[1, j]
                gr = gl[j]
                for x in range(wd):
                    gr[x] = gmu[x] * w0 + gls[x] * w1
            if n_hidden == 2:
                _relu_back_rows(gl, z2, gb2, wd)  # gl becomes the gradient at z2
                for i in range(hdim):
                    ar = a1[i]
                    gar = ga[i]
                    for x in range(wd):
                        gar[x] = 0.0
                    for j in range(hdim):
                        gr = gl[j]
                        sm = f32(0.0)
                        wij = w2t[i, j]
                        for x in range(wd):
                            sm += ar[x] * gr[x]
                            gar[x] += wij * gr[x]
                        gw2t[i, j] += sm
                top = ga
            else:
                top = gl
            _relu_back_rows(top, z1, gb1, wd)  # top becomes the gradient at z1
            for i in range(c):
                cr = ctx[i]
                w0 = wo[0, hdim + i]
                w1 = wo[1, hdim + i]
                sm = f32(0.0)
                sl = f32(0.0)
                for x in range(wd):
                    srow[x] = gmu[x] * w0 + gls[x] * w1
                    sm += gmu[x] * cr[x]
                    sl += gls[x] * cr[x]
                gwo[0, hdim + i] += sm
                gwo[1, hdim + i] += sl
                for j in range(hdim):
                    gr = top[j]
                    wij = w1t[i, j]
                    sm = f32(0.0)
                    for x in range(wd):
                        sm += cr[x] * gr[x]
                        srow[x] += wij * gr[x]
                    gw1t[i, j] += sm
                o = base + nb[i, 0] * stride + nb[i, 1]
                for x in range(wd):
                    gbuf[o + x] += srow[x]
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

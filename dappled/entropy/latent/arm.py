"""The latent codec's context model: an autoregressive integer MLP (ARM) that predicts each
latent's (mu, ln b) in 2**-FRAC_BITS fixed point from its causal neighbours in its own grid.

Portability: encoder and decoder must compute the same prediction on any machine and thread
count, so the network runs in int64 (weights ``w * 2**-k``, explicit rounding shifts and
clamps) and the same numba function serves both sides. The bounds checked by
:class:`IntegerARM` keep every sum far from int64 overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from dappled.entropy.latent.grids import PAD
from dappled.entropy.latent.tables import FRAC_BITS, table_of

MAX_WEIGHT = (1 << 15) - 1  # |integer weight or bias| bound
MAX_SHIFT = 16  # a layer's values are ints * 2**-k, 0 <= k <= MAX_SHIFT
MAX_WIDTH = 64  # hidden units
MAX_CONTEXT = 16  # neighbours
ACT_CLAMP = 1 << 30  # activations are clamped to +-this (fixed point)


def _i64(a: np.ndarray) -> np.ndarray:
    """A C-contiguous int64 array (what the kernels are compiled for)."""
    return np.ascontiguousarray(a, dtype=np.int64)


@dataclass(frozen=True)
class IntegerLayer:
    """One layer as integers: weight and bias values are ``ints * 2**-shift``."""

    weight: np.ndarray  # int64 (out, in)
    bias: np.ndarray  # int64 (out,); the output layer's is (grids, 2), one row per grid
    shift: int


@dataclass(frozen=True)
class IntegerARM:
    """A causal context model: ``hidden`` ReLU layers (one or two, of one width h) over the
    context (the latents at ``neighbours`` (dy, dx) offsets, 0 outside the grid), then an
    output layer over [last hidden, context] giving (mu, ln b). The output bias has one row
    per grid: the latent's own grid's row is added."""

    neighbours: np.ndarray  # int64 (C, 2): (dy, dx), causal (dy < 0, or dy == 0 and dx < 0)
    hidden: tuple[IntegerLayer, ...]
    output: IntegerLayer

    def __post_init__(self) -> None:
        nb = np.ascontiguousarray(self.neighbours, dtype=np.int64).reshape(-1, 2)
        object.__setattr__(self, "neighbours", nb)
        c = len(nb)
        if not 1 <= c <= MAX_CONTEXT:
            raise ValueError(f"context of {c} neighbours (1..{MAX_CONTEXT})")
        dy, dx = nb[:, 0], nb[:, 1]
        if np.any((dy > 0) | ((dy == 0) & (dx >= 0)) | (dy < -PAD) | (np.abs(dx) > PAD)):
            raise ValueError(f"neighbours must be causal and within {PAD}: {nb.tolist()}")
        if len(self.hidden) not in (1, 2):
            raise ValueError("the context model has one or two hidden layers")
        h = len(self.hidden[0].bias)
        shapes = [((h, c), (h,))] + [((h, h), (h,))] * (len(self.hidden) - 1)
        shapes.append(((2, h + c), (len(self.output.bias), 2)))
        for layer, (ws, bs) in zip((*self.hidden, self.output), shapes, strict=True):
            if not 1 <= h <= MAX_WIDTH or layer.weight.shape != ws or layer.bias.shape != bs:
                raise ValueError(f"layer shapes {layer.weight.shape}, {layer.bias.shape}: want {ws}, {bs}")
            if not 0 <= layer.shift <= MAX_SHIFT:
                raise ValueError(f"layer shift {layer.shift} out of 0..{MAX_SHIFT}")
            for a in (layer.weight, layer.bias):
                if a.size and np.abs(a).max() > MAX_WEIGHT:
                    raise ValueError(f"layer integer beyond +-{MAX_WEIGHT}")

    @property
    def n_grids(self) -> int:
        """Grids the output bias has a row for."""
        return len(self.output.bias)

    def kernel_args(self) -> tuple:
        """The arguments of :func:`predict_all` and the decoder after the layout, in order."""
        l1, out = self.hidden[0], self.output
        if len(self.hidden) == 2:
            l2 = self.hidden[1]
            w2, b2, k2 = l2.weight, l2.bias, l2.shift
        else:
            w2, b2, k2 = np.zeros((1, 1), np.int64), np.zeros(1, np.int64), 0
        return (self.neighbours, len(self.neighbours), len(l1.bias), len(self.hidden),
                _i64(l1.weight), _i64(l1.bias), l1.shift, _i64(w2), _i64(b2), k2,
                _i64(out.weight), _i64(out.bias), out.shift)


@numba.njit(cache=True, nogil=True, inline="always")
def _rshift(v: int, k: int) -> int:
    if k == 0:
        return v
    return (v + (1 << (k - 1))) >> k


@numba.njit(cache=True, nogil=True, inline="always")
def _clamp(v: int, lim: int) -> int:
    if v > lim:
        return lim
    if v < -lim:
        return -lim
    return v


@numba.njit(cache=True, nogil=True, inline="always")
def predict(ctx: np.ndarray, c: int, hdim: int, n_hidden: int, w1: np.ndarray, b1: np.ndarray,
            k1: int, w2: np.ndarray, b2: np.ndarray, k2: int, wo: np.ndarray, bo: np.ndarray,
            g: int, ko: int, a1: np.ndarray, a2: np.ndarray) -> tuple[int, int]:
    """(mu, log scale) in 2**-FRAC_BITS fixed point from integer context latents ctx[:c]; bo[g]
    is the output bias of the latent's grid (one row of the per-grid table). Inlined into the
    coding loops (a call per latent, with a view of bo, cost a third of the decode)."""
    for j in range(hdim):
        acc = b1[j] << FRAC_BITS
        for i in range(c):
            acc += w1[j, i] * (ctx[i] << FRAC_BITS)
        v = _clamp(_rshift(acc, k1), ACT_CLAMP)
        a1[j] = v if v > 0 else 0
    last = a1
    if n_hidden == 2:
        for j in range(hdim):
            acc = b2[j] << FRAC_BITS
            for i in range(hdim):
                acc += w2[j, i] * a1[i]
            v = _clamp(_rshift(acc, k2), ACT_CLAMP)
            a2[j] = v if v > 0 else 0
        last = a2
    out0 = bo[g, 0] << FRAC_BITS
    out1 = bo[g, 1] << FRAC_BITS
    for i in range(hdim):
        out0 += wo[0, i] * last[i]
        out1 += wo[1, i] * last[i]
    for i in range(c):
        out0 += wo[0, hdim + i] * (ctx[i] << FRAC_BITS)
        out1 += wo[1, hdim + i] * (ctx[i] << FRAC_BITS)
    return _clamp(_rshift(out0, ko), ACT_CLAMP), _clamp(_rshift(out1, ko), ACT_CLAMP)


@numba.njit(cache=True, nogil=True, inline="always")
def gather(buf: np.ndarray, base: int, stride: int, y: int, x: int, nb: np.ndarray, c: int,
           ctx: np.ndarray) -> bool:
    """Fill ctx with the causal neighbours; True when any of them is non-zero."""
    nonzero = False
    for i in range(c):
        v = buf[base + (PAD + y + nb[i, 0]) * stride + PAD + x + nb[i, 1]]
        ctx[i] = v
        if v != 0:
            nonzero = True
    return nonzero


@numba.njit(cache=True, nogil=True)
def predict_all(buf: np.ndarray, offs: np.ndarray, hs: np.ndarray, ws: np.ndarray, nb: np.ndarray,
                c: int, hdim: int, n_hidden: int, w1: np.ndarray, b1: np.ndarray, k1: int,
                w2: np.ndarray, b2: np.ndarray, k2: int, wo: np.ndarray, bo: np.ndarray,
                ko: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Encoder side: table id, centre and raw mu / log scale of every latent (all known)."""
    n = 0
    for g in range(hs.size):
        n += hs[g] * ws[g]
    tid = np.empty(n, dtype=np.int64)
    cen = np.empty(n, dtype=np.int64)
    mus = np.empty(n, dtype=np.int64)
    lss = np.empty(n, dtype=np.int64)
    ctx = np.zeros(c, dtype=np.int64)
    a1 = np.zeros(hdim, dtype=np.int64)
    a2 = np.zeros(hdim, dtype=np.int64)
    j = 0
    for g in range(hs.size):
        stride = ws[g] + 2 * PAD
        ctx[:] = 0
        mu0, ls0 = predict(ctx, c, hdim, n_hidden, w1, b1, k1, w2, b2, k2, wo, bo, g, ko, a1, a2)
        for y in range(hs[g]):
            for x in range(ws[g]):
                if gather(buf, offs[g], stride, y, x, nb, c, ctx):
                    mu, ls = predict(ctx, c, hdim, n_hidden, w1, b1, k1, w2, b2, k2, wo, bo, g, ko, a1, a2)
                else:  # an all-zero context: the prediction is a constant
                    mu, ls = mu0, ls0
                tid[j], cen[j] = table_of(mu, ls)
                mus[j] = mu
                lss[j] = ls
                j += 1
    return tid, cen, mus, lss

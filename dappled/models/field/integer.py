"""The field codec's integer side: the quantized network, the fixed-point ARM and the coding of
the latents under it.

Portability: the decoder must compute exactly the probabilities the encoder used, on any
machine and thread count. So the ARM runs in int64 fixed point (weights ``w * 2**-k``,
activations at ``2**-ARM_BITS``, explicit rounding shifts and clamps), its outputs pick one of
64 x 16 deterministic Laplace tables (:func:`dappled.entropy.parametric.tables_at_scale`), and
the latents go through the numba rANS coder of :mod:`dappled.entropy.rans_flat`, one symbol at
a time in the decoder. The same numba function computes the ARM for encoder and decoder.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from dappled.entropy.detmath import det_exp
from dappled.entropy.parametric import tables_at_scale
from dappled.entropy.rans import CdfTable
from dappled.entropy.rans_flat import (
    dec_init,
    dec_symbol,
    encode_flat,
    flatten_tables,
)
from dappled.errors import BitstreamError
from dappled.models.field.layout import ARM_BITS, NEIGHBOURS, PAD, Arch, Grid

QMAX = 4095  # |latent| bound (step units), enforced by encoder and decoder
WMAX = (1 << 15) - 1  # |integer weight| bound
KMAX = 16  # weight steps are 2**-k, 0 <= k <= KMAX
ACT_CLAMP = 1 << 30  # ARM activations are clamped to +-this (fixed point)
SCALE_LEVELS = 64
ESCAPE_FREQ = 16  # of 2**16: the escape entry's floor (see _floor_escape)
# so a latent costs >= 3.52e-4 bits, and B bytes of latents hold at most 2,840 * 8 * B of them
LATENTS_PER_BIT = 2840
MEAN_FRAC_BITS = 4
LS_MIN_FP = -1001  # round(ln(0.02) * 2**ARM_BITS)
LS_MAX_FP = 1065  # round(ln(64) * 2**ARM_BITS)
_NB = np.array(NEIGHBOURS, dtype=np.int64)


@dataclass
class QuantTensor:
    """One network tensor as integers: value = ints * 2**-k."""

    ints: np.ndarray  # int64, the tensor's shape
    k: int

    def values(self) -> np.ndarray:
        """The float64 values (exact)."""
        return np.ldexp(self.ints.astype(np.float64), -self.k)


@dataclass
class QuantNet:
    """The network the stream carries: ARM layers (weight and bias share k) and synthesis."""

    arch: Arch
    arm: list[QuantTensor]  # w1, b1, [w2, b2], wo, bo (one row per grid)
    synth: list[QuantTensor]  # wa, ba, wb, bb, ka, kba, kb, kbb
    step_shift: int = 0  # latent steps times 2**step_shift
    step_ladder: int = 0  # which ladder of level steps (layout.step)

    def tensors(self) -> list[QuantTensor]:
        return [*self.arm, *self.synth]


def tensor_shapes(arch: Arch, n_grids: int) -> list[tuple[int, ...]]:
    """Shapes of all network tensors, in stream order (ARM then synthesis)."""
    h, c = arch.arm_hidden, arch.ctx
    shapes: list[tuple[int, ...]] = [(h, c), (h,)]
    if arch.arm_layers == 2:
        shapes += [(h, h), (h,)]
    shapes += [(2, h + c), (n_grids, 2)]  # the output bias is per grid
    sh, rh = arch.synth_hidden, arch.res_hidden
    shapes += [(sh, n_grids), (sh,), (3, sh), (3,), (rh, 3, 3, 3), (rh,), (3, rh, 3, 3), (3,)]
    return shapes


def arm_layer_count(arch: Arch) -> int:
    """Number of ARM tensors (weights and biases)."""
    return 2 * (arch.arm_layers + 1)


def zigzag(v: np.ndarray) -> np.ndarray:
    """Signed -> non-negative integers (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...)."""
    v = np.asarray(v, dtype=np.int64)
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def unzigzag(u: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zigzag`."""
    u = np.asarray(u, dtype=np.int64)
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


# ---------------------------------------------------------------- coding tables


def _floor_escape(table: CdfTable) -> CdfTable:
    """The table with its escape frequency raised to ESCAPE_FREQ (taken from the likeliest
    symbol): every latent then costs at least -log2(1 - ESCAPE_FREQ / 2**16) bits, which bounds
    the latents (and the decoder's work) a stream of a given size can declare."""
    f = np.diff(table.array())
    if f[-1] >= ESCAPE_FREQ:
        return table
    top = int(np.argmax(f[:-1]))
    f[top] -= ESCAPE_FREQ - f[-1]
    f[-1] = ESCAPE_FREQ
    return CdfTable.from_freqs(f)


class _Tables:
    """The 64 x 16 Laplace tables, flattened for numba; built once per process."""

    def __init__(self) -> None:
        i = np.arange(SCALE_LEVELS, dtype=np.float64)
        span = float(LS_MAX_FP - LS_MIN_FP)
        scales = det_exp((LS_MIN_FP + i * span / (SCALE_LEVELS - 1)) / float(1 << ARM_BITS))
        model = [t for s in scales for t in tables_at_scale("laplace", float(s))]
        self.cdf, self.start, self.nsym = flatten_tables([_floor_escape(m.table) for m in model])
        self.lo = np.array([m.lo for m in model], dtype=np.int64)


_TABLES: _Tables | None = None
_LOCK = threading.Lock()


def tables() -> _Tables:
    """The shared table set (deterministic on every machine)."""
    global _TABLES
    if _TABLES is None:
        with _LOCK:
            if _TABLES is None:
                _TABLES = _Tables()
    return _TABLES


# ---------------------------------------------------------------- fixed-point ARM


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


@numba.njit(cache=True, nogil=True)
def _predict(ctx: np.ndarray, c: int, hdim: int, n_hidden: int, w1: np.ndarray, b1: np.ndarray,
             k1: int, w2: np.ndarray, b2: np.ndarray, k2: int, wo: np.ndarray, bo: np.ndarray,
             ko: int, a1: np.ndarray, a2: np.ndarray) -> tuple[int, int]:
    """(mu, log scale) in 2**-ARM_BITS fixed point from integer context latents ctx[:c]; bo is
    the output bias of the latent's grid (one row of the per-grid table)."""
    for j in range(hdim):
        acc = b1[j] << ARM_BITS
        for i in range(c):
            acc += w1[j, i] * (ctx[i] << ARM_BITS)
        v = _clamp(_rshift(acc, k1), ACT_CLAMP)
        a1[j] = v if v > 0 else 0
    last = a1
    if n_hidden == 2:
        for j in range(hdim):
            acc = b2[j] << ARM_BITS
            for i in range(hdim):
                acc += w2[j, i] * a1[i]
            v = _clamp(_rshift(acc, k2), ACT_CLAMP)
            a2[j] = v if v > 0 else 0
        last = a2
    out0 = bo[0] << ARM_BITS
    out1 = bo[1] << ARM_BITS
    for i in range(hdim):
        out0 += wo[0, i] * last[i]
        out1 += wo[1, i] * last[i]
    for i in range(c):
        out0 += wo[0, hdim + i] * (ctx[i] << ARM_BITS)
        out1 += wo[1, hdim + i] * (ctx[i] << ARM_BITS)
    return _clamp(_rshift(out0, ko), ACT_CLAMP), _clamp(_rshift(out1, ko), ACT_CLAMP)


@numba.njit(cache=True, nogil=True, inline="always")
def _table_of(mu: int, ls: int) -> tuple[int, int]:
    """(table id, integer centre) of a prediction: scale index * 16 + mean fraction."""
    span = LS_MAX_FP - LS_MIN_FP
    si = ((ls - LS_MIN_FP) * (SCALE_LEVELS - 1) + (span >> 1)) // span
    if si < 0:
        si = 0
    if si > SCALE_LEVELS - 1:
        si = SCALE_LEVELS - 1
    q16 = (mu + (1 << (ARM_BITS - MEAN_FRAC_BITS - 1))) >> (ARM_BITS - MEAN_FRAC_BITS)
    return si * (1 << MEAN_FRAC_BITS) + (q16 & ((1 << MEAN_FRAC_BITS) - 1)), q16 >> MEAN_FRAC_BITS


@numba.njit(cache=True, nogil=True)
def _gather(buf: np.ndarray, base: int, stride: int, y: int, x: int, nb: np.ndarray, c: int,
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
def _arm_all(buf: np.ndarray, offs: np.ndarray, hs: np.ndarray, ws: np.ndarray, nb: np.ndarray,
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
        mu0, ls0 = _predict(ctx, c, hdim, n_hidden, w1, b1, k1, w2, b2, k2, wo, bo[g], ko, a1, a2)
        for y in range(hs[g]):
            for x in range(ws[g]):
                if _gather(buf, offs[g], stride, y, x, nb, c, ctx):
                    mu, ls = _predict(ctx, c, hdim, n_hidden, w1, b1, k1, w2, b2, k2, wo, bo[g], ko, a1, a2)
                else:  # an all-zero context: the prediction is a constant
                    mu, ls = mu0, ls0
                tid[j], cen[j] = _table_of(mu, ls)
                mus[j] = mu
                lss[j] = ls
                j += 1
    return tid, cen, mus, lss


@numba.njit(cache=True, nogil=True)
def _decode_all(words: np.ndarray, excess: np.ndarray, buf: np.ndarray, offs: np.ndarray,
                hs: np.ndarray, ws: np.ndarray, nb: np.ndarray, c: int, hdim: int, n_hidden: int,
                w1: np.ndarray, b1: np.ndarray, k1: int, w2: np.ndarray, b2: np.ndarray, k2: int,
                wo: np.ndarray, bo: np.ndarray, ko: int, cdf: np.ndarray, start: np.ndarray,
                nsym: np.ndarray, lo: np.ndarray) -> int:
    """Decoder side: fill the padded grids in raster order. Returns 0, or an error code:
    1 too few escape values, 2 latent out of range, 3 escape values left over."""
    ctx = np.zeros(c, dtype=np.int64)
    a1 = np.zeros(hdim, dtype=np.int64)
    a2 = np.zeros(hdim, dtype=np.int64)
    x_state, pos = dec_init(words)
    e = 0
    for g in range(hs.size):
        stride = ws[g] + 2 * PAD
        ctx[:] = 0
        mu0, ls0 = _predict(ctx, c, hdim, n_hidden, w1, b1, k1, w2, b2, k2, wo, bo[g], ko, a1, a2)
        t0, centre0 = _table_of(mu0, ls0)
        for y in range(hs[g]):
            for x in range(ws[g]):
                if _gather(buf, offs[g], stride, y, x, nb, c, ctx):
                    mu, ls = _predict(ctx, c, hdim, n_hidden, w1, b1, k1, w2, b2, k2, wo, bo[g], ko, a1, a2)
                    t, centre = _table_of(mu, ls)
                else:  # an all-zero context: the prediction is a constant
                    t, centre = t0, centre0
                s, x_state, pos = dec_symbol(x_state, pos, words, cdf, start[t], nsym[t])
                if s == nsym[t] - 1:  # escape: the excess beyond the table's edge
                    if e >= excess.size:
                        return 1
                    ex = excess[e]
                    e += 1
                    r = lo[t] + nsym[t] - 2 + ex if ex > 0 else lo[t] + ex
                else:
                    r = lo[t] + s
                q = centre + r
                if q > QMAX or q < -QMAX:
                    return 2
                buf[offs[g] + (PAD + y) * stride + PAD + x] = q
    if e != excess.size:
        return 3
    return 0


# ---------------------------------------------------------------- layout of the padded grids


def padded_layout(gs: list[Grid]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(offsets, heights, widths, total) of the grids zero-padded above and on both sides."""
    return layout_of([g.height for g in gs], [g.width for g in gs])


def layout_of(heights: list[int], widths: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """:func:`padded_layout` from the grid sizes alone."""
    hs = np.array(heights, dtype=np.int64)
    ws = np.array(widths, dtype=np.int64)
    sizes = (hs + PAD) * (ws + 2 * PAD)
    offs = np.zeros(len(hs), dtype=np.int64)
    if len(hs) > 1:
        np.cumsum(sizes[:-1], out=offs[1:])
    return offs, hs, ws, int(sizes.sum())


def pack_grids(latents: list[np.ndarray], gs: list[Grid]) -> np.ndarray:
    """Latent grids -> one zero-padded flat buffer (the ARM's view)."""
    offs, hs, ws, total = padded_layout(gs)
    buf = np.zeros(total, dtype=np.int64)
    for q, o, h, w in zip(latents, offs, hs, ws, strict=True):
        view = buf[o : o + (h + PAD) * (w + 2 * PAD)].reshape(h + PAD, w + 2 * PAD)
        view[PAD:, PAD : PAD + w] = q
    return buf


def unpack_grids(buf: np.ndarray, gs: list[Grid]) -> list[np.ndarray]:
    """Inverse of :func:`pack_grids`."""
    offs, hs, ws, _ = padded_layout(gs)
    out = []
    for o, h, w in zip(offs, hs, ws, strict=True):
        view = buf[o : o + (h + PAD) * (w + 2 * PAD)].reshape(h + PAD, w + 2 * PAD)
        out.append(view[PAD:, PAD : PAD + w].copy())
    return out


def _arm_args(net: QuantNet) -> tuple:
    a = net.arch
    w1, b1 = net.arm[0], net.arm[1]
    if a.arm_layers == 2:
        w2, b2, wo, bo = net.arm[2], net.arm[3], net.arm[4], net.arm[5]
        w2i, b2i, k2 = w2.ints, b2.ints, w2.k
    else:
        wo, bo = net.arm[2], net.arm[3]
        w2i, b2i, k2 = np.zeros((1, 1), np.int64), np.zeros(1, np.int64), 0
    return (a.ctx, a.arm_hidden, a.arm_layers, w1.ints, b1.ints, w1.k, w2i, b2i, k2,
            wo.ints, bo.ints, wo.k)


def arm_predictions(latents: list[np.ndarray], gs: list[Grid],
                    net: QuantNet) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Encoder side: (table ids, centres, mu, log scale) of every latent, in stream order."""
    offs, hs, ws, _ = padded_layout(gs)
    return _arm_all(pack_grids(latents, gs), offs, hs, ws, _NB, *_arm_args(net))


@dataclass
class CodedLatents:
    """The latents as coded: rANS words and the escape excesses, in order."""

    words: np.ndarray
    excess: np.ndarray


def _symbols(latents: list[np.ndarray], gs: list[Grid],
             net: QuantNet) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(table ids, coded symbols, escape mask, escaped excesses) of the latents under the ARM."""
    flat = np.concatenate([q.reshape(-1) for q in latents]).astype(np.int64)
    tid, centre, _, _ = arm_predictions(latents, gs, net)
    tb = tables()
    r = flat - centre
    lo, nsym = tb.lo[tid], tb.nsym[tid]
    s = r - lo
    esc = (s < 0) | (s >= nsym - 1)
    excess = np.where(r > lo + nsym - 2, r - (lo + nsym - 2), r - lo)[esc]
    return tid, np.where(esc, nsym - 1, s), esc, excess


def encode_latents(latents: list[np.ndarray], gs: list[Grid], net: QuantNet) -> CodedLatents:
    """Code integer latents (|q| <= QMAX) under the integer ARM."""
    if any(q.size and np.abs(q).max() > QMAX for q in latents):
        raise ValueError("latent out of range")
    tid, s, _, excess = _symbols(latents, gs, net)
    tb = tables()
    return CodedLatents(encode_flat(s, tid, tb.cdf, tb.start), excess.astype(np.int64))


def decode_latents(words: np.ndarray, excess: np.ndarray, gs: list[Grid], net: QuantNet) -> list[np.ndarray]:
    """Inverse of :func:`encode_latents`; BitstreamError where the stream is inconsistent."""
    tb = tables()
    offs, hs, ws, total = padded_layout(gs)
    buf = np.zeros(total, dtype=np.int64)
    code = _decode_all(words, excess.astype(np.int64), buf, offs, hs, ws, _NB, *_arm_args(net),
                       tb.cdf, tb.start, tb.nsym, tb.lo)
    if code:
        why = {1: "more escapes than escape values", 2: "latent out of range",
               3: "escape values left over"}[code]
        raise BitstreamError(f"field latents: {why}")
    return unpack_grids(buf, gs)


def latent_bits(latents: list[np.ndarray], gs: list[Grid], net: QuantNet) -> tuple[np.ndarray, np.ndarray]:
    """Per latent: ideal code length (bits) under the integer ARM's tables, and whether it
    escapes (its excess, coded apart, is not counted)."""
    tid, s, esc, _ = _symbols(latents, gs, net)
    tb = tables()
    base = tb.start[tid] + s
    freq = tb.cdf[base + 1] - tb.cdf[base]
    return 16.0 - np.log2(freq), esc


def estimated_bits(latents: list[np.ndarray], gs: list[Grid], net: QuantNet) -> float:
    """Ideal code length (bits) of the latents under the integer ARM (no coder overhead)."""
    return float(latent_bits(latents, gs, net)[0].sum())

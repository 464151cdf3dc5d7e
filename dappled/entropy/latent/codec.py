"""The latent codec: integer grids <-> one rANS string plus escape values, under an
:class:`~dappled.entropy.latent.arm.IntegerARM`.

Each latent q (|q| <= QMAX), grid after grid in raster order, is coded as ``q - centre - lo``
in the Laplace table its prediction picks (:func:`~dappled.entropy.latent.tables.table_of`), or
as the table's escape entry when it falls outside, the excess beyond the table's edge then
being returned apart (``excess``, for the caller to code). The rANS coder is the numba one of
:mod:`dappled.entropy.rans_flat` (CompressAI's Rans64 format); the decoder predicts and decodes
one latent at a time in compiled code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from dappled.entropy.latent.arm import IntegerARM, gather, predict, predict_all
from dappled.entropy.latent.grids import PAD, layout_of, pack_grids, unpack_grids
from dappled.entropy.latent.tables import LATENTS_PER_BIT, table_of, tables
from dappled.entropy.rans_flat import dec_init, dec_symbol, encode_flat
from dappled.errors import BitstreamError, LimitError

QMAX = 4095  # |latent| bound, enforced by encoder and decoder


@dataclass
class CodedLatents:
    """The latents as coded: rANS words and the escape excesses (never 0), in order."""

    words: np.ndarray
    excess: np.ndarray


@dataclass
class Predictions:
    """Per latent, in coding order: table id, integer centre, and the model's raw mu and ln b
    (2**-FRAC_BITS fixed point)."""

    table: np.ndarray
    centre: np.ndarray
    mu: np.ndarray
    log_scale: np.ndarray


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
        mu0, ls0 = predict(ctx, c, hdim, n_hidden, w1, b1, k1, w2, b2, k2, wo, bo, g, ko, a1, a2)
        t0, centre0 = table_of(mu0, ls0)
        for y in range(hs[g]):
            for x in range(ws[g]):
                if gather(buf, offs[g], stride, y, x, nb, c, ctx):
                    mu, ls = predict(ctx, c, hdim, n_hidden, w1, b1, k1, w2, b2, k2, wo, bo, g, ko, a1, a2)
                    t, centre = table_of(mu, ls)
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


_WHY = {1: "more escapes than escape values", 2: "latent out of range", 3: "escape values left over"}


class LatentCodec:
    """Codes lists of 2-D integer grids (one per row of the model's output bias) under a
    context model: :meth:`estimated_bits` for the encoder's rate, :meth:`encode` to words and
    escapes, :meth:`decode` back (deterministic, bit-exact on every machine)."""

    def __init__(self, model: IntegerARM, name: str = "latents") -> None:
        self.model = model
        self.name = name  # what decoding errors call the data

    def _check_grids(self, shapes: Sequence[tuple[int, int]]) -> None:
        if len(shapes) != self.model.n_grids:
            raise ValueError(f"{len(shapes)} grids for a model of {self.model.n_grids}")
        if any(len(s) != 2 or s[0] < 0 or s[1] < 0 for s in shapes):
            raise ValueError(f"grid shapes must be (height, width): {list(shapes)}")

    def predictions(self, latents: Sequence[np.ndarray]) -> Predictions:
        """The model's prediction for every latent (encoder side: all latents known)."""
        self._check_grids([q.shape for q in latents])
        offs, hs, ws, _ = layout_of([q.shape[0] for q in latents], [q.shape[1] for q in latents])
        return Predictions(*predict_all(pack_grids(latents), offs, hs, ws, *self.model.kernel_args()))

    def _symbols(self, latents: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        """(table ids, coded symbols, escape mask, escaped excesses) of the latents."""
        flat = np.concatenate([np.asarray(q).reshape(-1) for q in latents] or [np.zeros(0)]).astype(np.int64)
        p = self.predictions(latents)
        tb = tables()
        r = flat - p.centre
        lo, nsym = tb.lo[p.table], tb.nsym[p.table]
        s = r - lo
        esc = (s < 0) | (s >= nsym - 1)
        excess = np.where(r > lo + nsym - 2, r - (lo + nsym - 2), r - lo)[esc]
        return p.table, np.where(esc, nsym - 1, s), esc, excess

    def bits(self, latents: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per latent: ideal code length (bits) under the coding tables, and whether it escapes
        (its excess, coded apart by the caller, is not counted)."""
        tid, s, esc, _ = self._symbols(latents)
        tb = tables()
        base = tb.start[tid] + s
        freq = tb.cdf[base + 1] - tb.cdf[base]
        return 16.0 - np.log2(freq), esc

    def estimated_bits(self, latents: Sequence[np.ndarray]) -> float:
        """Ideal code length (bits) of the rANS string (no coder overhead, escapes' excesses
        not counted): the real string is within a few words of it."""
        return float(self.bits(latents)[0].sum())

    def encode(self, latents: Sequence[np.ndarray]) -> CodedLatents:
        """Code integer grids (|q| <= QMAX); ValueError if a latent is out of range."""
        if any(np.asarray(q).size and np.abs(q).max() > QMAX for q in latents):
            raise ValueError("latent out of range")
        tid, s, _, excess = self._symbols(latents)
        tb = tables()
        return CodedLatents(encode_flat(s, tid, tb.cdf, tb.start), excess.astype(np.int64))

    def decode(self, words: np.ndarray, excess: np.ndarray,
               shapes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """Inverse of :meth:`encode` given the grids' (height, width); BitstreamError where the
        stream is inconsistent, LimitError where the words are too few for the latents."""
        self._check_grids(shapes)
        words = np.ascontiguousarray(words, dtype=np.int64)
        n = sum(h * w for h, w in shapes)
        if n > LATENTS_PER_BIT * (32 * len(words) + 64):  # 64: the rANS state's slack
            raise LimitError(f"{self.name}: {len(words)} words cannot code {n} latents")
        excess = np.ascontiguousarray(excess, dtype=np.int64)
        if np.any((excess == 0) | (np.abs(excess) > 2 * QMAX + 2)):
            raise BitstreamError(f"{self.name}: escape value out of range")
        tb = tables()
        offs, hs, ws, total = layout_of([s[0] for s in shapes], [s[1] for s in shapes])
        buf = np.zeros(total, dtype=np.int64)
        code = _decode_all(words, excess, buf, offs, hs, ws,
                           *self.model.kernel_args(), tb.cdf, tb.start, tb.nsym, tb.lo)
        if code:
            raise BitstreamError(f"{self.name}: {_WHY[code]}")
        return unpack_grids(buf, shapes, copy=False)  # views: the buffer is the decode's own

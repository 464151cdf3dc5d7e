"""The latent codec's coding tables: 64 scales x 16 mean fractions of the discretized Laplace,
picked by a fixed-point prediction (mu, ln b), with a floored escape entry.

Everything is integer or :mod:`dappled.entropy.detmath`, so every machine builds the same
tables and maps a prediction to the same table (format: docs/format.md, "Field payload").
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from dappled.entropy.detmath import det_exp
from dappled.entropy.parametric import tables_at_scale
from dappled.entropy.rans import CdfTable
from dappled.entropy.rans_flat import flatten_tables

FRAC_BITS = 8  # fraction bits of the fixed-point predictions (and of the context model)
SCALE_LEVELS = 64
MEAN_FRAC_BITS = 4  # 16 mean fractions per scale
LS_MIN_FP = -1001  # round(ln(0.02) * 2**FRAC_BITS): the smallest scale's ln b
LS_MAX_FP = 1065  # round(ln(64) * 2**FRAC_BITS): the largest scale's ln b
ESCAPE_FREQ = 16  # of 2**16: the escape entry's floor (see floor_escape)
# so a latent costs >= 3.52e-4 bits, and B bytes of latents hold at most 2,840 * 8 * B of them
LATENTS_PER_BIT = 2840


def floor_escape(table: CdfTable) -> CdfTable:
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


class LaplaceTables:
    """The 64 x 16 Laplace tables, flattened for numba (cdf, start, nsym) with each table's
    lowest residual lo; table id = scale index * 16 + mean fraction."""

    def __init__(self) -> None:
        i = np.arange(SCALE_LEVELS, dtype=np.float64)
        span = float(LS_MAX_FP - LS_MIN_FP)
        scales = det_exp((LS_MIN_FP + i * span / (SCALE_LEVELS - 1)) / float(1 << FRAC_BITS))
        model = [t for s in scales for t in tables_at_scale("laplace", float(s))]
        self.cdf, self.start, self.nsym = flatten_tables([floor_escape(m.table) for m in model])
        self.lo = np.array([m.lo for m in model], dtype=np.int64)


_TABLES: LaplaceTables | None = None
_LOCK = threading.Lock()


def tables() -> LaplaceTables:
    """The shared table set (deterministic on every machine), built once per process."""
    global _TABLES
    if _TABLES is None:
        with _LOCK:
            if _TABLES is None:
                _TABLES = LaplaceTables()
    return _TABLES


@numba.njit(cache=True, nogil=True, inline="always")
def table_of(mu: int, ls: int) -> tuple[int, int]:
    """(table id, integer centre) of a prediction: scale index * 16 + mean fraction."""
    span = LS_MAX_FP - LS_MIN_FP
    si = ((ls - LS_MIN_FP) * (SCALE_LEVELS - 1) + (span >> 1)) // span
    if si < 0:
        si = 0
    if si > SCALE_LEVELS - 1:
        si = SCALE_LEVELS - 1
    q16 = (mu + (1 << (FRAC_BITS - MEAN_FRAC_BITS - 1))) >> (FRAC_BITS - MEAN_FRAC_BITS)
    return si * (1 << MEAN_FRAC_BITS) + (q16 & ((1 << MEAN_FRAC_BITS) - 1)), q16 >> MEAN_FRAC_BITS

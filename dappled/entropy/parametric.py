"""Integer symbols under discretized Laplace / Gaussian models with per-symbol scales and means.

Model of a symbol x with scale s and mean mu: the probability of the unit bin [x - 1/2, x + 1/2)
under Laplace(mu, s) (s = diversity b) or Normal(mu, s) (s = standard deviation).

* Scales go to a fixed log-spaced table of 64 values from 0.11 to 256 (as CompressAI's
  ``get_scale_table``), indexed as CompressAI's ``build_indexes``: the first table scale >= s.
  NaN counts as the largest scale; tiny, negative and infinite scales clamp to the ends.
* Means are split exactly as ``q = floor(mu * 16 + 1/2)``: integer centre ``q >> 4`` and
  fraction ``(q & 15) / 16``, so each (scale, fraction) pair has its own table and the residual
  ``x - centre`` is coded. NaN means count as 0, means are clipped to +-2**40.
* A table covers the residuals whose probability is at least 2**-16, plus an escape entry for
  the two tails. Escaped residuals are sent as their signed excess beyond the table edge
  (``r - hi`` above, ``r - lo`` below, never 0) in a categorical sub-stream.
* Tables are computed in float64 with the bit-reproducible functions of
  :mod:`dappled.entropy.detmath`, quantised to integers (weights ``round(p * 2**40)``, then
  :func:`normalize_weights`), and cached: the same on every platform.

Stream layout: ``uvarint h``; h == 0: the rest is the rANS payload and nothing is escaped;
h == L + 1: L bytes of rANS payload, then the escape sub-stream (:func:`encode_symbols`).
An empty input gives an empty stream. The symbol count is ``scales.size``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from dappled.entropy.categorical import as_int64, decode_symbols, encode_symbols
from dappled.entropy.detmath import det_exp, det_laplace_cdf, det_normal_cdf
from dappled.entropy.freqs import normalize_weights
from dappled.entropy.rans import CdfTable, max_payload_bytes, rans_decode, rans_encode
from dappled.entropy.varint import ByteReader, uvarint
from dappled.errors import BitstreamError

SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 64
_LOG_SCALE_MIN = -2.2072749131897207  # ln(0.11), as a literal: no libm log at import time
_LOG_SCALE_MAX = 5.545177444479562  # ln(256) = 8 ln 2
MEAN_FRAC_BITS = 4
MEAN_FRACS = 1 << MEAN_FRAC_BITS
MEAN_LIMIT = float(1 << 40)
SYMBOL_LIMIT = 1 << 60  # |symbol| bound of the encoder: centre + residual never overflow int64
EXCESS_LIMIT = 1 << 61  # |escaped excess| bound of the decoder
_TABLE_MIN_PROB = 2.0**-16  # residuals less likely than this go through the escape
_WEIGHT_ONE = 2.0**40  # probability -> integer weight before normalisation
# Half-width searched for the table support, in scales (+2): p >= 2**-16 ends before
# 4.7 sigma (Gaussian) and 10.4 b (Laplace); the builder checks the support stays inside.
_WINDOW = {"laplace": 14.0, "gaussian": 7.0}
FAMILIES = ("laplace", "gaussian")


def _build_scale_table() -> np.ndarray:
    i = np.arange(SCALE_LEVELS, dtype=np.float64)
    step = (_LOG_SCALE_MAX - _LOG_SCALE_MIN) / float(SCALE_LEVELS - 1)
    return det_exp(_LOG_SCALE_MIN + i * step)


_SCALE_TABLE = _build_scale_table()


def scale_table() -> np.ndarray:
    """The 64 table scales (float64, increasing, ~0.11 to ~256); a copy."""
    return _SCALE_TABLE.copy()


def scale_indexes(scales: np.ndarray) -> np.ndarray:
    """Index of the first table scale >= each scale (int64, same shape), as CompressAI does."""
    s = np.asarray(scales, dtype=np.float64)
    s = np.where(np.isnan(s), np.inf, s)
    idx = np.searchsorted(_SCALE_TABLE, s.ravel(), side="left")
    return np.minimum(idx, SCALE_LEVELS - 1).astype(np.int64).reshape(s.shape)


def split_means(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact split of means into integer centres and fraction indices (0..15)."""
    m = np.asarray(means, dtype=np.float64)
    m = np.clip(np.where(np.isnan(m), 0.0, m), -MEAN_LIMIT, MEAN_LIMIT)
    q = np.floor(m * float(MEAN_FRACS) + 0.5).astype(np.int64)
    return q >> MEAN_FRAC_BITS, q & (MEAN_FRACS - 1)


@dataclass(frozen=True)
class ModelTable:
    """One quantised model: residuals lo .. lo + nsym - 2 in the table, entry nsym - 1 escapes."""

    lo: int
    table: CdfTable

    @property
    def nsym(self) -> int:
        return self.table.nsym

    @property
    def hi(self) -> int:
        return self.lo + self.table.nsym - 2


def build_scale_tables(family: str, scale_index: int) -> list[ModelTable]:
    """Compute (no cache) the tables of `family` at one table scale, for the 16 mean fractions."""
    if not 0 <= scale_index < SCALE_LEVELS:
        raise ValueError("scale index out of range")
    return tables_at_scale(family, float(_SCALE_TABLE[scale_index]))


def tables_at_scale(family: str, scale: float) -> list[ModelTable]:
    """The tables of `family` at any scale (a det_exp-made float64), for the 16 mean fractions.

    Other scale ladders (the field codec's) reuse this builder, so every table in the project
    is quantised the same deterministic way.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    half = int(np.ceil(scale * _WINDOW[family])) + 2
    k = np.arange(-half, half + 3, dtype=np.float64)  # bin edges at k - 1/2 - mean
    mu = np.arange(MEAN_FRACS, dtype=np.float64) / float(MEAN_FRACS)
    edges = ((k[None, :] - 0.5) - mu[:, None]) / scale
    cdf = det_laplace_cdf if family == "laplace" else det_normal_cdf
    below = cdf(edges)  # P(X < edge)
    above = cdf(-edges)  # P(X > edge), by symmetry: exact tails on both sides
    pmf = np.where(edges[:, :-1] >= 0.0, above[:, :-1] - above[:, 1:], below[:, 1:] - below[:, :-1])
    tables = []
    for j in range(MEAN_FRACS):
        inside = np.flatnonzero(pmf[j] >= _TABLE_MIN_PROB)
        first, last = int(inside[0]), int(inside[-1])
        if first == 0 or last == pmf.shape[1] - 1:
            raise AssertionError("table support reaches the edge of its search window")
        escape = below[j, first] + above[j, last + 1]
        probs = np.append(pmf[j, first : last + 1], escape)
        weights = np.floor(probs * _WEIGHT_ONE + 0.5).astype(np.int64)
        table = CdfTable.from_freqs(normalize_weights(weights))
        tables.append(ModelTable(lo=first - half, table=table))
    return tables


def build_model_table(family: str, scale_index: int, frac: int) -> ModelTable:
    """Compute (no cache) the table of `family` at table scale `scale_index`, mean frac/16."""
    if not 0 <= frac < MEAN_FRACS:
        raise ValueError("mean fraction out of range")
    return build_scale_tables(family, scale_index)[frac]


_CACHE: dict[tuple[str, int], list[ModelTable]] = {}
_CACHE_LOCK = threading.Lock()


def model_table(family: str, scale_index: int, frac: int) -> ModelTable:
    """Cached :func:`build_model_table` (all 16 fractions of a scale are built together)."""
    key = (family, int(scale_index))
    tables = _CACHE.get(key)
    if tables is None:
        tables = build_scale_tables(*key)
        with _CACHE_LOCK:
            tables = _CACHE.setdefault(key, tables)
    return tables[frac]


@dataclass(frozen=True)
class _Plan:
    """Per-symbol models of one call: which tables, and each symbol's centre and table."""

    tables: list[ModelTable]
    which: np.ndarray  # index into tables, per symbol
    centre: np.ndarray  # integer centre, per symbol
    lo: np.ndarray  # per symbol
    nsym: np.ndarray  # per symbol


def _plan(family: str, scales: np.ndarray, means: np.ndarray | None) -> _Plan:
    s = np.asarray(scales, dtype=np.float64).ravel()
    idx = scale_indexes(s)
    if means is None:
        centre = np.zeros(s.size, dtype=np.int64)
        frac = np.zeros(s.size, dtype=np.int64)
    else:
        m = np.asarray(means, dtype=np.float64)
        try:
            m = np.broadcast_to(m, np.shape(scales)).ravel()
        except ValueError:
            raise ValueError("means do not broadcast to the shape of scales") from None
        centre, frac = split_means(m)
    keys, which = np.unique(idx * MEAN_FRACS + frac, return_inverse=True)
    tables = [model_table(family, int(k) // MEAN_FRACS, int(k) % MEAN_FRACS) for k in keys]
    lo = np.array([t.lo for t in tables], dtype=np.int64)
    nsym = np.array([t.nsym for t in tables], dtype=np.int64)
    which = which.ravel().astype(np.int64)
    return _Plan(tables, which, centre, lo[which], nsym[which])


def _encode(
    family: str, symbols: np.ndarray, scales: np.ndarray, means: np.ndarray | None
) -> bytes:
    x = as_int64(symbols)
    if x.size != np.size(scales):
        raise ValueError("symbols and scales differ in size")
    if x.size == 0:
        return b""
    if np.any((x > SYMBOL_LIMIT) | (x < -SYMBOL_LIMIT)):  # (np.abs(INT64_MIN) < 0)
        raise ValueError("symbols must be within +-2**60")
    plan = _plan(family, scales, means)
    r = x - plan.centre
    s = r - plan.lo
    esc_slot = plan.nsym - 1
    is_esc = (s < 0) | (s >= esc_slot)
    s = np.where(is_esc, esc_slot, s)
    payload = rans_encode(s, plan.which, [t.table for t in plan.tables])
    if not is_esc.any():
        return uvarint(0) + payload
    hi = plan.lo + plan.nsym - 2
    excess = np.where(r > hi, r - hi, r - plan.lo)[is_esc]
    return uvarint(len(payload) + 1) + payload + encode_symbols(excess)


def _decode(family: str, data: bytes, scales: np.ndarray, means: np.ndarray | None) -> np.ndarray:
    shape = np.shape(scales)
    n = int(np.size(scales))
    if n == 0:
        if data:
            raise BitstreamError("bytes in a stream of zero symbols")
        return np.zeros(shape, dtype=np.int64)
    reader = ByteReader(data)
    h = reader.uvarint(limit=max_payload_bytes(n) + 1)
    payload = reader.rest() if h == 0 else reader.take(h - 1)
    plan = _plan(family, scales, means)
    s = rans_decode(payload, plan.which, [t.table for t in plan.tables])
    r = plan.lo + s
    is_esc = s == plan.nsym - 1
    n_esc = int(is_esc.sum())
    if h == 0 or n_esc == 0:
        if n_esc or h:
            raise BitstreamError("escape sub-stream does not match the escaped symbols")
    else:
        excess = decode_symbols(reader.rest(), max_count=n_esc)
        if excess.size != n_esc:
            raise BitstreamError(f"{excess.size} escaped values for {n_esc} escapes")
        if np.any((excess == 0) | (excess > EXCESS_LIMIT) | (excess < -EXCESS_LIMIT)):
            raise BitstreamError("escaped value out of range")
        hi = (plan.lo + plan.nsym - 2)[is_esc]
        r[is_esc] = np.where(excess > 0, hi + excess, plan.lo[is_esc] + excess)
    return (r + plan.centre).reshape(shape)


def encode_laplace(
    symbols: np.ndarray, scales: np.ndarray, means: np.ndarray | None = None
) -> bytes:
    """Code integer symbols, each under a discretized Laplace(mean, scale = diversity b)."""
    return _encode("laplace", symbols, scales, means)


def decode_laplace(data: bytes, scales: np.ndarray, means: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`encode_laplace` given the same scales and means; int64, scales' shape."""
    return _decode("laplace", data, scales, means)


def encode_gaussian(
    symbols: np.ndarray, scales: np.ndarray, means: np.ndarray | None = None
) -> bytes:
    """Code integer symbols, each under a discretized Gaussian(mean, scale = std deviation)."""
    return _encode("gaussian", symbols, scales, means)


def decode_gaussian(data: bytes, scales: np.ndarray, means: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`encode_gaussian` given the same scales and means; int64, scales' shape."""
    return _decode("gaussian", data, scales, means)

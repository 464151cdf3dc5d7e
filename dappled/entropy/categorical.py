"""Self-describing categorical coding of integer arrays: counts -> compact table -> rANS.

Stream layout (varints are LEB128, "bits" MSB first, zero-padded to a byte):

    uvarint count n                       n == 0: nothing follows
    svarint offset (smallest value)
    uvarint span (largest - smallest)     span == 0: nothing follows (all values equal)
    bits    model table:
              gamma(K)                    table entries, 1 <= K <= min(4096, n, span + 1)
              1 bit escape slot present   (only when more than 4096 distinct values)
              K x gamma(gap)              sorted values relative to the offset, gap to previous
                                          value (the first one: value + 1)
              K (+1 escape) counts, each  exponent e = floor(log2 count): the first as gamma(e+1),
                                          later ones as gamma(zigzag(e - previous e) + 1);
                                          then max(0, (e - 3) // 2) mantissa bits
    uvarint payload length                only with an escape slot
    bytes   rANS payload                  (the rest of the stream without an escape slot)
    bytes   escaped values                ceil(n_escaped * bitlen(span) / 8) bytes, each value
                                          as its bitlen(span)-bit offset from the smallest value

Counts are sent as float-like numbers whose mantissa grows with their exponent: the relative
precision of a count c ends up ~ 1/sqrt(c), the point where one more table bit stops paying
for itself in coded data. Both sides expand them to midpoints and normalise them to 2**16 with
:func:`dappled.entropy.freqs.normalize_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dappled.entropy.bitio import BitReader, BitWriter
from dappled.entropy.freqs import normalize_weights
from dappled.entropy.rans import CdfTable, max_payload_bytes, rans_decode, rans_encode
from dappled.entropy.varint import INT64_MAX, ByteReader, svarint, unzigzag, uvarint, zigzag
from dappled.errors import BitstreamError, LimitError, TruncatedError

MAX_TABLE = 4096  # table entries besides the escape slot
MAX_COUNT_EXP = 40  # counts below 2**41
MAX_SYMBOLS = 1 << 40


@dataclass(frozen=True)
class CategoricalInfo:
    """What the header of a categorical stream declares, and where its bytes go."""

    count: int  # number of symbols
    offset: int  # smallest value
    span: int  # largest minus smallest value
    table_size: int  # table entries (without the escape slot)
    escape: bool  # whether an escape slot exists
    model_bytes: int  # header + table bytes, everything before the rANS payload
    payload_bytes: int  # rANS payload
    escape_bytes: int  # raw escaped values at the end


@dataclass(frozen=True)
class _Header:
    info: CategoricalInfo
    values: np.ndarray  # table values relative to the offset (uint64)
    freqs: np.ndarray  # rANS frequencies (escape slot last)
    payload: bytes
    escaped: bytes


def _mantissa_bits(exp: int) -> int:
    return max(0, (exp - 3) // 2)


def _quantize_count(count: int) -> tuple[int, int]:
    """(exponent, mantissa) of a count >= 1, truncating the mantissa."""
    exp = count.bit_length() - 1
    m = _mantissa_bits(exp)
    return exp, (count >> (exp - m)) - (1 << m)


def _dequantize_count(exp: int, mant: int) -> int:
    """Midpoint of the counts that share (exponent, mantissa)."""
    if exp == 0:
        return 1
    m = _mantissa_bits(exp)
    shift = exp - m
    return (((1 << m) + mant) << shift) | (1 << (shift - 1))


def _table_size(sorted_counts: np.ndarray, n: int, span: int) -> int:
    """How many of the most frequent values get a table entry; the rest are escaped.

    Minimises an estimate of table bits + coded bits + raw escape bits over all prefixes,
    so that, e.g., thousands of distinct values over a 2**20 range are not each given a table
    entry they never pay back.
    """
    d = int(sorted_counts.size)
    kmax = min(d, MAX_TABLE)
    c = sorted_counts[:kmax].astype(np.float64)
    k = np.arange(1, kmax + 1, dtype=np.float64)
    kept = np.cumsum(c)
    clogc = np.cumsum(c * np.log2(c))
    n_esc = n - kept
    esc_logc = np.where(n_esc > 0, n_esc * np.log2(np.maximum(n_esc, 1.0)), 0.0)
    data_bits = n * np.log2(n) - clogc - esc_logc + n_esc * span.bit_length()
    gap_bits = 2.0 * np.floor(np.log2(span / k + 1.0)) + 1.0
    count_bits = np.cumsum(2.0 + np.maximum(0.0, (np.log2(c) - 3.0) / 2.0))
    cost = data_bits + k * gap_bits + count_bits
    if d > kmax:  # an escape slot is unavoidable
        return int(np.argmin(cost)) + 1
    cost[:-1] += 16.0  # escape slot entry and payload length
    return int(np.argmin(cost)) + 1


def as_int64(symbols: np.ndarray) -> np.ndarray:
    """Flatten integer-valued input to int64; ValueError if a value is not an int64 integer."""
    a = np.asarray(symbols)
    if a.dtype == np.bool_:
        return a.astype(np.int64).ravel()
    if np.issubdtype(a.dtype, np.unsignedinteger):
        if a.size and int(a.max()) > INT64_MAX:
            raise ValueError("symbols above the int64 range")
        return a.astype(np.int64).ravel()
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64).ravel()
    if np.issubdtype(a.dtype, np.floating):
        f = a.astype(np.float64).ravel()
        if not np.all(np.isfinite(f)) or np.any(np.rint(f) != f) or np.any(np.abs(f) >= 2.0**63):
            raise ValueError("float symbols must be finite int64 integers")
        return f.astype(np.int64)
    raise ValueError(f"cannot code symbols of dtype {a.dtype}")


def encode_symbols(symbols: np.ndarray) -> bytes:
    """Code integer symbols (any shape, any int64 values) under a model built from their counts.

    The stream carries its own model (see the module docstring); decode with
    :func:`decode_symbols`. The result is 1-D: reshape on the caller's side.
    """
    x = as_int64(symbols)
    n = int(x.size)
    if n > MAX_SYMBOLS:
        raise ValueError("too many symbols")
    if n == 0:
        return uvarint(0)
    vmin, vmax = int(x.min()), int(x.max())
    span = vmax - vmin
    head = uvarint(n) + svarint(vmin) + uvarint(span)
    if span == 0:
        return head
    values, counts = np.unique(x, return_counts=True)
    order = np.lexsort((values, -counts))  # most frequent first, ties: smaller value
    k = _table_size(counts[order], n, span)
    escape = k < values.size
    if escape:
        keep = np.sort(order[:k])
        escaped_count = n - int(counts[keep].sum())
        values, counts = values[keep], counts[keep]
    rel = values.view(np.uint64) - np.uint64(vmin % (1 << 64))  # exact modular difference

    bits = BitWriter()
    bits.gamma(int(values.size))
    bits.write(int(escape), 1)
    prev = -1
    for v in rel.tolist():
        bits.gamma(v - prev)
        prev = v
    table_counts = counts.tolist() + ([escaped_count] if escape else [])
    weights = []
    prev_exp = None
    for c in table_counts:
        exp, mant = _quantize_count(int(c))
        bits.gamma(exp + 1 if prev_exp is None else zigzag(exp - prev_exp) + 1)
        bits.write(mant, _mantissa_bits(exp))
        weights.append(_dequantize_count(exp, mant))
        prev_exp = exp
    freqs = normalize_weights(np.array(weights, dtype=np.int64))

    pos = np.searchsorted(values, x)
    if escape:
        pos_c = np.minimum(pos, values.size - 1)
        is_esc = values[pos_c] != x
        pos = np.where(is_esc, values.size, pos_c)
    payload = rans_encode(pos, np.zeros(n, dtype=np.int64), [CdfTable.from_freqs(freqs)])
    out = [head, bits.getvalue()]
    if escape:
        out += [uvarint(len(payload)), payload]
        esc_rel = x[is_esc].view(np.uint64) - np.uint64(vmin % (1 << 64))
        width = span.bit_length()
        shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
        raw = ((esc_rel[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8)
        out.append(np.packbits(raw.ravel()).tobytes())
    else:
        out.append(payload)
    return b"".join(out)


def _parse(data: bytes, max_count: int) -> _Header:
    """Read and validate everything up to the payload; split the rest."""
    reader = ByteReader(data)
    n = reader.uvarint()
    if n > max_count:
        raise LimitError(f"stream declares {n} symbols, more than the limit {max_count}")
    empty = np.zeros(0, dtype=np.uint64)
    if n == 0:
        if reader.remaining:
            raise BitstreamError("bytes after an empty symbol stream")
        return _Header(CategoricalInfo(0, 0, 0, 0, False, reader.pos, 0, 0), empty, empty, b"", b"")
    vmin = reader.svarint()
    span = reader.uvarint(limit=INT64_MAX - vmin)
    if span == 0:
        if reader.remaining:
            raise BitstreamError("bytes after a single-valued symbol stream")
        info = CategoricalInfo(n, vmin, 0, 1, False, reader.pos, 0, 0)
        return _Header(info, np.zeros(1, dtype=np.uint64), empty, b"", b"")

    bits = BitReader(reader.data, reader.pos)
    k = bits.gamma()
    if k > min(MAX_TABLE, n, span + 1):
        raise BitstreamError(f"table of {k} entries for {n} symbols")
    escape = bool(bits.read(1))
    if escape and k + 1 > n:
        raise BitstreamError("escape slot in a stream without room for escaped symbols")
    values = []
    prev = -1
    for _ in range(k):
        prev += bits.gamma()
        if prev > span:
            raise BitstreamError("table value outside the declared span")
        values.append(prev)
    weights = []
    prev_exp = None
    for _ in range(k + int(escape)):
        code = bits.gamma() - 1
        exp = code if prev_exp is None else prev_exp + unzigzag(code)
        if not 0 <= exp <= MAX_COUNT_EXP:
            raise BitstreamError("symbol count exponent out of range")
        weights.append(_dequantize_count(exp, bits.read(_mantissa_bits(exp))))
        prev_exp = exp
    freqs = normalize_weights(np.array(weights, dtype=np.int64))
    reader.pos = bits.byte_pos()

    if escape:
        size = reader.uvarint(limit=max_payload_bytes(n))
        model_bytes = reader.pos
        payload = reader.take(size)
    else:
        model_bytes = reader.pos
        payload = reader.rest()
        if len(payload) > max_payload_bytes(n):
            raise BitstreamError("rANS payload longer than possible for the symbol count")
    escaped = reader.rest()
    info = CategoricalInfo(n, vmin, span, k, escape, model_bytes, len(payload), len(escaped))
    return _Header(info, np.array(values, dtype=np.uint64), freqs, payload, escaped)


def categorical_info(data: bytes, max_count: int = MAX_SYMBOLS) -> CategoricalInfo:
    """Parse the header of a stream made by :func:`encode_symbols` (no rANS decoding)."""
    return _parse(data, max_count).info


def categorical_model_bytes(data: bytes) -> int:
    """Bytes spent on the model (count, offset, span, table): all bytes before the rANS payload."""
    return categorical_info(data).model_bytes


def decode_symbols(data: bytes, max_count: int) -> np.ndarray:
    """Decode a stream made by :func:`encode_symbols` into a 1-D int64 array.

    A stream declaring more than `max_count` symbols raises :class:`LimitError`; any other defect
    raises another :class:`BitstreamError`.
    """
    head = _parse(data, max_count)
    info = head.info
    n = info.count
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    base = np.uint64(info.offset % (1 << 64))
    if info.span == 0:
        return np.full(n, info.offset, dtype=np.int64)
    pos = rans_decode(head.payload, np.zeros(n, dtype=np.int64), [CdfTable.from_freqs(head.freqs)])
    k = info.table_size
    out = np.empty(n, dtype=np.uint64)
    is_esc = pos == k
    out[~is_esc] = head.values[pos[~is_esc]] + base
    n_esc = int(is_esc.sum())
    width = info.span.bit_length()
    expected = (n_esc * width + 7) // 8
    if len(head.escaped) != expected:
        err = TruncatedError if len(head.escaped) < expected else BitstreamError
        raise err(f"{len(head.escaped)} bytes of escaped values, expected {expected}")
    if n_esc:
        raw = np.unpackbits(np.frombuffer(head.escaped, dtype=np.uint8))
        if raw[n_esc * width :].any():
            raise BitstreamError("non-zero padding after the escaped values")
        raw = raw[: n_esc * width].reshape(n_esc, width).astype(np.uint64)
        rel = np.zeros(n_esc, dtype=np.uint64)
        for j in range(width):
            rel = (rel << np.uint64(1)) | raw[:, j]
        if int(rel.max()) > info.span:
            raise BitstreamError("escaped value outside the declared span")
        out[is_esc] = rel + base
    return out.view(np.int64)

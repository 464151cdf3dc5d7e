"""Exp-Golomb-style coding of non-negative integers with an adaptive, entropy-coded prefix.

A value v is split into its bit length b (the "bucket", 0 for v == 0) and the b-1 bits below
its leading one (the mantissa). Buckets go through the categorical rANS coder, mantissas are
stored as raw bits: near-optimal for geometric-like data with a wide range (gaps between sorted
positions, for instance) at a model cost of a dozen table entries instead of thousands.

Layout: varint(len(bucket stream)), bucket stream, packed mantissa bits (MSB first).
"""

from __future__ import annotations

import numpy as np

from dappled.entropy import decode_symbols, encode_symbols
from dappled.entropy.varint import ByteReader, uvarint
from dappled.errors import BitstreamError, TruncatedError

MAX_BITS = 40


def _bit_length(v: np.ndarray) -> np.ndarray:
    out = np.zeros(v.shape, dtype=np.int64)
    nz = v > 0
    out[nz] = np.floor(np.log2(v[nz].astype(np.float64))).astype(np.int64) + 1
    # float log2 can be off by one near powers of two for large values: fix exactly
    too_big = nz & ((np.int64(1) << np.maximum(out - 1, 0)) > v)
    out[too_big] -= 1
    too_small = nz & ((np.int64(1) << np.minimum(out, 62)) <= v)
    out[too_small] += 1
    return out


def encode_nonneg(values: np.ndarray) -> bytes:
    """Code non-negative integers (< 2**MAX_BITS) as entropy-coded bucket + raw mantissa bits."""
    v = np.asarray(values, dtype=np.int64).ravel()
    if v.size and (v.min() < 0 or v.max() >= (1 << MAX_BITS)):
        raise ValueError("values must be in [0, 2**40)")
    buckets = _bit_length(v)
    head = encode_symbols(buckets)
    nbits = np.maximum(buckets - 1, 0)
    total = int(nbits.sum())
    if total:
        width = int(nbits.max())
        mant = v - np.where(buckets > 0, np.int64(1) << nbits, 0)
        shifts = np.arange(width - 1, -1, -1, dtype=np.int64)  # MSB first within width
        bits = (mant[:, None] >> shifts[None, :]) & 1
        keep = np.arange(width)[None, :] >= (width - nbits)[:, None]
        packed = np.packbits(bits[keep].astype(np.uint8)).tobytes()
    else:
        packed = b""
    return uvarint(len(head)) + head + packed


def decode_nonneg(data: bytes, max_count: int) -> np.ndarray:
    """Inverse of :func:`encode_nonneg`; BitstreamError on malformed data."""
    reader = ByteReader(data)
    n_head = reader.uvarint(limit=len(data))
    buckets = decode_symbols(reader.take(n_head), max_count).astype(np.int64)
    if buckets.size and (buckets.min() < 0 or buckets.max() > MAX_BITS):
        raise BitstreamError("invalid Exp-Golomb bucket")
    nbits = np.maximum(buckets - 1, 0)
    total = int(nbits.sum())
    raw = reader.rest()
    if len(raw) != (total + 7) // 8:
        raise (TruncatedError if len(raw) < (total + 7) // 8 else BitstreamError)(
            "mantissa bits do not match the bucket stream"
        )
    out = np.where(buckets > 0, np.int64(1) << nbits, 0).astype(np.int64)
    if total:
        # Memory O(n + total bits), whatever the widths: each mantissa bit adds its power of two to
        # its value (exact in float64: every sum is an integer below 2**40).
        bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:total]
        owner = np.repeat(np.arange(len(nbits)), nbits)
        ends = np.cumsum(nbits)
        power = (ends[owner] - 1 - np.arange(total)).astype(np.float64)
        out += np.bincount(owner, weights=np.where(bits != 0, np.exp2(power), 0.0),
                           minlength=len(nbits)).astype(np.int64)
    return out

"""dappled.entropy.binary: adaptive binary decisions over the numba rANS coder. Exact round trips
of every kind of decision, adaptation that pays, a frozen byte layout, and damaged streams that
are refused at finish() (or decode to other valid decisions), never a hang or an over-read."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dappled.entropy.binary import BinaryDecoder, BinaryEncoder, code_signed
from dappled.entropy.rans import CdfTable
from dappled.entropy.rans_flat import decode_flat, encode_flat, encode_intervals, flatten_tables
from dappled.errors import BitstreamError

N_CTX = 8
PREFIX = (3, 4, 5)
GOLDEN = "be2faf028076d4c3"  # sha256 prefix of the frozen script's bytes


def _script(rng: np.random.Generator, n: int) -> list[tuple]:
    """A random sequence of decisions: (kind, argument, value)."""
    out: list[tuple] = []
    for _ in range(n):
        kind = rng.integers(0, 4)
        if kind == 0:  # a skewed bit, so the adaptation has something to learn
            ctx = int(rng.integers(0, 3))
            out.append(("bit", ctx, int(rng.random() < (0.05, 0.5, 0.9)[ctx])))
        elif kind == 1:
            k = int(rng.integers(0, 20))
            out.append(("bits", k, int(rng.integers(0, 1 << k)) if k else 0))
        elif kind == 2:
            m = int(rng.choice([1, 2, 3, 7, 64, 1000, 65536]))
            out.append(("uniform", m, int(rng.integers(0, m))))
        else:
            out.append(("signed", 0, int(rng.choice([0, 0, 0, 1, -1, 5, -300, 4095, -4095]))))
    return out


def _run(coder, script: list[tuple]) -> list[int]:
    got = []
    for kind, arg, v in script:
        if kind == "bit":
            got.append(coder.bit(arg, v))
        elif kind == "bits":
            got.append(coder.bits(v, arg))
        elif kind == "uniform":
            got.append(coder.uniform(v, arg))
        else:
            got.append(code_signed(coder, v, 6, PREFIX, 12))
    return got


@pytest.mark.parametrize("seed", range(6))
def test_round_trip_of_every_kind_of_decision(seed: int) -> None:
    rng = np.random.default_rng(seed)
    script = _script(rng, int(rng.integers(0, 400)))
    enc = BinaryEncoder(N_CTX)
    assert _run(enc, script) == [v for _, _, v in script]
    data = enc.getvalue()
    assert not data or data[-1] != 0
    dec = BinaryDecoder(data, N_CTX)
    assert _run(dec, script) == [v for _, _, v in script]
    dec.finish()
    assert dec.p == enc.p  # both sides adapted the same way


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(-70000, 70000)), max_size=60))
def test_round_trip_hypothesis(items: list[tuple[int, int]]) -> None:
    enc = BinaryEncoder(N_CTX)
    for ctx, v in items:
        enc.bit(ctx, int(v > 0))
        code_signed(enc, v, 7, PREFIX, 17)
    dec = BinaryDecoder(enc.getvalue(), N_CTX)
    for ctx, v in items:
        assert dec.bit(ctx) == int(v > 0)
        assert code_signed(dec, 0, 7, PREFIX, 17) == v
    dec.finish()


def test_adaptation_pays_and_an_empty_stream_is_small() -> None:
    enc = BinaryEncoder(1)
    for _ in range(1000):
        enc.bit(0, 0)
    assert len(enc.getvalue()) <= 8  # 1000 near-certain bits: the state flush and little else
    rng = np.random.default_rng(1)
    bits = (rng.random(4000) < 0.1).astype(int)
    enc = BinaryEncoder(1)
    for b in bits:
        enc.bit(0, int(b))
    entropy = 4000 * -(0.1 * np.log2(0.1) + 0.9 * np.log2(0.9)) / 8
    assert len(enc.getvalue()) < 1.1 * entropy + 8
    dec = BinaryDecoder(BinaryEncoder(1).getvalue(), 1)
    dec.finish()  # nothing coded: the initial state alone


def test_encoder_refuses_values_it_cannot_code() -> None:
    enc = BinaryEncoder(N_CTX)
    with pytest.raises(ValueError):
        enc.bits(8, 3)
    with pytest.raises(ValueError):
        enc.uniform(5, 5)
    with pytest.raises(ValueError):
        code_signed(enc, 1 << 12, 6, PREFIX, 12)


def test_byte_layout_is_frozen() -> None:
    """The fieldv payload v2 motion vectors are coded this way: these bytes must never change."""
    script = _script(np.random.default_rng(123), 300)
    enc = BinaryEncoder(N_CTX)
    _run(enc, script)
    data = enc.getvalue()
    assert hashlib.sha256(data).hexdigest()[:16] == GOLDEN, hashlib.sha256(data).hexdigest()



def test_intervals_are_the_table_coders_bytes() -> None:
    """encode_intervals gives encode_flat's words for the same intervals (one rANS, two front ends)."""
    rng = np.random.default_rng(5)
    freqs = np.array([40000, 20000, 5536], np.int64)
    cdf, start, nsym = flatten_tables([CdfTable.from_freqs(freqs)])
    sym = rng.integers(0, 3, 500)
    ids = np.zeros(500, np.int64)
    words = encode_flat(sym, ids, cdf, start)
    assert np.array_equal(words, encode_intervals(cdf[sym], freqs[sym]))
    assert np.array_equal(decode_flat(words, ids, cdf, start, nsym), sym)


def test_damaged_streams_are_refused_or_decode_validly() -> None:
    """Every truncation and many byte flips: finish() refuses, or the stream decodes to other
    valid decisions (bypass bits carry no redundancy: any bits are some value's), the same each
    time; reads past the end are zeros, so nothing hangs or over-reads."""
    script = _script(np.random.default_rng(9), 200)
    enc = BinaryEncoder(N_CTX)
    _run(enc, script)
    data = enc.getvalue()
    rng = np.random.default_rng(10)
    bad = [data[:k] for k in range(len(data))] + [data + b"\x01", data + b"\x00\x07"]
    for _ in range(200):
        b = bytearray(data)
        b[int(rng.integers(0, len(b)))] ^= int(rng.integers(1, 256))
        bad.append(bytes(b))
    refused = 0
    for b in bad:
        try:
            dec = BinaryDecoder(b, N_CTX)
            got = _run(dec, script)
            dec.finish()
        except BitstreamError:
            refused += 1
            continue
        assert got != [v for _, _, v in script] or b == data
        again = BinaryDecoder(b, N_CTX)
        assert _run(again, script) == got
    assert refused >= 0.6 * len(bad)
    for k in range(len(data)):  # a cut ends in a zero byte or changes the end state
        with pytest.raises(BitstreamError, match=r"zero byte|damaged or truncated"):
            dec = BinaryDecoder(data[:k], N_CTX)
            _run(dec, script)
            dec.finish()

"""Exp-Golomb coding with an entropy-coded prefix: exact round trips, efficiency, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dappled.entropy.golomb import MAX_BITS, decode_nonneg, encode_nonneg
from dappled.errors import BitstreamError


@pytest.mark.parametrize(
    "values",
    [
        np.array([], dtype=np.int64),
        np.zeros(7, dtype=np.int64),
        np.array([0, 1, 2, 3, 4, 7, 8, 255, 256, 2**39 - 1]),
        np.random.default_rng(1).geometric(0.003, 5000) - 1,
    ],
)
def test_round_trip(values: np.ndarray) -> None:
    data = encode_nonneg(values)
    np.testing.assert_array_equal(decode_nonneg(data, len(values)), values)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**MAX_BITS - 1), max_size=300))
def test_round_trip_hypothesis(values: list[int]) -> None:
    v = np.array(values, dtype=np.int64)
    np.testing.assert_array_equal(decode_nonneg(encode_nonneg(v), len(v)), v)


def test_close_to_entropy_for_geometric_gaps() -> None:
    """Gaps of sorted random positions are geometric: the code must be near their entropy."""
    p = 1 / 1000
    v = np.random.default_rng(2).geometric(p, 20000) - 1
    entropy_bits = (-(1 - p) * np.log2(1 - p) - p * np.log2(p)) / p  # geometric entropy per value
    coded_bits = 8 * len(encode_nonneg(v)) / len(v)
    assert coded_bits <= 1.03 * entropy_bits


def test_rejects_negative_and_huge() -> None:
    with pytest.raises(ValueError):
        encode_nonneg(np.array([-1]))
    with pytest.raises(ValueError):
        encode_nonneg(np.array([2**MAX_BITS]))


def test_truncated_and_padded_streams_are_bitstream_errors() -> None:
    data = encode_nonneg(np.random.default_rng(3).geometric(0.01, 200))
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            decode_nonneg(data[:cut], 200)
    with pytest.raises(BitstreamError):
        decode_nonneg(data + b"\x00", 200)
    with pytest.raises(BitstreamError):
        decode_nonneg(data, 10)  # more values than the caller allows


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_bitstream_error(data: bytes) -> None:
    try:
        out = decode_nonneg(data, 1000)
        assert out.min(initial=0) >= 0
    except BitstreamError:
        pass

"""Deterministic integer normalisation of weights to rANS frequencies that sum to 2**16.

Encoder and decoder run the same integer arithmetic on the same weights, so both get the same
table on every platform. Every entry keeps a frequency >= 1 (a symbol that occurs must stay
codable); rounding uses largest remainders, and the excess created by the >= 1 floor is taken
from all entries in proportion to what they hold above 1. Integer-only, O(n log n).
"""

from __future__ import annotations

import numpy as np

from dappled.entropy.rans import TOTAL

MAX_WEIGHT = 1 << 46  # weight * TOTAL must stay below 2**63


def normalize_weights(weights: np.ndarray, total: int = TOTAL) -> np.ndarray:
    """Map non-negative integer weights (not all zero) to frequencies >= 1 summing to `total`."""
    w = np.asarray(weights, dtype=np.int64).ravel()
    n = int(w.size)
    if n == 0 or n > total or w.min() < 0 or w.max() > MAX_WEIGHT:
        raise ValueError("weights must be 1..total entries in [0, 2**46]")
    wsum = int(w.sum())  # <= 2**16 * 2**46: fits int64
    if wsum == 0:
        raise ValueError("weights must not all be zero")
    scaled = w * total
    freq = scaled // wsum
    remainder = scaled - freq * wsum
    freq = np.maximum(freq, 1)
    diff = total - int(freq.sum())
    if diff > 0:  # fewer than n units lost to flooring: hand them to the largest remainders
        order = np.argsort(-remainder, kind="stable")
        freq[order[:diff]] += 1
    if diff < 0:  # the >= 1 floor overshot: take the excess back in proportion to f - 1
        excess = -diff
        avail = freq - 1
        navail = int(avail.sum())  # >= excess, as sum(freq) = total + excess and n <= total
        share = avail * excess
        cut = share // navail
        frac = share - cut * navail
        left = excess - int(cut.sum())  # < number of entries with frac > 0
        order = np.argsort(-frac, kind="stable")
        cut[order[:left]] += 1
        freq = freq - cut
    return freq

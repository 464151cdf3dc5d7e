"""Adaptive binary coding over the numba rANS coder (:mod:`dappled.entropy.rans_flat`).

For small, structured side information (a few hundred decisions) where a model carried in the
stream costs more than it saves: every decision is a bit coded under the probability of its
*context* (a small integer the caller picks from what both sides know), and each context's
probability adapts to the bits it has coded. Everything is integer arithmetic, so encoder and
decoder (Python, or a port) hold the same probabilities on any machine.

Model: context c holds ``p[c]``, the probability of a 0 in units of 2**-16, starting at 2**15;
a 0 is the interval ``[0, p)``, a 1 ``[p, 2**16)``. After a 0, ``p += (2**16 - p) >> 4``; after
a 1, ``p -= p >> 4``: p stays within 1..2**16 - 1, so both intervals stay non-empty. Bypass bits
are intervals of 2**15; a value uniform over n (``n <= 2**16``) is ``[v * 2**16 // n,
(v + 1) * 2**16 // n)``.

Binarisations (:func:`code_signed`): an integer v as a zero flag (its context), then for
v != 0 the bit length b of |v| (1..max_bits) in truncated unary (one context per position,
the last shared by the rest), the b - 1 bits of |v| below its leading one (bypass, most
significant first) and the sign (bypass, 1 negative).

Stream: the rANS words of :func:`dappled.entropy.rans_flat.encode_intervals` as little-endian
bytes, trailing zero bytes dropped (the decoder reads zeros past the end), so a stream never ends
with a zero byte. The decoder checks at :meth:`BinaryDecoder.finish` that it ended in the
encoder's initial state and used all the bytes: a truncated or damaged stream is refused there
(or, with probability ~2**-31, decodes to other valid decisions), and every read before that
is bounded (one word per decision at most, zeros past the end).

Both classes have the same methods, which take the encoder's value and return the coded one (the
decoder ignores the value it is given), so one function can walk a structure for both sides.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dappled.entropy.rans import TOTAL
from dappled.entropy.rans_flat import RANS_L, bytes_to_words, dec_advance, encode_intervals, words_to_bytes
from dappled.errors import BitstreamError

ADAPT_SHIFT = 4
_HALF = TOTAL >> 1
_MASK = TOTAL - 1


class BinaryEncoder:
    """Collects decisions; :meth:`getvalue` codes them."""

    def __init__(self, contexts: int) -> None:
        self.p = [_HALF] * contexts
        self._cum: list[int] = []
        self._freq: list[int] = []

    def bit(self, ctx: int, b: int) -> int:
        """Code bit `b` under context `ctx`; returns it."""
        p = self.p[ctx]
        if b:
            self._cum.append(p)
            self._freq.append(TOTAL - p)
            self.p[ctx] = p - (p >> ADAPT_SHIFT)
            return 1
        self._cum.append(0)
        self._freq.append(p)
        self.p[ctx] = p + ((TOTAL - p) >> ADAPT_SHIFT)
        return 0

    def bits(self, value: int, n: int) -> int:
        """Code the n low bits of `value` as bypass bits, most significant first; returns it."""
        if value < 0 or value >> n:
            raise ValueError(f"{value} does not fit in {n} bits")
        for i in range(n - 1, -1, -1):
            self._cum.append(_HALF * ((value >> i) & 1))
            self._freq.append(_HALF)
        return value

    def uniform(self, value: int, n: int) -> int:
        """Code `value` in [0, n), all equally likely (1 <= n <= 2**16); returns it."""
        if not 0 <= value < n <= TOTAL:
            raise ValueError(f"{value} outside [0, {n})")
        if n > 1:
            lo = value * TOTAL // n
            self._cum.append(lo)
            self._freq.append((value + 1) * TOTAL // n - lo)
        return value

    def getvalue(self) -> bytes:
        """The stream of every decision so far."""
        words = encode_intervals(np.array(self._cum, np.int64), np.array(self._freq, np.int64))
        return words_to_bytes(words).rstrip(b"\0")


class BinaryDecoder:
    """Decodes what :class:`BinaryEncoder` coded, decision by decision, under the same contexts."""

    def __init__(self, data: bytes, contexts: int) -> None:
        if data and data[-1] == 0:
            raise BitstreamError("binary stream ends with a zero byte")
        self.p = [_HALF] * contexts
        self.n_words = -(-len(data) // 4)
        self._words = bytes_to_words(data)
        w = self._words
        self._x = (int(w[0]) if w.size else 0) | ((int(w[1]) if w.size > 1 else 0) & 0x7FFFFFFF) << 32
        self._pos = 2

    def _take(self, cum: int, freq: int) -> None:
        x, pos = dec_advance(self._x, self._pos, self._words, cum, freq)
        self._x, self._pos = int(x), int(pos)

    def bit(self, ctx: int, _b: int = 0) -> int:
        """The next bit, under context `ctx`."""
        p = self.p[ctx]
        if (self._x & _MASK) >= p:
            self._take(p, TOTAL - p)
            self.p[ctx] = p - (p >> ADAPT_SHIFT)
            return 1
        self._take(0, p)
        self.p[ctx] = p + ((TOTAL - p) >> ADAPT_SHIFT)
        return 0

    def bits(self, _value: int, n: int) -> int:
        """The next n bypass bits as an integer, most significant first."""
        v = 0
        for _ in range(n):
            b = int((self._x & _MASK) >= _HALF)
            self._take(_HALF * b, _HALF)
            v = 2 * v + b
        return v

    def uniform(self, _value: int, n: int) -> int:
        """The next value uniform over [0, n)."""
        if n <= 1:
            return 0
        v = (((self._x & _MASK) + 1) * n - 1) >> 16  # v * 2**16 // n <= x & 0xffff < (v + 1) * 2**16 // n
        lo = v * TOTAL // n
        self._take(lo, (v + 1) * TOTAL // n - lo)
        return v

    def finish(self, what: str = "binary stream") -> None:
        """BitstreamError unless the stream ended where the encoder began, all its bytes used."""
        if self._x != RANS_L or self._pos < self.n_words:
            raise BitstreamError(f"{what}: damaged or truncated")


Coder = BinaryEncoder | BinaryDecoder


def code_signed(coder: Coder, value: int, zero_ctx: int, prefix_ctxs: Sequence[int], max_bits: int) -> int:
    """Code (or decode) a signed integer with |value| < 2**max_bits (module docstring)."""
    if not coder.bit(zero_ctx, int(value != 0)):
        return 0
    a = abs(value)
    b = a.bit_length()
    if isinstance(coder, BinaryEncoder) and b > max_bits:
        raise ValueError(f"|{value}| needs more than {max_bits} bits")
    n = 1  # the bit length, in truncated unary: a 1 for each step up, a 0 to stop
    last = len(prefix_ctxs) - 1
    while n < max_bits and coder.bit(prefix_ctxs[min(n - 1, last)], int(n < b)):
        n += 1
    mag = (1 << (n - 1)) | coder.bits(a & ((1 << (n - 1)) - 1), n - 1)
    return -mag if coder.bits(int(value < 0), 1) else mag

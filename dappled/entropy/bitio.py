"""MSB-first bit writer/reader with Elias-gamma codes, for compact model tables.

Elias-gamma spends 2*floor(log2 v) + 1 bits on v >= 1: one bit for 1, three for 2 and 3, which
suits the small, smooth numbers of a frequency table (gaps, exponent deltas).
"""

from __future__ import annotations

from dappled.errors import BitstreamError, TruncatedError

MAX_GAMMA_BITS = 65  # a gamma code may carry values up to 2**65 - 1, no more


class BitWriter:
    """Accumulates bits MSB first; :meth:`getvalue` pads the last byte with zeros."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._acc = 0
        self._nacc = 0

    def write(self, value: int, nbits: int) -> None:
        """Append the `nbits` low bits of `value` (0 <= value < 2**nbits)."""
        if nbits < 0 or value < 0 or value >> nbits:
            raise ValueError(f"{value} does not fit in {nbits} bits")
        self._acc = (self._acc << nbits) | value
        self._nacc += nbits
        if self._nacc >= 64:
            full = self._nacc // 8
            self._nacc -= 8 * full
            self._out += (self._acc >> self._nacc).to_bytes(full, "big")
            self._acc &= (1 << self._nacc) - 1

    def gamma(self, value: int) -> None:
        """Append the Elias-gamma code of `value` >= 1."""
        if value < 1:
            raise ValueError("gamma codes need a value >= 1")
        nbits = value.bit_length()
        if nbits > MAX_GAMMA_BITS:
            raise ValueError("value too large for a gamma code")
        self.write(0, nbits - 1)
        self.write(value, nbits)

    @property
    def nbits(self) -> int:
        """Number of bits written so far."""
        return 8 * len(self._out) + self._nacc

    def getvalue(self) -> bytes:
        """Return the bytes written, the last one zero-padded."""
        pad = -self._nacc % 8
        tail = (self._acc << pad).to_bytes((self._nacc + pad) // 8, "big")
        return bytes(self._out) + tail


class BitReader:
    """Reads what :class:`BitWriter` wrote; running past the end raises :class:`TruncatedError`."""

    def __init__(self, data: bytes, start: int = 0) -> None:
        self._data = data
        self._pos = 8 * start
        self._end = 8 * len(data)

    def read(self, nbits: int) -> int:
        """Read `nbits` bits as an unsigned integer."""
        if nbits == 0:
            return 0
        if self._pos + nbits > self._end:
            raise TruncatedError("stream ends inside a bit field")
        first = self._pos >> 3
        last = (self._pos + nbits + 7) >> 3
        chunk = int.from_bytes(self._data[first:last], "big")
        shift = 8 * (last - first) - (self._pos & 7) - nbits
        self._pos += nbits
        return (chunk >> shift) & ((1 << nbits) - 1)

    def gamma(self) -> int:
        """Read an Elias-gamma code; an over-long prefix raises :class:`BitstreamError`."""
        zeros = 0
        while True:
            if self._pos >= self._end:
                raise TruncatedError("stream ends inside a gamma code")
            avail = min(self._end - self._pos, 32)
            word = self.read(avail)
            if word:
                lead = avail - word.bit_length()
                zeros += lead
                self._pos -= avail - lead
                break
            zeros += avail
            if zeros >= MAX_GAMMA_BITS:
                raise BitstreamError("gamma code prefix too long")
        if zeros >= MAX_GAMMA_BITS:
            raise BitstreamError("gamma code prefix too long")
        return self.read(zeros + 1)

    def byte_pos(self) -> int:
        """Index of the first byte not (even partly) consumed: the end of a padded bit section."""
        return (self._pos + 7) >> 3

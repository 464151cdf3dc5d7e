"""Byte-level LEB128 varints and a bounds-checked byte cursor for the small stream headers."""

from __future__ import annotations

from dappled.errors import BitstreamError, TruncatedError

MAX_VARINT_BYTES = 10  # enough for any value below 2**70; longer runs are rejected
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def uvarint(value: int) -> bytes:
    """Encode a non-negative integer as LEB128 (7 bits a byte, high bit = more follows)."""
    if value < 0:
        raise ValueError("uvarint needs a non-negative value")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def zigzag(value: int) -> int:
    """Map a signed integer to a non-negative one: 0, -1, 1, -2 ... -> 0, 1, 2, 3 ..."""
    return 2 * value if value >= 0 else -2 * value - 1


def unzigzag(value: int) -> int:
    """Inverse of :func:`zigzag`."""
    return value >> 1 if not value & 1 else -(value >> 1) - 1


def svarint(value: int) -> bytes:
    """Encode a signed integer as a zigzag LEB128 varint."""
    return uvarint(zigzag(value))


class ByteReader:
    """Cursor over a byte string; every read past the end raises :class:`TruncatedError`."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = bytes(data)
        self.pos = pos

    @property
    def remaining(self) -> int:
        """Number of bytes not read yet."""
        return len(self.data) - self.pos

    def uvarint(self, limit: int = INT64_MAX) -> int:
        """Read a LEB128 varint; values above `limit` raise :class:`BitstreamError`."""
        value = 0
        for i in range(MAX_VARINT_BYTES):
            if self.pos >= len(self.data):
                raise TruncatedError("stream ends inside a varint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if value > limit:
                    raise BitstreamError(f"varint {value} above its limit {limit}")
                return value
        raise BitstreamError("varint longer than 10 bytes")

    def svarint(self) -> int:
        """Read a zigzag varint that must fit a signed 64-bit integer."""
        value = unzigzag(self.uvarint(limit=(1 << 64) - 1))
        if not INT64_MIN <= value <= INT64_MAX:
            raise BitstreamError("signed varint outside the int64 range")
        return value

    def take(self, n: int) -> bytes:
        """Read exactly `n` bytes."""
        if n < 0 or n > self.remaining:
            raise TruncatedError(f"need {n} bytes, {self.remaining} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def rest(self) -> bytes:
        """Read everything left."""
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

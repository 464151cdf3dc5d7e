"""Named sub-streams inside one packet payload, so `dappled info` can report bytes per stream.

Layout: count u8, then per chunk: tag (4 ASCII bytes), length u32 LE, bytes.
"""

from __future__ import annotations

import struct

from dappled.errors import BitstreamError, TruncatedError

_CHUNK = struct.Struct("<4sI")


def pack_chunks(chunks: dict[str, bytes]) -> bytes:
    """Join named byte strings (tags of exactly 4 ASCII characters) into one payload."""
    if len(chunks) > 255:
        raise ValueError("at most 255 chunks")
    out = [bytes([len(chunks)])]
    for tag, data in chunks.items():
        t = tag.encode("ascii")
        if len(t) != 4:
            raise ValueError(f"chunk tag {tag!r} must be 4 ASCII characters")
        out.append(_CHUNK.pack(t, len(data)))
        out.append(bytes(data))
    return b"".join(out)


def unpack_chunks(payload: bytes) -> dict[str, bytes]:
    """Split a payload made by :func:`pack_chunks`; raises BitstreamError on any defect."""
    if not payload:
        raise TruncatedError("empty payload")
    count = payload[0]
    pos = 1
    chunks: dict[str, bytes] = {}
    for _ in range(count):
        if pos + _CHUNK.size > len(payload):
            raise TruncatedError("payload ends inside a chunk header")
        tag, length = _CHUNK.unpack_from(payload, pos)
        pos += _CHUNK.size
        if pos + length > len(payload):
            raise TruncatedError(f"chunk {tag!r} declares {length} bytes, payload ends first")
        try:
            name = tag.decode("ascii")
        except UnicodeDecodeError:
            raise BitstreamError("chunk tag is not ASCII") from None
        if name in chunks:
            raise BitstreamError(f"chunk {name!r} appears twice")
        chunks[name] = payload[pos : pos + length]
        pos += length
    if pos != len(payload):
        raise BitstreamError(f"{len(payload) - pos} stray bytes after the last chunk")
    return chunks


def require(chunks: dict[str, bytes], *tags: str) -> list[bytes]:
    """Return the named chunks, raising BitstreamError if one is missing."""
    missing = [t for t in tags if t not in chunks]
    if missing:
        raise BitstreamError(f"payload lacks chunk(s) {', '.join(missing)}")
    return [chunks[t] for t in tags]


FRAME_HEADER = struct.Struct("<BBI")
"""The VHED chunk of a video codec's frame payload: payload version, frame type, a count."""


def parse_frame_header(vhed: bytes, version: int | tuple[int, ...], types: tuple[int, ...], *, header: str,
                       codec: str) -> tuple[int, int]:
    """(frame type, count) of a VHED chunk of payload `version` (or one of several: the caller
    reads which from byte 0); BitstreamError if it has the wrong size, another version (named
    after `codec`) or a type not in `types` (both named after `header`)."""
    if len(vhed) != FRAME_HEADER.size:
        raise BitstreamError(f"{header} frame header has the wrong size")
    got, ftype, count = FRAME_HEADER.unpack(vhed)
    if got not in (version if isinstance(version, tuple) else (version,)):
        raise BitstreamError(f"unsupported {codec} payload version {got}")
    if ftype not in types:
        raise BitstreamError(f"unknown {header} frame type {ftype}")
    return ftype, count

"""The Dappled container: one file format for images and video (spec in docs/format.md).

Layout (all integers little-endian):

    file header (32 bytes)
        magic        4s   b"DPLD"
        version      u8   FORMAT_VERSION
        codec_id     u8   registry id of the codec that made the packets
        color_space  u8   ColorSpace
        flags        u8   reserved, 0
        width        u32
        height       u32
        frame_count  u32  1 for an image
        fps_num      u32  0 for an image
        fps_den      u32  1 for an image
        header_crc   u32  CRC32 of the 28 bytes before it
    packets, each:
        type         u8   PacketType
        flags        u8   bit 0: keyframe (decodable without earlier packets)
        reserved     u16  0
        frame        u32  frame index the packet belongs to
        length       u32  payload length in bytes
        crc          u32  CRC32 of the payload
        payload      length bytes

A reader checks each field before it trusts it: magic, version, codec id, color space, the
header CRC, dimensions against caps (before allocating anything), packet type, payload length
against the cap and the bytes really present, and the payload CRC. Every failure raises a
subclass of :class:`dappled.errors.BitstreamError`.
"""

from __future__ import annotations

import enum
import io
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from dappled.errors import (
    BitstreamError,
    ChecksumError,
    LimitError,
    TruncatedError,
    UnsupportedError,
)
from dappled.limits import MAX_DIMENSION, MAX_FRAMES, MAX_PIXELS  # re-exported: the header's limits

MAGIC = b"DPLD"
FORMAT_VERSION = 1
MAX_PACKET_BYTES = 256 * 1024 * 1024

_HEADER = struct.Struct("<4sBBBBIIIII")
_HEADER_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size + _HEADER_CRC.size
_PACKET = struct.Struct("<BBHIII")
PACKET_HEADER_SIZE = _PACKET.size


class ColorSpace(enum.IntEnum):
    """Color space of the decoded frames."""

    RGB = 0


class PacketType(enum.IntEnum):
    """What a packet holds."""

    CONFIG = 1  # codec configuration shared by all frames (optional)
    FRAME = 2  # the coded data of one frame
    INDEX = 3  # frame -> byte offset table for seeking (optional, at the end)
    END = 4  # end of stream marker (empty payload)


KEYFRAME = 0x01


@dataclass(frozen=True)
class StreamHeader:
    """What the file header says about the whole stream."""

    codec_id: int
    width: int
    height: int
    frame_count: int = 1
    fps_num: int = 0
    fps_den: int = 1
    color_space: ColorSpace = ColorSpace.RGB

    @property
    def fps(self) -> float:
        """Frame rate as a float (0.0 for an image)."""
        return self.fps_num / self.fps_den if self.fps_den else 0.0


@dataclass(frozen=True)
class Packet:
    """One packet: a type, the frame it belongs to, flags and an opaque payload."""

    type: PacketType
    payload: bytes
    frame: int = 0
    flags: int = 0

    @property
    def keyframe(self) -> bool:
        """True when the packet decodes without any earlier frame."""
        return bool(self.flags & KEYFRAME)


@dataclass
class Container:
    """A parsed stream: its header and its packets, in order."""

    header: StreamHeader
    packets: list[Packet] = field(default_factory=list)

    def frames(self) -> list[Packet]:
        """The FRAME packets in stream order."""
        return [p for p in self.packets if p.type == PacketType.FRAME]

    def config(self) -> bytes | None:
        """Payload of the CONFIG packet, if any."""
        for p in self.packets:
            if p.type == PacketType.CONFIG:
                return p.payload
        return None


def _check_header(h: StreamHeader) -> None:
    if not (1 <= h.width <= MAX_DIMENSION and 1 <= h.height <= MAX_DIMENSION):
        raise LimitError(
            f"frame size {h.width}x{h.height} outside 1..{MAX_DIMENSION} per side"
        )
    if h.width * h.height > MAX_PIXELS:
        raise LimitError(f"frame size {h.width}x{h.height} is over {MAX_PIXELS} pixels")
    if not 1 <= h.frame_count <= MAX_FRAMES:
        raise LimitError(f"frame count {h.frame_count} outside 1..{MAX_FRAMES}")
    if h.fps_den == 0:
        raise BitstreamError("frame rate denominator is 0")


def encode_header(h: StreamHeader) -> bytes:
    """Serialize the 32-byte file header."""
    _check_header(h)
    body = _HEADER.pack(
        MAGIC, FORMAT_VERSION, h.codec_id, int(h.color_space), 0,
        h.width, h.height, h.frame_count, h.fps_num, h.fps_den,
    )
    return body + _HEADER_CRC.pack(zlib.crc32(body))


def decode_header(data: bytes, known_codecs: Iterable[int] | None = None) -> StreamHeader:
    """Parse and validate the 32-byte file header."""
    if len(data) < HEADER_SIZE:
        if len(data) >= 4 and data[:4] != MAGIC:
            raise BitstreamError("not a Dappled stream (bad magic bytes)")
        raise TruncatedError(f"stream too short for a header ({len(data)} of {HEADER_SIZE} bytes)")
    body = data[: _HEADER.size]
    magic, version, codec_id, color, _flags, w, h, n, fnum, fden = _HEADER.unpack(body)
    if magic != MAGIC:
        raise BitstreamError("not a Dappled stream (bad magic bytes)")
    if version != FORMAT_VERSION:
        raise UnsupportedError(f"unsupported format version {version} (this reader: {FORMAT_VERSION})")
    (crc,) = _HEADER_CRC.unpack(data[_HEADER.size : HEADER_SIZE])
    if crc != zlib.crc32(body):
        raise ChecksumError("file header CRC mismatch (corrupted stream)")
    try:
        cs = ColorSpace(color)
    except ValueError:
        raise UnsupportedError(f"unknown color space {color}") from None
    if known_codecs is not None and codec_id not in set(known_codecs):
        raise UnsupportedError(f"unknown codec id {codec_id}")
    header = StreamHeader(codec_id, w, h, n, fnum, fden, cs)
    _check_header(header)
    return header


def encode_packet(p: Packet) -> bytes:
    """Serialize one packet (16-byte packet header + payload)."""
    if len(p.payload) > MAX_PACKET_BYTES:
        raise LimitError(f"packet of {len(p.payload)} bytes is over {MAX_PACKET_BYTES}")
    head = _PACKET.pack(int(p.type), p.flags, 0, p.frame, len(p.payload), zlib.crc32(p.payload))
    return head + p.payload


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    chunks = []
    remaining = n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise TruncatedError(f"stream ends inside {what} ({n - remaining} of {n} bytes)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class ContainerReader:
    """Reads a stream incrementally: the header first, then packets as they arrive.

    Works on any binary file-like object (a file, a pipe, a socket file), so a player can
    decode packets before the whole stream has arrived.
    """

    def __init__(self, stream: BinaryIO, known_codecs: Iterable[int] | None = None,
                 size_hint: int | None = None) -> None:
        self._stream = stream
        self._size_hint = size_hint
        self._offset = 0
        head = b""
        while len(head) < HEADER_SIZE:  # a pipe may deliver the header in pieces
            chunk = stream.read(HEADER_SIZE - len(head))
            if not chunk:
                break
            head += chunk
        self.header = decode_header(head, known_codecs)
        self._offset = HEADER_SIZE
        self._ended = False

    @property
    def offset(self) -> int:
        """Byte offset of the next packet header in the stream."""
        return self._offset

    def seek(self, offset: int) -> None:
        """Continue reading at the packet that starts at byte `offset` (a seekable stream only:
        a file, or an HTTP body opened with range requests); clears the end-of-stream state."""
        if offset < HEADER_SIZE or (self._size_hint is not None and offset > self._size_hint):
            raise BitstreamError(f"seek to byte {offset} outside the stream")
        self._stream.seek(offset)
        self._offset = offset
        self._ended = False

    def read_packet(self) -> Packet | None:
        """Return the next packet, or None at a clean end of stream (END packet or EOF)."""
        if self._ended:
            return None
        first = self._stream.read(1)
        if not first:
            self._ended = True
            return None
        head = first + _read_exact(self._stream, PACKET_HEADER_SIZE - 1, "a packet header")
        ptype, flags, _res, frame, length, crc = _PACKET.unpack(head)
        try:
            ptype = PacketType(ptype)
        except ValueError:
            raise UnsupportedError(f"unknown packet type {ptype} at byte {self._offset}") from None
        if length > MAX_PACKET_BYTES:
            raise LimitError(f"packet length {length} at byte {self._offset} is over the cap")
        if self._size_hint is not None and self._offset + PACKET_HEADER_SIZE + length > self._size_hint:
            raise TruncatedError(
                f"packet at byte {self._offset} declares {length} bytes but the stream ends first"
            )
        if frame >= self.header.frame_count:
            raise BitstreamError(
                f"packet for frame {frame} but the stream has {self.header.frame_count} frames"
            )
        payload = _read_exact(self._stream, length, "a packet payload")
        if zlib.crc32(payload) != crc:
            raise ChecksumError(f"packet at byte {self._offset} fails its CRC (corrupted stream)")
        self._offset += PACKET_HEADER_SIZE + length
        if ptype == PacketType.END:
            self._ended = True
        return Packet(ptype, payload, frame, flags)

    def __iter__(self) -> Iterator[Packet]:
        while (p := self.read_packet()) is not None:
            yield p


def pack(header: StreamHeader, packets: Iterable[Packet]) -> bytes:
    """Serialize a whole stream: header, packets, END marker."""
    out = [encode_header(header)]
    out.extend(encode_packet(p) for p in packets)
    out.append(encode_packet(Packet(PacketType.END, b"")))
    return b"".join(out)


def unpack(data: bytes, known_codecs: Iterable[int] | None = None) -> Container:
    """Parse a whole stream held in memory; raises BitstreamError on any defect."""
    reader = ContainerReader(io.BytesIO(data), known_codecs, size_hint=len(data))
    container = Container(reader.header, list(reader))
    if not container.frames():
        raise BitstreamError("stream holds no frame")
    return container

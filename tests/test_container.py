"""Container format: round trips, streaming reads, and typed errors on every kind of bad input."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dappled.codec.chunks import pack_chunks, unpack_chunks
from dappled.codec.container import (
    HEADER_SIZE,
    KEYFRAME,
    MAX_DIMENSION,
    ContainerReader,
    Packet,
    PacketType,
    StreamHeader,
    encode_header,
    pack,
    unpack,
)
from dappled.errors import (
    BitstreamError,
    ChecksumError,
    LimitError,
    TruncatedError,
    UnsupportedError,
)


def _stream(n_frames: int = 3) -> bytes:
    header = StreamHeader(codec_id=1, width=64, height=48, frame_count=n_frames, fps_num=25, fps_den=1)
    packets = [Packet(PacketType.CONFIG, b"cfg")]
    packets += [Packet(PacketType.FRAME, bytes([i]) * (10 + i), i, KEYFRAME if i == 0 else 0)
                for i in range(n_frames)]
    return pack(header, packets)


def test_round_trip() -> None:
    c = unpack(_stream())
    assert c.header.width == 64 and c.header.height == 48 and c.header.frame_count == 3
    assert c.header.fps == 25.0
    assert c.config() == b"cfg"
    frames = c.frames()
    assert [p.frame for p in frames] == [0, 1, 2]
    assert frames[0].keyframe and not frames[1].keyframe
    assert frames[2].payload == b"\x02" * 12


class _Trickle(io.RawIOBase):
    """A pipe-like reader that returns at most a few bytes per read call."""

    def __init__(self, data: bytes, step: int = 3) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.step if n < 0 else min(n, self.step)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def test_streaming_reader_handles_short_reads() -> None:
    reader = ContainerReader(_Trickle(_stream()))
    types = [p.type for p in reader]
    assert types == [PacketType.CONFIG, PacketType.FRAME, PacketType.FRAME, PacketType.FRAME,
                     PacketType.END]


def test_bad_magic() -> None:
    data = bytearray(_stream())
    data[:4] = b"RIFF"
    with pytest.raises(BitstreamError, match="magic"):
        unpack(bytes(data))


def test_wrong_version() -> None:
    data = bytearray(_stream())
    data[4] = 99
    with pytest.raises(UnsupportedError, match="version"):
        unpack(bytes(data))


def test_header_crc() -> None:
    data = bytearray(_stream())
    data[10] ^= 0xFF  # inside width
    with pytest.raises(ChecksumError):
        unpack(bytes(data))


def test_unknown_codec() -> None:
    with pytest.raises(UnsupportedError, match="codec"):
        unpack(_stream(), known_codecs=[7])


def test_payload_crc() -> None:
    data = bytearray(_stream())
    data[-20] ^= 0x01  # inside the last frame's payload
    with pytest.raises(ChecksumError):
        unpack(bytes(data))


@pytest.mark.parametrize("cut", [0, 3, HEADER_SIZE - 1, HEADER_SIZE + 5, -17, -1])
def test_truncated(cut: int) -> None:
    data = _stream()[:cut] if cut else b""
    with pytest.raises(BitstreamError):
        unpack(data)


def _forged_header(width: int, height: int, frames: int = 1) -> bytes:
    body = struct.pack("<4sBBBBIIIII", b"DPLD", 1, 1, 0, 0, width, height, frames, 0, 1)
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(("w", "h"), [(0, 10), (MAX_DIMENSION + 1, 10), (16384, 16384), (2**31, 2**31)])
def test_absurd_dimensions_refused(w: int, h: int) -> None:
    with pytest.raises(LimitError):
        unpack(_forged_header(w, h))


def test_huge_packet_length_refused_without_allocation() -> None:
    head = _forged_header(64, 64)
    packet = struct.pack("<BBHIII", int(PacketType.FRAME), 0, 0, 0, 0xFFFFFFF0, 0)
    with pytest.raises(LimitError):
        unpack(head + packet)
    packet = struct.pack("<BBHIII", int(PacketType.FRAME), 0, 0, 0, 1 << 20, 0)
    with pytest.raises(TruncatedError):
        unpack(head + packet)


def test_unknown_packet_type() -> None:
    head = _forged_header(8, 8)
    packet = struct.pack("<BBHIII", 77, 0, 0, 0, 0, zlib.crc32(b""))
    with pytest.raises(UnsupportedError, match="packet type"):
        unpack(head + packet)


def test_frame_index_beyond_count() -> None:
    header = StreamHeader(1, 8, 8, frame_count=1)
    with pytest.raises(BitstreamError, match="frame"):
        unpack(pack(header, [Packet(PacketType.FRAME, b"x", frame=5)]))


def test_no_frame() -> None:
    with pytest.raises(BitstreamError, match="no frame"):
        unpack(pack(StreamHeader(1, 8, 8), []))


def test_encode_header_refuses_bad_sizes() -> None:
    with pytest.raises(LimitError):
        encode_header(StreamHeader(1, 0, 8))


def test_chunks_round_trip_and_errors() -> None:
    chunks = {"HEAD": b"abc", "POS ": b"", "COLR": bytes(range(200))}
    data = pack_chunks(chunks)
    assert unpack_chunks(data) == chunks
    for cut in range(len(data) - 1):
        with pytest.raises(BitstreamError):
            unpack_chunks(data[:cut])
    with pytest.raises(BitstreamError):
        unpack_chunks(data + b"x")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_bitstream_error(data: bytes) -> None:
    try:
        unpack(data)
    except BitstreamError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_streams_only_raise_bitstream_error(data: st.DataObject) -> None:
    stream = bytearray(_stream())
    n_mut = data.draw(st.integers(1, 4))
    for _ in range(n_mut):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(stream) - 1)))
        if kind == "flip" and stream:
            stream[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del stream[pos:]
        else:
            stream[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        unpack(bytes(stream))
    except BitstreamError:
        pass

"""Helpers for tests that forge image streams: a frame payload replaced, CRC fixed up."""

from __future__ import annotations

import zlib

from dappled.codec.container import HEADER_SIZE, PACKET_HEADER_SIZE


def frame_payload(stream: bytes) -> tuple[bytes, int]:
    """The payload of the first packet of a one-frame stream, and its length."""
    plen = int.from_bytes(stream[HEADER_SIZE + 8 : HEADER_SIZE + 12], "little")
    start = HEADER_SIZE + PACKET_HEADER_SIZE
    return stream[start : start + plen], plen


def forge(stream: bytes, payload: bytes) -> bytes:
    """The stream with its frame payload replaced (lengths and CRC fixed up), so only the
    codec's own checks stand between the payload and the decoder."""
    start = HEADER_SIZE + PACKET_HEADER_SIZE
    _, plen = frame_payload(stream)
    head = bytearray(stream[HEADER_SIZE:start])
    head[8:12] = len(payload).to_bytes(4, "little")
    head[12:16] = zlib.crc32(payload).to_bytes(4, "little")
    return stream[:HEADER_SIZE] + bytes(head) + payload + stream[start + plen :]

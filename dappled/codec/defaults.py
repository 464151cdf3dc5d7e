"""Defaults shared by the codecs and the CLI, each in one place."""

from __future__ import annotations

from dappled.codec.container import HEADER_SIZE, PACKET_HEADER_SIZE

DEFAULT_QUALITY = 4
"""--quality when none is given (codecs with their own scale, the baselines and rat, override it)."""

DEFAULT_GOP = 25
"""Video: an intra frame every this many frames."""

IMAGE_CONTAINER_BYTES = HEADER_SIZE + 2 * PACKET_HEADER_SIZE
"""The container around one image frame: file header, FRAME packet header, END packet."""


def image_payload_budget(bpp: float, width: int, height: int) -> int:
    """Bytes a one-frame payload may take for a bpp target over the whole stream file."""
    return int(bpp * width * height / 8) - IMAGE_CONTAINER_BYTES

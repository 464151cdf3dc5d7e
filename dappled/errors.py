"""Typed errors: everything a user can cause ends in one of these, never a bare traceback."""

from __future__ import annotations


class DappledError(Exception):
    """Base class of every error Dappled raises on purpose (bad input, bad stream, bad option)."""


class BitstreamError(DappledError):
    """A stream is not a valid Dappled stream: wrong magic, truncated, corrupted, unsupported."""


class TruncatedError(BitstreamError):
    """The stream ends before a header or packet is complete."""


class ChecksumError(BitstreamError):
    """A header or packet payload does not match its CRC32."""


class UnsupportedError(BitstreamError):
    """Unknown format version, codec id, packet type or color space."""


class LimitError(BitstreamError):
    """A declared size (dimensions, packet length, symbol count) is over a sane cap."""


class InputError(DappledError):
    """An input file (image, video) cannot be read or has an unusable shape."""


class OptionError(DappledError):
    """A codec option is out of range or inconsistent (e.g. --bpp and --quality together)."""

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


class EncodeError(DappledError):
    """An encode could not make a valid stream (e.g. a fit that diverged to NaN)."""


def out_of_memory(exc: BaseException) -> bool:
    """True for the ways torch, numpy and numba report an allocation that failed: MemoryError,
    torch's OutOfMemoryError and its RuntimeErrors ("out of memory", "DefaultCPUAllocator")."""
    if isinstance(exc, MemoryError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError (and torch.OutOfMemoryError)
        return True
    text = str(exc)
    return "out of memory" in text.lower() or "DefaultCPUAllocator" in text or "can't allocate memory" in text

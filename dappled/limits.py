"""Size limits every layer enforces (stream headers, image files, video clips): one place, so the
datasets and the codecs agree without importing each other."""

from __future__ import annotations

MAX_DIMENSION = 16384
"""Largest width or height of an image or a frame."""

MAX_PIXELS = 64 * 1024 * 1024
"""Largest width x height of an image or a frame."""

MAX_FRAMES = 10_000_000
"""Most frames a stream may declare."""

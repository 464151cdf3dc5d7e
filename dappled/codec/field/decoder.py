"""The field decoder: a frame payload to pixels. The ARM decodes the latents symbol by symbol
(numba), then the exact-arithmetic synthesis runs (numpy, or torch on CUDA): a CPU decode never
imports torch."""

from __future__ import annotations

import numpy as np

from dappled.codec.field.format import unpack_payload
from dappled.models.field.integer import decode_latents
from dappled.models.field.layout import grids
from dappled.models.field.synthesis import synthesize


def decode_payload(payload: bytes, width: int, height: int, device: str = "cpu") -> np.ndarray:
    """A frame payload -> (H, W, 3) uint8 image."""
    p = unpack_payload(payload, width, height)
    gs = grids(height, width)
    latents = decode_latents(p.words, p.excess, gs, p.net)
    return synthesize(latents, gs, p.net, height, width, device)

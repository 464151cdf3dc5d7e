"""The field decoder: a frame payload to pixels. The ARM decodes the latents symbol by symbol
(numba), then the exact-arithmetic synthesis runs (numpy, or torch on CUDA): a CPU decode never
imports torch. :func:`payload_budget` says beforehand what a decode will need."""

from __future__ import annotations

import numpy as np

from dappled.codec.field.format import read_head, unpack_payload
from dappled.codec.registry import Budget
from dappled.entropy.latent import layout_of
from dappled.models.field.integer import decode_latents
from dappled.models.field.layout import grids, level_size, macs_per_pixel
from dappled.models.field.synthesis import strip_rows, synthesize


def payload_budget(payload: bytes, width: int, height: int) -> Budget:
    """Work and peak memory of decoding a frame payload on the CPU, from its header and chunk
    sizes (nothing decoded): MAC/pixel x pixels; the latents' padded int64 buffer, the rANS
    words, the escapes, the output image and one strip of the synthesis (every level's rows,
    float64, with numpy's temporaries)."""
    h = read_head(payload)
    a = h.arch
    gs = grids(height, width)
    latents = 8 * layout_of([g.height for g in gs], [g.width for g in gs])[3]
    words = 4 * h.lat_bytes  # the bytes as int64 words, and a contiguous copy
    escapes = 3 * 8 * h.n_esc + 2 * h.esc_bytes
    n = strip_rows(width, a.synth_hidden)
    rows = min(height, n + 4)
    r1, w1 = min(level_size(height, width, 1)[0], rows // 2 + 3), level_size(height, width, 1)[1]
    levels = 6 * 8 * a.synth_hidden * r1 * w1  # mix, upsampling, rounding temporaries; the levels below
    planes = 4 * rows * width * (3 + a.res_hidden + 3 + 3) + 8 * rows * width
    out = 2 * 3 * width * height  # the image, and the copy its writer (PNG encoder) makes
    return Budget(macs_per_pixel(a, height, width) * width * height,
                  latents + words + escapes + levels + planes + out)


def decode_payload(payload: bytes, width: int, height: int, device: str = "cpu") -> np.ndarray:
    """A frame payload -> (H, W, 3) uint8 image."""
    p = unpack_payload(payload, width, height)
    gs = grids(height, width)
    latents = decode_latents(p.words, p.excess, gs, p.net)
    return synthesize(latents, gs, p.net, height, width, device)

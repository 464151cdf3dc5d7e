"""The splat decoder: a frame payload to pixels by rasterization. On the CPU it stays in numpy and
numba (a decode never imports torch); CUDA renders with torch."""

from __future__ import annotations

import numpy as np

from dappled.codec.chunks import unpack_chunks
from dappled.codec.registry import Budget
from dappled.codec.splat.format import unpack_gaussians
from dappled.codec.threads import numba_threads
from dappled.errors import LimitError
from dappled.models.splat.symbols import QuantConfig, QuantizedGaussians, dequantize_numpy

MAX_COVERAGE = 256  # mean number of Gaussian boxes over a pixel
COVERAGE_SLACK = 1 << 16  # pixel visits any stream may take (tiny images)
ROW_BYTES = 24
"""The render's row table per box row of a Gaussian: a span (2 x int32) and a weight pair (2 x
float64)."""
MAX_ROWS = 32 << 20
"""Box rows (summed over the Gaussians) a render may hold: 768 MiB of row table. Real streams
stay far below (a Gaussian's box is a few to a few hundred rows: ~5 M rows for 100,000
Gaussians at 4096x4096); without it, tall thin Gaussians could ask for MAX_COVERAGE rows per
pixel, 6 kB a pixel."""
GAUSSIAN_BYTES = 128  # symbols, dequantized parameters, boxes and tile lists per Gaussian
PIXEL_BYTES = 28  # float32 RGB accumulator and the uint8 output per pixel


def frame_budget(n: int, width: int, height: int, gaussian_bytes: int = GAUSSIAN_BYTES) -> Budget:
    """Work and peak memory of rendering `n` Gaussians into a `width` x `height` frame, an upper
    bound that holds once :func:`check_render_work` has passed: ~10 operations per pixel a
    Gaussian covers (at most MAX_COVERAGE per pixel, and a Gaussian covers at most the frame),
    ~100 per Gaussian; `gaussian_bytes` per Gaussian, PIXEL_BYTES per pixel and the row table
    (a box is at most `height` rows, the table at most MAX_ROWS)."""
    pixels = width * height
    visits = min(MAX_COVERAGE * pixels, n * pixels) + COVERAGE_SLACK
    rows = min(MAX_ROWS, n * height)
    return Budget(10 * visits + 100 * n, gaussian_bytes * n + PIXEL_BYTES * pixels + ROW_BYTES * rows)


def check_render_work(means: np.ndarray, chol: np.ndarray, width: int, height: int) -> None:
    """LimitError when the Gaussians would cover the image more than MAX_COVERAGE times on
    average (the render's time grows with that) or their boxes span more than MAX_ROWS rows
    (the row table's memory)."""
    from dappled.models.splat.numba_cpu import footprint

    pixels, rows = footprint(means, chol, height, width)
    limit = MAX_COVERAGE * width * height + COVERAGE_SLACK
    if pixels > limit or rows > limit:
        raise LimitError(f"the Gaussians cover the {width}x{height} image {pixels / (width * height):.0f} "
                         f"times over (at most {MAX_COVERAGE})")
    if rows > MAX_ROWS:
        raise LimitError(f"the Gaussians' boxes span {rows} rows of the {width}x{height} image "
                         f"(at most {MAX_ROWS})")


def render_quantized(q: QuantizedGaussians, cfg: QuantConfig, width: int, height: int,
                     device: str = "cpu") -> np.ndarray:
    """Rasterize quantized Gaussians to an (H, W, 3) uint8 image.

    On the CPU this stays in numpy and numba (:func:`dequantize_numpy` is bit-identical to the
    torch :func:`dequantize`), so a decode never imports torch; CUDA renders with torch.
    """
    means_np, chol_np, colors_np = dequantize_numpy(q, cfg)
    check_render_work(means_np, chol_np, width, height)
    if device == "cuda":
        import torch

        from dappled.models.splat import render

        means, chol, colors = (torch.from_numpy(a) for a in (means_np, chol_np, colors_np))
        with torch.no_grad():
            out = render(means.cuda(), chol.cuda(), colors.cuda(), height, width).cpu().numpy()
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    from dappled.models.splat.numba_cpu import render_numba_forward, to_uint8

    return to_uint8(render_numba_forward(means_np, chol_np, colors_np, height, width))



def decode_frame(payload: bytes, width: int, height: int, device: str = "cpu") -> np.ndarray:
    """A frame payload -> (H, W, 3) uint8 image."""
    q, cfg = unpack_gaussians(unpack_chunks(payload), width, height)
    with numba_threads(device):
        return render_quantized(q, cfg, width, height, device)

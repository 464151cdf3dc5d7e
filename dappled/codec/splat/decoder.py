"""The splat decoder: a frame payload to pixels by rasterization. On the CPU it stays in numpy and
numba (a decode never imports torch); CUDA renders with torch."""

from __future__ import annotations

import numpy as np

from dappled.codec.chunks import unpack_chunks
from dappled.codec.splat.format import unpack_gaussians
from dappled.codec.threads import numba_threads
from dappled.errors import LimitError
from dappled.models.splat.symbols import QuantConfig, QuantizedGaussians, dequantize_numpy

MAX_COVERAGE = 256  # mean number of Gaussian boxes over a pixel
COVERAGE_SLACK = 1 << 16  # pixel visits any stream may take (tiny images)


def check_render_work(means: np.ndarray, chol: np.ndarray, width: int, height: int) -> None:
    """LimitError when the Gaussians would cover the image more than MAX_COVERAGE times on
    average (the render's time and its row table's memory grow with that)."""
    from dappled.models.splat.numba_cpu import footprint

    pixels, rows = footprint(means, chol, height, width)
    limit = MAX_COVERAGE * width * height + COVERAGE_SLACK
    if pixels > limit or rows > limit:
        raise LimitError(f"the Gaussians cover the {width}x{height} image {pixels / (width * height):.0f} "
                         f"times over (at most {MAX_COVERAGE})")


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

"""The numba CPU renderer as a differentiable torch function (forward over tiles, backward over
Gaussians), for the encoders' fits. Kept apart from :mod:`numba_cpu` so that decoding, which
only needs the forward pass on numpy arrays, never imports torch."""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from dappled.models.splat.numba_cpu import _BWD_CHUNK, _as_arrays, _backward_gaussians, _forward_np


def _to_numpy(x: Tensor) -> np.ndarray:
    """CPU numpy view (or copy) of a tensor; dtypes numpy lacks (bfloat16) go via float32."""
    x = x.detach().cpu()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x.numpy()


class _RenderNumba(torch.autograd.Function):
    """Autograd wrapper: numba forward over tiles, numba backward over Gaussians."""

    @staticmethod
    def forward(ctx, means, chol, colors, height, width):
        m, lc, c = _as_arrays(*(_to_numpy(x) for x in (means, chol, colors)))
        out, state = _forward_np(m, lc, c, height, width)
        ctx.save_for_backward(means, chol, colors)  # autograd's in-place modification check
        ctx.state = state
        return torch.from_numpy(out).to(means.device)

    @staticmethod
    def backward(ctx, grad_out):
        means, chol, colors = ctx.saved_tensors
        m, lc, c = _as_arrays(*(_to_numpy(x) for x in (means, chol, colors)))
        con, boxes, order, row_off, spans, wr = ctx.state
        go = np.ascontiguousarray(_to_numpy(grad_out), dtype=m.dtype)
        g_means = np.empty_like(m)
        g_chol = np.empty_like(lc)
        g_colors = np.empty_like(c)
        with numba.parallel_chunksize(_BWD_CHUNK):
            _backward_gaussians(
                m, lc, con, c, boxes, order, row_off, spans, wr, go, g_means, g_chol, g_colors
            )
        dev = means.device
        return (
            torch.from_numpy(g_means).to(dev),
            torch.from_numpy(g_chol).to(dev),
            torch.from_numpy(g_colors).to(dev),
            None,
            None,
        )


def render_numba(means: Tensor, chol: Tensor, colors: Tensor, height: int, width: int) -> Tensor:
    """Render (height, width, 3) with the numba CPU backend; differentiable w.r.t. all inputs.

    float64 inputs are computed in float64, anything else in float32. Tensors on another
    device are rendered on the CPU and the result is moved back. Gaussians with non-finite
    parameters or a degenerate conic (sigma beyond ~1e9 px in float32) are skipped.
    """
    if height < 0 or width < 0:
        raise ValueError("height and width must be >= 0")
    return _RenderNumba.apply(means, chol, colors, int(height), int(width))

"""Dense torch renderer: the oracle every fast backend is tested against.

It evaluates every Gaussian at every pixel (no tiles, no boxes), so it is slow but obviously
right; gradients come from plain autograd. Gaussians are processed in chunks and each chunk
is checkpointed when gradients are needed, so memory stays bounded by the chunk size.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from dappled.models.splat.project import CUTOFF_M2, conics, mahalanobis2

_CHUNK_ELEMS = 1 << 22  # Gaussian x pixel evaluations per chunk


def _chunk_image(means: Tensor, con: Tensor, colors: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """Return the (P, 3) contribution of one chunk of Gaussians at pixel centres (px, py)."""
    dx = px - means[:, 0:1]
    dy = py - means[:, 1:2]
    m2 = mahalanobis2(con[:, 0:1], con[:, 1:2], con[:, 2:3], dx, dy)
    w = torch.where(m2 <= CUTOFF_M2, torch.exp(-0.5 * m2), torch.zeros_like(m2))
    return w.transpose(0, 1) @ colors


def render_reference(
    means: Tensor, chol: Tensor, colors: Tensor, height: int, width: int
) -> Tensor:
    """Render (height, width, 3) by dense accumulated summation of all Gaussians; differentiable.

    means (N, 2) in pixels, chol (N, 3) = (l11, l21, l22), colors (N, 3); same dtype/device.
    """
    n = means.shape[0]
    dev, dtype = means.device, means.dtype
    ys = torch.arange(height, device=dev, dtype=dtype) + 0.5
    xs = torch.arange(width, device=dev, dtype=dtype) + 0.5
    py = ys.repeat_interleave(width)[None, :]
    px = xs.repeat(height)[None, :]
    con = conics(chol)
    out = torch.zeros(height * width, 3, device=dev, dtype=dtype)
    step = max(1, _CHUNK_ELEMS // max(1, height * width))
    use_ckpt = (
        torch.is_grad_enabled() and n > step and any(t.requires_grad for t in (means, chol, colors))
    )
    for s in range(0, n, step):
        args = (means[s : s + step], con[s : s + step], colors[s : s + step], px, py)
        if use_ckpt:
            out = out + checkpoint(_chunk_image, *args, use_reentrant=False)
        else:
            out = out + _chunk_image(*args)
    if n == 0:
        out = out + 0.0 * (means.sum() + chol.sum() + colors.sum())
    return out.view(height, width, 3)

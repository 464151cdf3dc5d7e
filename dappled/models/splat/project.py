"""Shared geometry of the 2D Gaussian splat renderers: covariance, conics, boxes, tile bins.

Every backend evaluates the same function (see ``reference.py``)::

    image[p] = sum_i colors_i * w_i(p),   w_i(p) = exp(-m2 / 2) if m2 <= CUTOFF_M2 else 0,
    m2 = d^T Sigma_i^-1 d,   d = p - means_i,   Sigma_i = L_i L_i^T + COV_EPS * I,

with pixel (row i, col j) centred at (j + 0.5, i + 0.5). The helpers here are the
"project" and "intersect tiles" stages of a gsplat-style pipeline: they turn the raw
parameters into conics (inverse covariances), pixel bounding boxes of the m2 <= 9 ellipse
and per-tile lists of Gaussian indices (CSR, ascending index inside each tile).

Floating point contract: the conic and m2 formulas below are written with a fixed order of
operations (no fused multiply-add, ``b + b`` rather than ``2.0 * b``) and the numba backend
repeats them operation by operation, so in float32 on CPU every backend takes exactly the same
decision for the cutoff ``m2 <= 9``; only the summation order of the colours differs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dappled.models.splat.constants import COV_EPS, CUTOFF_M2, CUTOFF_SIGMAS, TILE_SIZE

__all__ = ["COV_EPS", "CUTOFF_M2", "CUTOFF_SIGMAS", "TILE_SIZE"]


def covariance(chol: Tensor) -> Tensor:
    """Return (N, 3) covariance entries (s_xx, s_xy, s_yy) of Sigma = L L^T + COV_EPS * I."""
    l11, l21, l22 = chol.unbind(-1)
    sxx = l11 * l11 + COV_EPS
    sxy = l11 * l21
    syy = l21 * l21 + l22 * l22 + COV_EPS
    return torch.stack((sxx, sxy, syy), dim=-1)


def conics(chol: Tensor) -> Tensor:
    """Return (N, 3) conics (a, b, c) with Sigma^-1 = [[a, b], [b, c]]; differentiable.

    The determinant is expanded as (l11 l22)^2 + eps (tr(L L^T) + eps), which equals
    s_xx s_yy - s_xy^2 exactly but has no cancellation for thin Gaussians and is >= eps^2.
    """
    l11, l21, l22 = chol.unbind(-1)
    sxx = l11 * l11 + COV_EPS
    sxy = l11 * l21
    syy = l21 * l21 + l22 * l22 + COV_EPS
    p = l11 * l22
    det = p * p + COV_EPS * (l11 * l11 + l21 * l21 + l22 * l22 + COV_EPS)
    return torch.stack((syy / det, -sxy / det, sxx / det), dim=-1)


def mahalanobis2(a: Tensor, b: Tensor, c: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Squared Mahalanobis distance a dx^2 + 2 b dx dy + c dy^2 in the canonical op order."""
    return a * dx * dx + (b + b) * dx * dy + c * dy * dy


def radii(chol: Tensor) -> Tensor:
    """Return (N, 2) exact axis-aligned half extents (3 sqrt(s_xx), 3 sqrt(s_yy)) of the support."""
    cov = covariance(chol)
    return CUTOFF_SIGMAS * torch.sqrt(cov[:, 0::2])


def bounding_boxes(means: Tensor, chol: Tensor, height: int, width: int) -> Tensor:
    """Return (N, 4) int64 pixel boxes (x0, y0, x1, y1), half-open, clipped to the image.

    A box holds every pixel whose centre lies within the exact axis-aligned extents of the
    m2 <= 9 ellipse, padded by up to one pixel against rounding; it is empty (x0 >= x1 or
    y0 >= y1) for Gaussians entirely off the image or with non-finite parameters.
    """
    with torch.no_grad():
        r = radii(chol)
        lo = torch.ceil(means - r - 0.5) - 1.0
        hi = torch.floor(means + r - 0.5) + 2.0
        limit = torch.tensor([width, height], dtype=means.dtype, device=means.device)
        lo = torch.nan_to_num(lo, nan=0.0).clamp(min=0.0)
        hi = torch.nan_to_num(hi, nan=0.0).clamp(min=0.0)
        lo = torch.minimum(lo, limit)
        hi = torch.minimum(hi, limit)
        return torch.cat((lo, hi), dim=-1).to(torch.int64)


def tile_grid(height: int, width: int, tile: int = TILE_SIZE) -> tuple[int, int]:
    """Return (tiles_y, tiles_x), the number of tile rows and columns covering the image."""
    return (height + tile - 1) // tile, (width + tile - 1) // tile


def bin_tiles(
    boxes: Tensor, height: int, width: int, tile: int = TILE_SIZE
) -> tuple[Tensor, Tensor]:
    """Bin Gaussians into tiles by bounding box; return CSR arrays (offsets, ids), int64.

    Tiles are numbered row-major (t = ty * tiles_x + tx); the Gaussians of tile t are
    ``ids[offsets[t]:offsets[t + 1]]`` in ascending index order (a stable sort keeps it),
    which is what makes per-pixel sums order-independent of the backend's parallelism.
    """
    tiles_y, tiles_x = tile_grid(height, width, tile)
    n_tiles = tiles_y * tiles_x
    dev = boxes.device
    x0, y0, x1, y1 = boxes.unbind(-1)
    nonempty = (x1 > x0) & (y1 > y0)
    tx0 = x0 // tile
    ty0 = y0 // tile
    nx = torch.where(nonempty, (x1 - 1) // tile + 1 - tx0, 0)
    ny = torch.where(nonempty, (y1 - 1) // tile + 1 - ty0, 0)
    counts = nx * ny
    total = int(counts.sum())
    if total == 0:
        return torch.zeros(n_tiles + 1, dtype=torch.int64, device=dev), torch.zeros(
            0, dtype=torch.int64, device=dev
        )
    gid = torch.repeat_interleave(torch.arange(boxes.shape[0], device=dev), counts)
    starts = torch.cumsum(counts, 0) - counts
    k = torch.arange(total, device=dev) - starts[gid]
    nxg = nx[gid]
    tile_id = (ty0[gid] + k // nxg) * tiles_x + tx0[gid] + k % nxg
    tile_id, perm = torch.sort(tile_id, stable=True)
    ids = gid[perm]
    offsets = torch.zeros(n_tiles + 1, dtype=torch.int64, device=dev)
    offsets[1:] = torch.cumsum(torch.bincount(tile_id, minlength=n_tiles), 0)
    return offsets, ids

"""Tile-based torch renderer: runs on CUDA when the tensors live there, on CPU for tests.

Per tile it gathers a padded list of the Gaussians whose boxes touch it and evaluates them at
the tile's 16x16 pixels in one batched tensor op; gradients come from autograd. Tiles are
sorted by list length and processed in batches of similar length (little padding), each batch
bounded to ``max_batch_elems`` Gaussian x pixel evaluations and checkpointed when gradients
are needed, so peak memory does not grow with the scene.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from dappled.models.splat.project import (
    CUTOFF_M2,
    TILE_SIZE,
    bin_tiles,
    bounding_boxes,
    conics,
    mahalanobis2,
    tile_grid,
)

_T = TILE_SIZE


def _tile_batch(
    means: Tensor, con: Tensor, colors: Tensor, idx: Tensor, valid: Tensor, origin: Tensor
) -> Tensor:
    """Render a batch of B tiles: idx/valid (B, K) padded Gaussian lists, origin (B, 2) px.

    Returns (B, T*T, 3), pixels row-major inside each tile.
    """
    dtype = means.dtype
    lin = torch.arange(_T * _T, device=means.device)
    px = (origin[:, 0:1] + lin % _T).to(dtype) + 0.5  # (B, P)
    py = (origin[:, 1:2] + lin // _T).to(dtype) + 0.5
    m = means[idx]  # (B, K, 2)
    k = con[idx]  # (B, K, 3)
    dx = px[:, :, None] - m[:, None, :, 0]  # (B, P, K)
    dy = py[:, :, None] - m[:, None, :, 1]
    m2 = mahalanobis2(k[:, None, :, 0], k[:, None, :, 1], k[:, None, :, 2], dx, dy)
    keep = (m2 <= CUTOFF_M2) & valid[:, None, :]
    w = torch.where(keep, torch.exp(-0.5 * m2), torch.zeros_like(m2))
    return torch.bmm(w, colors[idx])


def render_torch(
    means: Tensor,
    chol: Tensor,
    colors: Tensor,
    height: int,
    width: int,
    max_batch_elems: int = 1 << 22,
) -> Tensor:
    """Render (height, width, 3) with per-tile gathered Gaussians; differentiable by autograd.

    Works on any device (meant for CUDA); ``max_batch_elems`` bounds the Gaussian x pixel
    evaluations held at once.
    """
    dev, dtype = means.device, means.dtype
    tiles_y, tiles_x = tile_grid(height, width)
    n_tiles = tiles_y * tiles_x
    con = conics(chol)
    with torch.no_grad():
        boxes = bounding_boxes(means, chol, height, width)
        offsets, ids = bin_tiles(boxes, height, width)
        counts = offsets[1:] - offsets[:-1]
        order = torch.argsort(counts, descending=True, stable=True)
        sorted_counts = counts[order].tolist()
    n_busy = sum(1 for k in sorted_counts if k > 0)  # tiles with at least one Gaussian
    use_ckpt = torch.is_grad_enabled() and any(t.requires_grad for t in (means, con, colors))
    pix = _T * _T
    parts: list[Tensor] = []
    start = 0
    while start < n_busy:
        kmax = sorted_counts[start]
        nb = max(1, max_batch_elems // (kmax * pix))
        stop = min(n_busy, start + nb)
        tiles = order[start:stop]
        with torch.no_grad():
            slot = torch.arange(kmax, device=dev)
            valid = slot[None, :] < counts[tiles][:, None]
            pos = (offsets[tiles][:, None] + slot[None, :]).clamp(max=max(ids.numel() - 1, 0))
            idx = torch.where(valid, ids[pos], torch.zeros_like(pos))
            origin = torch.stack((tiles % tiles_x, tiles // tiles_x), dim=-1) * _T
        args = (means, con, colors, idx, valid, origin)
        if use_ckpt and (start > 0 or stop < n_busy):  # several batches: bound the memory
            parts.append(checkpoint(_tile_batch, *args, use_reentrant=False))
        else:
            parts.append(_tile_batch(*args))
        start = stop
    out = torch.zeros(n_tiles, pix, 3, device=dev, dtype=dtype)
    if parts:
        out = out.index_copy(0, order[:start], torch.cat(parts))
    else:  # nothing visible: keep the graph connected so backward() still works
        out = out + 0.0 * (means.sum() + chol.sum() + colors.sum())
    img = out.view(tiles_y, tiles_x, _T, _T, 3).permute(0, 2, 1, 3, 4)
    return img.reshape(tiles_y * _T, tiles_x * _T, 3)[:height, :width].contiguous()

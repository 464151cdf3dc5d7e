"""The region-adaptive transform (RAT, after SegPIC, ECCV 2024) and the region maps it reads.

A region map is an integer label per pixel. Features are averaged per region (the region
*centers*); a small MLP turns each center into a depthwise 3x3 kernel and an affine scale and
shift, which are applied to the pixels of that region, so the transform adapts to the content
of each region. At training time the regions are human segmentations (privileged
information); at inference both sides use a grid of square cells, which costs no bits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def grid_labels(height: int, width: int, cell: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W) int64 region ids of a grid of ``cell`` x ``cell`` squares, in raster order."""
    if cell < 1:
        raise ValueError(f"grid cell must be positive, got {cell}")
    cols = -(-width // cell)
    ys = torch.arange(height, device=device) // cell
    xs = torch.arange(width, device=device) // cell
    return ys[:, None] * cols + xs[None, :]


def grid_labels_at(height: int, width: int, cell: int, stride: int, row0: int = 0,
                   row1: int | None = None) -> torch.Tensor:
    """Rows ``row0:row1`` of ``downsample_labels(grid_labels(stride * height, stride * width,
    cell), height, width)``, (rows, width) int64, without building the full-resolution map: the
    grid's labels at a feature resolution ``stride`` times coarser, for a band of rows."""
    if cell < 1:
        raise ValueError(f"grid cell must be positive, got {cell}")
    row1 = height if row1 is None else row1
    cols = -(-(width * stride) // cell)
    ys = (torch.arange(row0, row1) * stride + stride // 2) // cell
    xs = (torch.arange(width) * stride + stride // 2) // cell
    return ys[:, None] * cols + xs[None, :]


def downsample_labels(labels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Nearest-neighbour label map at a feature resolution ``height`` x ``width`` (integer stride)."""
    h, w = labels.shape[-2:]
    sy, sx = max(1, h // height), max(1, w // width)
    out = labels[..., sy // 2 :: sy, sx // 2 :: sx][..., :height, :width]
    if out.shape[-2:] != (height, width):
        raise ValueError(f"label map {h}x{w} does not cover features {height}x{width}")
    return out


class RegionAdaptiveTransform(nn.Module):
    """Residual block whose depthwise kernel and affine modulation depend on the pixel's region.

    ``forward(x, labels)``: x (B, C, H, W), labels (B, H, W) int64 at the same resolution (or
    None: the whole image is one region). Starts as the identity (zero-initialised output
    projection), so it can only help the transform it is inserted into.
    """

    def __init__(self, channels: int, kernel_size: int = 3, hidden: int | None = None,
                 groups: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.k = kernel_size
        # one dynamic kernel per group of 4 channels: a quarter of the per-pixel parameters
        self.groups = groups or max(1, channels // 4)
        if channels % self.groups:
            raise ValueError(f"{channels} channels do not split into {self.groups} groups")
        hidden = hidden or channels
        kk = kernel_size * kernel_size
        self.n_params = self.groups * kk + 2 * channels
        self.center_proj = nn.Conv2d(channels, channels, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, self.n_params))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.base = nn.Parameter(torch.randn(channels, kk) / kk)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def region_centers(self, x: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
        """(B, K, C) mean of the projected features over each region (zeros for empty ones)."""
        b, c = x.shape[:2]
        sums, counts = x.new_zeros(b, k, c), x.new_zeros(b, k)
        self.add_to_centers(x, labels, sums, counts)
        return sums / counts.clamp_min(1.0)[..., None]

    def add_to_centers(self, x: torch.Tensor, labels: torch.Tensor, sums: torch.Tensor,
                       counts: torch.Tensor) -> None:
        """Add the projected features of ``x`` (B, C, h, W) to the per-region ``sums`` (B, K, C)
        and their pixel ``counts`` (B, K), in place: a band of rows at a time gives the centers
        of an image too tall to hold whole (``sums / counts``)."""
        b, c, h, w = x.shape
        flat = labels.reshape(b, h * w)
        feats = self.center_proj(x).flatten(2).transpose(1, 2)  # B, HW, C
        sums.scatter_add_(1, flat[..., None].expand(b, h * w, c), feats)
        counts.scatter_add_(1, flat, feats.new_ones(b, h * w))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        if labels is None:
            labels = torch.zeros(b, h, w, dtype=torch.long, device=x.device)
        if labels.shape != (b, h, w):
            raise ValueError(f"labels {tuple(labels.shape)} do not match features {(b, h, w)}")
        k = int(labels.max()) + 1
        return self.modulate(x, labels, self.region_centers(x, labels, k))

    def modulate(self, x: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """The transform of ``x`` (B, C, H, W) with its regions' ``centers`` (B, K, C) given: every
        output pixel depends on its 3x3 neighbourhood and its region's center only, so a band of
        rows (with one more row each side) gives the same rows as the whole."""
        b, c, h, w = x.shape
        params = self.mlp(centers)  # B, K, P
        # The per-pixel kernels cost (9 + P / C) floats per feature value: apply them a band of
        # rows at a time so large images stay within a bounded working set.
        rows = max(1, self.CHUNK_VALUES // max(1, b * c * w * (self.k * self.k + 3)))
        if rows >= h:
            y = self._modulate(x, labels, params)
        else:
            pad = self.k // 2
            xp = F.pad(x, (pad, pad, pad, pad))
            y = torch.cat([self._modulate(xp[:, :, r0 : min(h, r0 + rows) + 2 * pad],
                                          labels[:, r0 : r0 + rows], params, padded=True)
                           for r0 in range(0, h, rows)], dim=2)
        return x + self.out(y)

    CHUNK_VALUES = 1 << 24

    def _modulate(self, x: torch.Tensor, labels: torch.Tensor, params: torch.Tensor,
                  padded: bool = False) -> torch.Tensor:
        """Region-dependent depthwise conv + affine on the rows of ``labels`` (x already padded
        by k // 2 on every side if ``padded``)."""
        b, c = x.shape[:2]
        h, w = labels.shape[-2:]
        kk, g = self.k * self.k, self.groups
        flat = labels.reshape(b, h * w)
        pix = torch.gather(params, 1, flat[..., None].expand(b, h * w, self.n_params)).transpose(1, 2)
        kern = pix[:, : g * kk].reshape(b, g, 1, kk, h * w) + self.base.view(1, g, c // g, kk, 1)
        gamma = pix[:, g * kk : g * kk + c]
        beta = pix[:, g * kk + c :]
        cols = F.unfold(x, self.k, padding=0 if padded else self.k // 2).view(b, g, c // g, kk, h * w)
        y = (cols * kern).sum(3).reshape(b, c, h * w) * (1.0 + gamma) + beta
        return y.view(b, c, h, w)

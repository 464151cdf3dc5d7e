"""2D Gaussian splat renderers (GaussianImage-style accumulated summation, no sorting).

Backends: ``render_reference`` (dense torch oracle), ``render_numba`` (tile-based CPU, hand
written backward; ``render_numba_forward`` for decoding), ``render_torch`` (tile gather, runs
on CUDA). ``render`` picks torch for CUDA tensors and numba otherwise.
"""

from __future__ import annotations

from torch import Tensor

from dappled.models.splat.numba_cpu import project_numba, render_numba, render_numba_forward
from dappled.models.splat.project import (
    COV_EPS,
    CUTOFF_M2,
    CUTOFF_SIGMAS,
    TILE_SIZE,
    bin_tiles,
    bounding_boxes,
    conics,
    covariance,
    radii,
    tile_grid,
)
from dappled.models.splat.reference import render_reference
from dappled.models.splat.torch_tiles import render_torch

__all__ = [
    "COV_EPS",
    "CUTOFF_M2",
    "CUTOFF_SIGMAS",
    "TILE_SIZE",
    "bin_tiles",
    "bounding_boxes",
    "conics",
    "covariance",
    "project_numba",
    "radii",
    "render",
    "render_numba",
    "render_numba_forward",
    "render_reference",
    "render_torch",
    "tile_grid",
]

_BACKENDS = {"numba": render_numba, "torch": render_torch, "reference": render_reference}


def render(
    means: Tensor, chol: Tensor, colors: Tensor, height: int, width: int, backend: str = "auto"
) -> Tensor:
    """Render (height, width, 3); backend "auto" uses torch on CUDA tensors, numba otherwise.

    Other choices: "numba", "torch", "reference".
    """
    if backend == "auto":
        backend = "torch" if means.is_cuda else "numba"
    try:
        fn = _BACKENDS[backend]
    except KeyError:
        raise ValueError(
            f"unknown splat backend {backend!r}; expected one of {['auto', *_BACKENDS]}"
        ) from None
    return fn(means, chol, colors, height, width)

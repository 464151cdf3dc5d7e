"""2D Gaussian splat renderers (GaussianImage-style accumulated summation, no sorting).

Backends: ``render_reference`` (dense torch oracle), ``render_numba`` (tile-based CPU, hand
written backward; ``render_numba_forward`` for decoding), ``render_torch`` (tile gather, runs
on CUDA). ``render`` picks torch for CUDA tensors and numba otherwise.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dappled.models.splat.constants import COV_EPS, CUTOFF_M2, CUTOFF_SIGMAS, TILE_SIZE

if TYPE_CHECKING:
    from torch import Tensor

# Loaded on first use (PEP 562), so that the decoder's CPU path, which imports
# ``dappled.models.splat.numba_cpu``, does not pay for importing torch.
_LAZY = {
    "project_numba": "numba_cpu",
    "render_numba_forward": "numba_cpu",
    "render_numba": "numba_autograd",
    "bin_tiles": "project",
    "bounding_boxes": "project",
    "conics": "project",
    "covariance": "project",
    "radii": "project",
    "tile_grid": "project",
    "render_reference": "reference",
    "render_torch": "torch_tiles",
}

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

_BACKENDS = {"numba": "render_numba", "torch": "render_torch", "reference": "render_reference"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def render(
    means: Tensor, chol: Tensor, colors: Tensor, height: int, width: int, backend: str = "auto"
) -> Tensor:
    """Render (height, width, 3); backend "auto" uses torch on CUDA tensors, numba otherwise.

    Other choices: "numba", "torch", "reference".
    """
    if backend == "auto":
        backend = "torch" if means.is_cuda else "numba"
    try:
        fn = __getattr__(_BACKENDS[backend])
    except KeyError:
        raise ValueError(
            f"unknown splat backend {backend!r}; expected one of {['auto', *_BACKENDS]}"
        ) from None
    return fn(means, chol, colors, height, width)

"""rat: learned transform codec (mean-scale hyperprior on CompressAI) with region-adaptive
transforms (SegPIC), variable rate through gain units, and a shallow decoder option."""

from dappled.models.rat.model import STRIDE, RatConfig, RatModel, ShallowSynthesis, rate_distortion
from dappled.models.rat.regions import RegionAdaptiveTransform, downsample_labels, grid_labels

__all__ = [
    "STRIDE",
    "RatConfig",
    "RatModel",
    "RegionAdaptiveTransform",
    "ShallowSynthesis",
    "downsample_labels",
    "grid_labels",
    "rate_distortion",
]

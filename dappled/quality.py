"""PSNR and MSE, the quality figures every layer reports (the codecs' encoders, the fitters, the
evaluation): a ground module that imports nothing of Dappled; ``dappled.eval.metrics`` re-exports
it beside the heavier metrics."""

from __future__ import annotations

import math

import numpy as np


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over all pixels and channels, on the 0..255 scale."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (RGB, whole image, peak 255); inf when identical."""
    m = mse(a, b)
    return math.inf if m == 0 else 10.0 * math.log10(255.0**2 / m)


def psnr_from_mse(mse_value: float, peak: float = 1.0, floor: float = 1e-12) -> float:
    """PSNR in dB from an MSE measured with this peak (1.0 for [0, 1] images); the MSE is
    clamped to `floor` so a perfect fit reports a large finite figure."""
    return 10.0 * math.log10(peak * peak / max(mse_value, floor))

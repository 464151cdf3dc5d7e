"""PSNR and MS-SSIM against the reference implementations, and MS-SSIM on any image size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as reference_ms_ssim
from skimage.metrics import peak_signal_noise_ratio

from dappled.eval.metrics import ms_ssim, ms_ssim_window, mse, psnr


def _noisy(shape: tuple[int, int, int], sigma: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(np.float64) + rng.normal(0, sigma, shape), 0, 255).round().astype(np.uint8)
    return a, b


@pytest.mark.parametrize("sigma", [0.5, 3.0, 20.0])
def test_psnr_matches_skimage(sigma: float) -> None:
    a, b = _noisy((37, 53, 3), sigma)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)


def test_psnr_identical_and_mismatch() -> None:
    a, _ = _noisy((8, 8, 3), 1.0)
    assert psnr(a, a) == math.inf
    assert mse(a, a) == 0.0
    with pytest.raises(ValueError):
        psnr(a, a[:4])


def test_ms_ssim_matches_pytorch_msssim_on_standard_sizes() -> None:
    a, b = _noisy((192, 256, 3), 8.0)
    ref = reference_ms_ssim(torch.from_numpy(a).permute(2, 0, 1)[None].float(),
                            torch.from_numpy(b).permute(2, 0, 1)[None].float(), data_range=255)
    assert ms_ssim(a, b) == pytest.approx(float(ref), abs=1e-6)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_falls_with_noise() -> None:
    values = [ms_ssim(*_noisy((170, 170, 3), s)) for s in (1.0, 5.0, 25.0)]
    assert values[0] > values[1] > values[2]


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 40, 3), (20, 20, 3), (33, 500, 3), (100, 120, 3),
                                   (160, 161, 3)])
def test_ms_ssim_any_size(shape: tuple[int, int, int]) -> None:
    a, b = _noisy(shape, 6.0)
    v = ms_ssim(a, b)
    assert 0.0 < v <= 1.0
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_window() -> None:
    assert ms_ssim_window(512, 768) == 11
    assert ms_ssim_window(161, 1000) == 11
    assert ms_ssim_window(160, 1000) == 9
    assert ms_ssim_window(40, 40) == 3

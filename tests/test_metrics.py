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


def test_yuv_psnr_from_rgb_frames_is_the_psnr_of_the_codecs_own_planes() -> None:
    """A real x264 encode of a 4:2:0 clip: the weighted PSNR-YUV that eval --video computes from
    the RGB frames (as PyAV gives them) agrees with the PSNR of the coded Y, U, V planes."""
    import io

    import av

    from dappled.datasets import SAMPLE_IMAGE, load_image
    from dappled.eval.metrics import yuv_psnr

    base = load_image(SAMPLE_IMAGE)[64:208, 96:272]
    src = [av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(base, 3 * i, axis=1)), format="rgb24")
           .reformat(format="yuv420p") for i in range(3)]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = base.shape[1], base.shape[0], "yuv420p", {"crf": "32"}
        for f in src:
            out.mux(s.encode(f))
        out.mux(s.encode())
    buf.seek(0)
    with av.open(buf) as inp:
        dec = list(inp.decode(video=0))
    h = base.shape[0]
    for a, b in zip(src, dec, strict=True):
        pa, pb = a.to_ndarray().astype(float), b.to_ndarray().astype(float)
        planes = [(slice(0, h), 6), (slice(h, h + h // 4), 1), (slice(h + h // 4, None), 1)]
        want = sum(k * 10 * math.log10(255**2 / np.mean((pa[r] - pb[r]) ** 2)) for r, k in planes) / 8
        y, u, v, weighted = yuv_psnr(a.to_ndarray(format="rgb24"), b.to_ndarray(format="rgb24"))
        assert weighted == pytest.approx(want, abs=0.1)
        assert y < min(u, v) and weighted > psnr(a.to_ndarray(format="rgb24"), b.to_ndarray(format="rgb24"))


def test_yuv_psnr_of_identical_frames_is_capped() -> None:
    from dappled.eval.metrics import yuv_psnr

    img = np.random.default_rng(0).integers(0, 256, (17, 33, 3), dtype=np.uint8)
    assert yuv_psnr(img, img) == (100.0, 100.0, 100.0, 100.0)
    with pytest.raises(ValueError):
        yuv_psnr(img, img[:16])

"""Image quality metrics on 8-bit RGB images."""

from __future__ import annotations

import numpy as np

from dappled.quality import mse, psnr, psnr_from_mse

__all__ = ["MS_SSIM_WEIGHTS", "YUV_WEIGHTS", "ms_ssim", "ms_ssim_window", "mse", "psnr", "psnr_from_mse",
           "rgb_to_yuv420", "yuv_psnr"]


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli, Bovik 2003


def ms_ssim_window(height: int, width: int) -> int:
    """Gaussian window size for 5-scale MS-SSIM of an image this size (3..11, odd).

    The standard 11-tap window needs more than 160 px on the shorter side (four 2x
    downsamplings, window inside the coarsest scale). Smaller images get the largest odd
    window that fits, down to 3 (which needs more than 32 px); Kodak and BSDS500 always use 11.
    """
    side = min(height, width)
    win = 11
    while win > 3 and side <= (win - 1) * 16:
        win -= 2
    return win


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two uint8 RGB images: pytorch-msssim on 0..255 floats, data_range=255.

    Five scales with the standard weights, per-channel values averaged over RGB; the window
    shrinks for images under 161 px a side (see :func:`ms_ssim_window`), and images 32 px or
    less a side are first enlarged (pixel replication, both alike) by the smallest integer
    factor that makes them 33 px, so every size has a value.
    """
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) images, got {a.shape}")
    side = min(a.shape[0], a.shape[1])
    if side <= 32:
        k = -(-33 // side)
        a = a.repeat(k, axis=0).repeat(k, axis=1)
        b = b.repeat(k, axis=0).repeat(k, axis=1)
    win = ms_ssim_window(a.shape[0], a.shape[1])

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None]

    # One thread: these small separable convolutions gain nothing from more, and on a busy
    # machine OpenMP's spinning threads made them 10-50x slower. The caller's setting is restored.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            value = _ms_ssim(tensor(a), tensor(b), data_range=255, size_average=True, win_size=win,
                             weights=list(MS_SSIM_WEIGHTS))
    finally:
        torch.set_num_threads(threads)
    return float(value)


YUV_WEIGHTS = (6.0, 1.0, 1.0)  # Y, U, V: the weighted PSNR-YUV of the video coding test conditions


def rgb_to_yuv420(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-bit RGB -> BT.601 limited-range Y (full size) and Cb, Cr (2x2 means, 4:2:0; an odd edge
    is repeated), as floats: the matrix PyAV/swscale uses by default when an SD 4:2:0 video is
    read as RGB. (Its fast integer path leaves a round trip's Y ~1 lower, an offset that cancels
    in a difference of two frames.)"""
    x = image.astype(np.float64) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128.0 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128.0 + 112.0 * r - 93.786 * g - 18.214 * b

    def half(c: np.ndarray) -> np.ndarray:
        h, w = c.shape
        c = np.pad(c, ((0, h % 2), (0, w % 2)), mode="edge")
        return 0.25 * (c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2])

    return y, half(cb), half(cr)


def yuv_psnr(a: np.ndarray, b: np.ndarray, cap: float = 100.0) -> tuple[float, float, float, float]:
    """PSNR (dB, peak 255) of two uint8 RGB frames in Y, U and V (4:2:0, :func:`rgb_to_yuv420`)
    and their weighted mean (6 Y + U + V) / 8, the figure video codecs are compared by; each
    plane's PSNR is capped at `cap` (identical planes)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    planes = []
    for pa, pb in zip(rgb_to_yuv420(a), rgb_to_yuv420(b), strict=True):
        m = float(np.mean((pa - pb) ** 2))
        planes.append(cap if m <= 0 else min(cap, 10.0 * np.log10(255.0**2 / m)))
    weighted = sum(w * p for w, p in zip(YUV_WEIGHTS, planes, strict=True)) / sum(YUV_WEIGHTS)
    return planes[0], planes[1], planes[2], float(weighted)

"""Image quality metrics on 8-bit RGB images."""

from __future__ import annotations

import numpy as np

from dappled.quality import mse, psnr, psnr_from_mse

__all__ = ["MS_SSIM_WEIGHTS", "ms_ssim", "ms_ssim_window", "mse", "psnr", "psnr_from_mse"]


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

"""Synthetic video clips for the video and streaming tests (no data files needed)."""

from __future__ import annotations

import numpy as np

# short fits: the tests check the stream and the decoders, not the encoder's quality
FAST = {"i_iterations": 60, "i_refit_iterations": 10, "p_iterations": 4, "p_solve_iters": 2}


def moving_pattern(n: int, w: int = 64, h: int = 48, dx: int = 2) -> list[np.ndarray]:
    """`n` RGB frames: drifting color ramps and a yellow block moving `dx` px right, 1 px down
    per frame."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = (xx * 4 + t * 3) % 256
        img[..., 1] = (yy * 5) % 256
        img[..., 2] = 90
        x0 = 20 if dx == 2 else 12
        img[10 + t : 22 + t, x0 + dx * t : x0 + 14 + dx * t] = (240, 200, 30)
        frames.append(img)
    return frames

"""Which interpolation predicts better from a degraded reference (issue 17, payload 5): bikes
frames t-1 -> t, the reference with Gaussian noise (sd 3: ~38.5 dB, like a decoded frame at a
high rate) or blurred (sigma 0.7 px, like a low-rate one); motion searched with each filter.

    PYTHONPATH=. .venv/bin/python benchmarks/fieldv_interpolation.py [CLIP] [FRAME ...]
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.ndimage import gaussian_filter

from dappled.codec.motion import compensate, search_motion
from dappled.datasets.video import load_clip
from dappled.quality import psnr


def main() -> None:
    """One line per (frame, reference, filter): the reference's PSNR, vectors, prediction PSNR."""
    path = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/video/bikes.mp4"
    frames = [int(a) for a in sys.argv[2:]] or [10, 29]
    clip = load_clip(path, 0, max(frames) + 1)
    rng = np.random.default_rng(0)
    for t in frames:
        prev, cur = clip[t - 1].astype(float), clip[t]
        for kind in ("noise", "blur"):
            if kind == "noise":
                ref = np.clip(prev + rng.normal(0, 3, prev.shape), 0, 255).round().astype(np.uint8)
            else:
                ref = np.clip(gaussian_filter(prev, (0.7, 0.7, 0)), 0, 255).round().astype(np.uint8)
            for filt in ("cubic", "sharp8"):
                m = search_motion(ref, cur, 16, 0.0005, search=7, frac_bits=2, max_vectors=64, subpel=2,
                                  filt=filt)
                pred = compensate(ref, m, filt=filt)
                print(f"frame {t} {kind} (reference {psnr(clip[t - 1], ref):.2f} dB) {filt}: "
                      f"{len(m.vectors)} vectors, prediction {psnr(cur, pred):.2f} dB")


if __name__ == "__main__":
    main()

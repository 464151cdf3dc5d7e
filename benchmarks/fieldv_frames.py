"""Per-frame figures of one field video encode (issue 17 ablations): bytes, type and PSNR of each
frame, and of a predicted frame the PSNR of its motion-compensated prediction alone (equal to its
PSNR when it went without a residual), then the clip's kbps, mean PSNR and CPU seconds per frame.

    PYTHONPATH=. .venv/bin/python benchmarks/fieldv_frames.py CLIP N quality=4 gop=10 effort=fast [KEY=V]

KEY=V are encode_video's arguments (kbps, quality, gop) and the codec's -O options; the clip is
taken as 30 fps (carphone's rate).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from dappled.codec.video import decode_video, encode_video
from dappled.datasets.video import load_clip
from dappled.quality import psnr


def main() -> None:
    """Encode, decode, print per-frame lines and one JSON summary line."""
    clip_path, n = sys.argv[1], int(sys.argv[2])
    args = dict(a.split("=", 1) for a in sys.argv[3:])
    kw: dict[str, object] = {}
    for k, v in args.items():
        kw[k] = float(v) if k == "kbps" else int(v) if k in ("quality", "gop") else v
    clip = load_clip(clip_path, 0, n)
    c0 = time.process_time()
    res = encode_video(clip, 30, "field", **kw)  # type: ignore[arg-type]
    cpu = time.process_time() - c0
    out = decode_video(res.data)
    ps = [psnr(a, b) for a, b in zip(clip, out, strict=True)]
    for s, p in zip(res.stats, ps, strict=True):
        pred = f"prediction {s.prediction_psnr:.2f} {s.interpolation}" if s.type == 1 else ""
        lam = f"lambda {s.lam:.2e} weight {s.weight:.2f}" if getattr(s, "lam", 0) else ""
        print(s.frame, "IP"[s.type], s.bytes, s.budget, f"{p:.2f}", f"{s.seconds:.1f}", pred, lam)
    kbps = 8 * len(res.data) / 1000 / (n / 30)
    print(json.dumps({"args": args, "kbps": round(kbps, 2), "psnr_mean": round(float(np.mean(ps)), 3),
                      "cpu_per_frame": round(cpu / n, 2), "bytes": len(res.data)}))


if __name__ == "__main__":
    main()

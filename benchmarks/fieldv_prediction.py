"""Where a field video's predicted frames get their picture (issue 17): per frame, its type,
bytes, decoded PSNR and the PSNR of its motion-compensated prediction alone (equal when the frame
went without a residual), then the clip's kbps, mean PSNR and CPU seconds per frame.

    PYTHONPATH=. .venv/bin/python benchmarks/fieldv_prediction.py CLIP N quality=4 gop=10 effort=fast [KEY=V]

KEY=V are encode_video's arguments (kbps, quality, gop) and the codec's -O options; the clip is
taken as 30 fps (carphone's rate).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

import dappled.codec.field.video.encoder as video_encoder
from dappled.codec.video import encode_video
from dappled.datasets.video import load_clip
from dappled.quality import psnr


def main() -> None:
    """Encode with the encoder's motion compensation recorded, print a line per frame and a
    JSON summary."""
    clip_path, n = sys.argv[1], int(sys.argv[2])
    args = dict(a.split("=", 1) for a in sys.argv[3:])
    kw: dict[str, Any] = {}
    for k, v in args.items():
        kw[k] = float(v) if k == "kbps" else int(v) if k in ("quality", "gop") else v
    clip = load_clip(clip_path, 0, n)
    preds: list[np.ndarray] = []
    compensate = video_encoder.compensate

    def recording(prev: np.ndarray, motion: Any, **options: Any) -> np.ndarray:
        preds.append(compensate(prev, motion, **options))
        return preds[-1]

    video_encoder.compensate = recording  # type: ignore[assignment]
    c0 = time.process_time()
    res = encode_video(clip, 30, "field", **kw)
    cpu = time.process_time() - c0
    k = 0
    for s in res.stats:
        pred = ""
        if s.type == 1:
            pred = f"{psnr(clip[s.frame], preds[k]):.2f}"
            k += 1
        print(s.frame, "IP"[s.type], s.bytes, f"{s.psnr:.2f}", "prediction", pred, "vectors", s.vectors)
    print(json.dumps({"args": args, "kbps": round(8 * len(res.data) / 1000 / (n / 30), 2),
                      "psnr_mean": round(float(np.mean([s.psnr for s in res.stats])), 3),
                      "cpu_per_frame": round(cpu / n, 2)}))


if __name__ == "__main__":
    main()

"""Video coded by groups: one process against Ray tasks (docs/results.md, "Scale-out on Ray").

    .venv/bin/python benchmarks/gop_bench.py --clip ../shared/data/video/bikes.mp4 --frames 100 \
        --gop 25 --kbps 435 --ray 127.0.0.1:6390

Prints, per run, the wall time, the sum of the groups' own encode times (what the workers spent;
on an idle machine it stays the same however the groups are spread) and the load average, and
whether the streams are the same bytes.
"""

from __future__ import annotations

import argparse
import os
import time
from fractions import Fraction

from dappled.datasets.video import load_clip, probe_video
from dappled.scale.gops import encode_video_gops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="../shared/data/video/bikes.mp4")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--gop", type=int, default=25)
    ap.add_argument("--kbps", type=float, default=435)
    ap.add_argument("--ray", required=True, help="address of a running cluster (HOST:PORT) or local")
    args = ap.parse_args()
    fps: Fraction = probe_video(args.clip).fps
    frames = load_clip(args.clip, 0, args.frames)
    h, w = frames[0].shape[:2]
    print(f"{args.clip}: {len(frames)} frames {w}x{h}, GOP {args.gop}, {args.kbps} kbps, "
          f"{os.cpu_count()} cores")
    print("| run | wall (s) | sum of group encode times (s) | load average at start | bytes |")
    print("|---|---:|---:|---:|---:|")
    data = {}
    for label, kwargs in (("one process", {"jobs": 1}), (f"Ray tasks ({args.ray})", {"ray": args.ray})):
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = encode_video_gops(frames, fps, kbps=args.kbps, gop=args.gop, **kwargs)
        wall = time.perf_counter() - t0
        busy = sum(s.seconds for s in res.stats)
        data[label] = res.data
        print(f"| {label} | {wall:.1f} | {busy:.1f} | {load:.2f} | {len(res.data)} |")
    a, b = data.values()
    print(f"\nidentical bytes: {'yes' if a == b else 'NO'}")


if __name__ == "__main__":
    main()

"""Video coded by groups: one process against Ray tasks (docs/results.md, "Scale-out on Ray").

    .venv/bin/python benchmarks/gop_bench.py --clip ../shared/data/video/bikes.mp4 --frames 100 \
        --gop 25 --kbps 435 --ray 127.0.0.1:6390
    # the field video codec, two local processes
    .venv/bin/python benchmarks/gop_bench.py --clip ../shared/data/video/carphone_pristine.mp4 \
        --frames 20 --gop 10 --kbps 152.1 --codec field -O effort=fast --jobs 2

    # quality of coded streams of the same clip: mean PSNR, and PSNR of each group's first frame
    .venv/bin/python benchmarks/gop_bench.py --clip ../shared/data/video/bikes.mp4 --frames 100 \
        --gop 25 --psnr runs/issue11/bikes-one.dpl runs/issue11/bikes-chained.dpl

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
    ap.add_argument("--codec", default=None, help="the codec (default: the default codec)")
    ap.add_argument("-O", dest="options", action="append", default=[], metavar="KEY=VALUE",
                    help="the codec's options, as `dappled encode -O`")
    ap.add_argument("--jobs", type=int, default=0, help="local processes instead of --ray (0: use --ray)")
    ap.add_argument("--ray", help="address of a running cluster (HOST:PORT) or local")
    ap.add_argument("--psnr", nargs="+", metavar="DPL", help="only report the quality of these streams")
    args = ap.parse_args()
    fps: Fraction = probe_video(args.clip).fps
    frames = load_clip(args.clip, 0, args.frames)
    if args.psnr:
        quality(frames, fps, args.gop, args.psnr)
        return
    if not args.ray and args.jobs < 2:
        ap.error("give --ray ADDRESS or --jobs N (or --psnr)")
    codec = {"codec": args.codec} if args.codec else {}
    opts = dict(o.split("=", 1) for o in args.options)
    h, w = frames[0].shape[:2]
    print(f"{args.clip}: {len(frames)} frames {w}x{h}, GOP {args.gop}, {args.kbps} kbps, "
          f"codec {args.codec or 'default'} {opts}, {os.cpu_count()} cores")
    print("| run | wall (s) | sum of group encode times (s) | load average at start | bytes |")
    print("|---|---:|---:|---:|---:|")
    data = {}
    other = ((f"Ray tasks ({args.ray})", {"ray": args.ray}) if args.ray
             else (f"{args.jobs} processes", {"jobs": args.jobs}))
    for label, kwargs in (("one process", {"jobs": 1}), other):
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = encode_video_gops(frames, fps, kbps=args.kbps, gop=args.gop, **codec, **kwargs, **opts)
        wall = time.perf_counter() - t0
        busy = sum(s.seconds for s in res.stats)
        data[label] = res.data
        print(f"| {label} | {wall:.1f} | {busy:.1f} | {load:.2f} | {len(res.data)} |")
    a, b = data.values()
    print(f"\nidentical bytes: {'yes' if a == b else 'NO'}")


def quality(frames: list, fps: Fraction, gop: int, paths: list[str]) -> None:
    """Bytes, kbps, mean PSNR and the PSNR of each group's first frame of each stream."""
    from pathlib import Path

    import numpy as np

    from dappled.codec.video import decode_video
    from dappled.eval.metrics import psnr

    print("| stream | bytes | kbps | mean PSNR (dB) | PSNR of frames " + ", ".join(
        str(i) for i in range(0, len(frames), gop)) + " (dB) |")
    print("|---|---:|---:|---:|---|")
    for path in paths:
        data = Path(path).read_bytes()
        out = decode_video(data)
        p = [psnr(a, b) for a, b in zip(frames, out, strict=True)]
        kbps = 8 * len(data) / 1000 / (len(out) / float(fps))
        firsts = ", ".join(f"{p[i]:.2f}" for i in range(0, len(p), gop))
        print(f"| {path} | {len(data)} | {kbps:.1f} | {np.mean(p):.2f} | {firsts} |")


if __name__ == "__main__":
    main()

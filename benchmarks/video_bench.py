"""Speed of the splat video codec: encode and decode frames per second on a real clip.

    .venv/bin/python benchmarks/video_bench.py --clip ../shared/data/video/bikes.mp4 \
        --frames 50 --kbps 500 --gop 25 [--stream saved.dpl] [--device cuda]

Encode: wall time of encoding --frames frames (intra and predicted frames, rate control,
everything) -> frames per second. Decode: the whole stream decoded from memory, after one
warm-up decode (JIT compilation), --runs times; the median gives frames per second, split into
entropy decoding + state update and rendering. With --stream an existing .dpl is decoded and
nothing is encoded. Prints a Markdown table; "per CPU-second" rows divide by the process CPU time,
which other jobs on a shared machine do not inflate (wall-clock rows they do).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from fractions import Fraction
from pathlib import Path

import numpy as np


def decode_timed(data: bytes, device: str) -> tuple[float, float, int, float]:
    """(entropy+update seconds, render seconds, frames, process CPU seconds) of one full decode."""
    from dappled.codec.container import ContainerReader, PacketType
    from dappled.codec.splat.video.decoder import apply_frame, render_state

    reader = ContainerReader(io.BytesIO(data))
    h = reader.header
    state = None
    t_ent = t_ren = 0.0
    n = 0
    c0 = time.process_time()
    for p in reader:
        if p.type != PacketType.FRAME:
            continue
        t0 = time.perf_counter()
        state = apply_frame(p.payload, state, h.width, h.height)
        t1 = time.perf_counter()
        img = render_state(state, h.width, h.height, device)
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
        t2 = time.perf_counter()
        assert img.shape == (h.height, h.width, 3)
        t_ent += t1 - t0
        t_ren += t2 - t1
        n += 1
    return t_ent, t_ren, n, time.process_time() - c0


def main() -> None:
    """Parse arguments, run, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="../shared/data/video/bikes.mp4")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--kbps", type=float, default=500.0)
    ap.add_argument("--gop", type=int, default=25)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stream", default=None, help="decode this .dpl instead of encoding the clip")
    ap.add_argument("--save", default=None, help="write the encoded stream here")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="numba and torch threads (0: all cores)")
    ap.add_argument("-O", "--option", action="append", default=[], help="encoder option KEY=VALUE")
    args = ap.parse_args()
    if args.threads:
        import numba
        import torch

        numba.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)

    from dappled.codec.video import decode_video, encode_video
    from dappled.datasets.video import load_clip, probe_video
    from dappled.eval.metrics import psnr
    from dappled.eval.report import machine_description

    rows = []
    if args.stream:
        data = Path(args.stream).read_bytes()
        clip = None
    else:
        info = probe_video(args.clip)
        clip = load_clip(args.clip, args.start, args.frames)
        opts = dict(o.split("=", 1) for o in args.option)
        c0 = time.process_time()
        res = encode_video(clip, info.fps, kbps=args.kbps, gop=args.gop, progress=True, **opts)
        enc_cpu = time.process_time() - c0
        data = res.data
        if args.save:
            Path(args.save).write_bytes(data)
        n_i = sum(1 for s in res.stats if s.type == 0)
        t_i = sum(s.seconds for s in res.stats if s.type == 0)
        t_p = sum(s.seconds for s in res.stats if s.type == 1)
        n_p = len(res.stats) - n_i
        rows.append(("encode, all frames", f"{len(clip) / res.seconds:.3f}",
                     f"{res.seconds / len(clip):.2f} s/frame"))
        rows.append(("encode, per CPU-second (all threads)", f"{len(clip) / enc_cpu:.3f}",
                     f"{enc_cpu / len(clip):.2f} CPU-s/frame"))
        rows.append(("encode, intra frames", f"{n_i / t_i:.3f}" if t_i else "-", f"{n_i} frames"))
        rows.append(("encode, predicted frames", f"{n_p / t_p:.3f}" if t_p else "-", f"{n_p} frames"))
    decode_timed(data, args.device)  # warm-up
    runs = [decode_timed(data, args.device) for _ in range(args.runs)]
    n = runs[0][2]
    tot = statistics.median(e + r for e, r, _, _ in runs)
    ent = statistics.median(e for e, _, _, _ in runs)
    ren = statistics.median(r for _, r, _, _ in runs)
    cpu = statistics.median(c for _, _, _, c in runs)
    rows.append(("decode (entropy + render)", f"{n / tot:.1f}", f"{1000 * tot / n:.1f} ms/frame"))
    rows.append(("  entropy decode + update", f"{n / ent:.1f}", f"{1000 * ent / n:.1f} ms/frame"))
    rows.append(("  render", f"{n / ren:.1f}", f"{1000 * ren / n:.1f} ms/frame"))
    # CPU time of this process: what the decode costs whatever else runs on the machine
    rows.append(("decode, per CPU-second (all threads)", f"{n / cpu:.1f}",
                 f"{1000 * cpu / n:.1f} CPU-ms/frame"))
    out = decode_video(data, args.device)
    from dappled.codec.video import stream_header

    h = stream_header(data)
    kbps = 8 * len(data) / 1000 / (h.frame_count / h.fps)
    extra = ""
    if clip is not None:
        extra = f", mean PSNR {np.mean([psnr(a, b) for a, b in zip(clip, out, strict=True)]):.2f} dB"
    print(f"{h.width}x{h.height}, {h.frame_count} frames at {float(Fraction(h.fps_num, h.fps_den)):.3f} fps, "
          f"{kbps:.1f} kbps{extra}; device {args.device}; {machine_description()}")
    print("| what | frames/s | |")
    print("|---|---:|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()

"""Cold-start decode time of every registered codec (issue 10): `dappled decode` as a fresh process.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cold_decode.py --runs 5

For each codec: encode a 256x256 crop of the bundled sample once (in this process, with the
codec's cheap test options for the fitted codecs, so the stream is real but quick to make),
run one untimed `dappled decode` (fills numba's cache and the OS file cache, as any earlier
use of the installed program would), then time `--runs` fresh processes from launch to exit
and report the median and the spread, with the child's CPU time (user + system: about what the
wall time is on an idle machine, the decode being single-threaded). Each process also says
whether torch was imported.
Prints a Markdown table and a JSON summary (also written with --json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Runs the real CLI and, at exit, says on stderr whether torch got imported.
_CHILD = ("import sys, atexit; atexit.register(lambda: print('TORCH=%d' % ('torch' in sys.modules), "
          "file=sys.stderr)); from dappled.cli import main; sys.argv[0] = 'dappled'; main()")


def _decode_once(stream: Path, out: Path) -> tuple[float, float, bool]:
    """(wall seconds, CPU seconds of the child, torch imported) of one fresh `dappled decode`."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # cwd: the stream's folder, so `python -c` imports dappled from $PYTHONPATH or the install,
    # never from a checkout that happens to be the current folder
    proc = subprocess.run([sys.executable, "-c", _CHILD, "decode", str(stream), "-o", str(out)],
                          capture_output=True, text=True, cwd=stream.parent)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else "failed")
    return wall, cpu, "TORCH=1" in proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--codec", action="append", help="only these codecs (default: all registered)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--frames-pattern", action="store_true",
                    help="decode to NAME-%%04d.png (an older checkout decodes one-frame splatv only so)")
    ap.add_argument("--streams", type=Path, default=None,
                    help="keep the streams in this folder and reuse those already there (to time "
                         "another checkout's decoder on the same bytes: PYTHONPATH=that/checkout)")
    args = ap.parse_args()

    from dappled.codec import api, registry
    from dappled.datasets import SAMPLE_IMAGE, load_image

    image = load_image(SAMPLE_IMAGE)[: args.size, : args.size]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.streams or Path(tmp)
        folder = folder.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        for name in args.codec or registry.names(streams=True):
            stream = folder / f"{name}.dpl"
            if stream.is_file():
                data = stream.read_bytes()
            else:
                codec = registry.get(name)
                data = api.encode_image(image, name, **codec.test_encode_kwargs())
                stream.write_bytes(data)
            out = Path(tmp) / (f"{name}-%04d.png" if args.frames_pattern else f"{name}.png")
            try:
                _decode_once(stream, out)  # warm-up: numba cache, OS file cache
            except RuntimeError as exc:
                print(json.dumps({"codec": name, "failed": str(exc)}), file=sys.stderr, flush=True)
                rows.append({"codec": name, "bytes": len(data), "failed": str(exc)})
                continue
            times, cpus, torch_seen = [], [], False
            for _ in range(args.runs):
                wall, cpu, t = _decode_once(stream, out)
                times.append(wall)
                cpus.append(cpu)
                torch_seen |= t
            row = {"codec": name, "bytes": len(data), "median_s": round(statistics.median(times), 3),
                   "min_s": round(min(times), 3), "max_s": round(max(times), 3),
                   "cpu_median_s": round(statistics.median(cpus), 3), "torch": torch_seen,
                   "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print("| codec | stream bytes | cold decode wall, median (s) | min–max (s) | CPU, median (s) | "
          "torch imported |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        if "failed" in r:
            print(f"| {r['codec']} | {r['bytes']} | failed: {r['failed']} | | | |")
            continue
        print(f"| {r['codec']} | {r['bytes']} | {r['median_s']:.2f} | {r['min_s']:.2f}–{r['max_s']:.2f} | "
              f"{r['cpu_median_s']:.2f} | {'yes' if r['torch'] else 'no'} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""Peak memory and CPU time of the rat codec's encoder and decoder on large images (issue 18).

    python benchmarks/rat_peak.py 1024x1024 2048x2048 3000x3000 [--work DIR] [--quality 3]
        [-O decoder=shallow] [--force] [--decode-only]

Each image is the bundled sample (kodim23, 768x512) resized (bicubic) to the size asked: natural
content at every size, so the stream's rate is a real one. Each encode and each decode runs in a
fresh process, one thread (torch, numba, OpenMP), glibc told to give freed memory back; it
reports the CPU time (user + system) of the call and its peak resident memory above the level
before the call (VmHWM, reset through /proc/self/clear_refs once the modules are imported and
the input read; the model's weights are loaded inside the call, so they count), and the
absolute peak (ru_maxrss). The decode also prints the declared budget and the SHA-256 of the
pixels (the same every run, every process). Runs with whatever `dappled` is first on
PYTHONPATH, so an older tree can be measured the same way (``--force`` lifts its pixel cap).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

CHILD = r"""
import ctypes, hashlib, json, re, resource, sys
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
from dappled.codec import api, registry
from dappled.codec.container import unpack
import dappled.codec.rat.codec as rc
mode, path, size, quality, force = sys.argv[1:6]
options = dict(o.split("=", 1) for o in sys.argv[6:])
if force == "1":
    rc.MAX_PIXELS = 1 << 30
    rc.RatCodec.decode_max_macs = 1 << 50
    registry.DECODE_MAX_BYTES = 1 << 50
libc = ctypes.CDLL("libc.so.6")
libc.mallopt(-3, 1 << 16); libc.mallopt(-1, 1 << 16)
def kb(key):
    return int(re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
out = {}
if mode == "encode":
    from PIL import Image
    from dappled.datasets import SAMPLE_IMAGE
    w, h = (int(v) for v in size.split("x"))
    image = np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB").resize((w, h), Image.BICUBIC))
    libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    base, t0 = kb("VmRSS"), cpu()
    data = api.encode_image(image, "rat", quality=int(quality), **options)
    out["cpu_s"] = cpu() - t0
    Path(path).write_bytes(data)
    out["bytes"] = len(data)
else:
    data = Path(path).read_bytes()
    c = unpack(data)
    out["budget"] = registry.by_id(c.header.codec_id).decode_budget(c.header, c.packets).bytes
    libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    base, t0 = kb("VmRSS"), cpu()
    pixels = api.decode_image(data)
    out["cpu_s"] = cpu() - t0
    out["sha256"] = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]
out["peak_above_start"] = (kb("VmHWM") - base) * 1024
out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(out))
"""


def run(mode: str, path: Path, size: str, quality: int, force: bool, options: list[str]) -> dict:
    import os

    env = {**os.environ, **ENV}
    res = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), size, str(quality), str(int(force)),
                          *options],
                         capture_output=True, text=True, env=env)
    if res.returncode:
        tail = (res.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sizes", nargs="+", help="WxH")
    ap.add_argument("--work", default="/tmp/rat_peak")
    ap.add_argument("--quality", type=int, default=3)
    ap.add_argument("--force", action="store_true", help="lift the pixel cap and the limits (older trees)")
    ap.add_argument("-O", dest="options", action="append", default=[], metavar="KEY=VALUE",
                    help="rat encoder option (model=noregion, decoder=shallow, grid=N)")
    ap.add_argument("--decode-only", action="store_true", help="reuse the streams in --work")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print("| size | Mpixel | bytes | encode CPU s | encode peak MB | decode CPU s | decode peak MB "
          "(above start / ru_maxrss) | declared MB | sha256 |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---|")
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        tag = "".join(f"-{o.replace('=', '')}" for o in args.options)
        path = work / f"rat-{size}-q{args.quality}{tag}.dpl"
        enc = {} if args.decode_only else run("encode", path, size, args.quality, args.force, args.options)
        if "error" in enc:
            print(f"| {size} | {w * h / 1e6:.1f} | encode: {enc['error']} |")
            continue
        dec = run("decode", path, size, args.quality, args.force, [])
        if "error" in dec:
            print(f"| {size} | {w * h / 1e6:.1f} | decode: {dec['error']} |")
            continue
        e_cpu = f"{enc['cpu_s']:.1f}" if enc else "-"
        e_peak = f"{enc['peak_above_start'] / 1e6:.0f}" if enc else "-"
        print(f"| {size} | {w * h / 1e6:.1f} | {path.stat().st_size} | {e_cpu} | {e_peak} | "
              f"{dec['cpu_s']:.1f} | {dec['peak_above_start'] / 1e6:.0f} / {dec['maxrss'] / 1e6:.0f} | "
              f"{dec['budget'] / 1e6:.0f} | {dec['sha256']} |", flush=True)


if __name__ == "__main__":
    main()

"""CPU seconds of the field codec's torch-free decoder at 1024x1024, split by stage (issue 18).

Streams: "crafted" ones, as benchmarks/decode_budget.py makes them (packed with `pack_payload`
and the container writer, no fit): every latent 1 and the ARM's output bias predicting 1 at the
smallest scale, so every context is non-zero and the full ARM runs on every latent (its worst
case), with a synthesis that mixes every grid; and, with --real, a real encode of kodim23
mirrored to 1024x1024 (a short fit at --quality, cached under --cache): a low-rate stream whose
latents are mostly zero, the synthesis' share of a decode.

Stages (process time, one thread, best of --repeat after a warm-up decode that compiles the
kernels): latents (rANS + integer ARM, `decode_latents`), upsampling (the level accumulator:
levels 6..1 mixed and 2x-upsampled, `_Levels.rows`), synthesis (the rest of `synthesize`: the
last 2x upsampling fused with the full-size 1x1 layers, the 3x3 residual block, the pixels),
other (`api.decode_image` minus those: container, payload parsing, budget check). With
--kernels, the CPU seconds of each synthesis kernel too.

Usage:
    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/field_decode_speed.py \\
        [--presets low,medium] [--size 1024] [--repeat 3] [--real] [--iterations 200] \\
        [--quality 4] [--cache /tmp/field-decode-speed] [--kernels] [--sha]
Prints one markdown table row per stream (seconds) and, with --sha, the SHA-256 of the image.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode_budget import field_stream

from dappled.codec import api
from dappled.codec.container import unpack
from dappled.codec.field.format import unpack_payload
from dappled.models.field import synthesis as synth_mod
from dappled.models.field.integer import decode_latents
from dappled.models.field.layout import PRESETS, grids

KERNELS = ("_level_rows", "_full_size", "_conv_layer", "_to_pixels")


def real_stream(size: int, quality: int, iterations: int, cache: Path) -> bytes:
    """kodim23 mirrored to size x size, encoded at "medium" with a short fit (cached)."""
    path = cache / f"kodim23-{size}-q{quality}-it{iterations}.dpl"
    if path.exists():
        return path.read_bytes()
    from PIL import Image

    img = np.array(Image.open(Path("/work/shared/data/kodak/kodim23.png")).convert("RGB"))
    while img.shape[0] < size or img.shape[1] < size:
        img = np.concatenate([img, img[::-1]], axis=0) if img.shape[0] < size else img
        img = np.concatenate([img, img[:, ::-1]], axis=1) if img.shape[1] < size else img
    img = np.ascontiguousarray(img[:size, :size])
    data = api.encode_image(img, "field", quality=quality, complexity="medium", iterations=iterations)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _cpu(f: Callable[[], Any]) -> tuple[float, Any]:
    t = time.process_time()
    r = f()
    return time.process_time() - t, r


class _Timers:
    """Wraps the synthesis module's kernels and `_Levels.rows` (outermost call) with CPU timers."""

    def __init__(self) -> None:
        self.t: collections.Counter[str] = collections.Counter()
        self._undo: list[tuple[Any, str, Any]] = []

    def _wrap(self, owner: Any, name: str, key: str, outer_only: bool = False) -> None:
        f = getattr(owner, name, None)
        if f is None:
            return
        depth = [0]

        def g(*a: Any, **k: Any) -> Any:
            depth[0] += 1
            t0 = time.process_time()
            try:
                return f(*a, **k)
            finally:
                if depth[0] == 1 or not outer_only:
                    self.t[key] += time.process_time() - t0
                depth[0] -= 1

        self._undo.append((owner, name, f))
        setattr(owner, name, g)

    def __enter__(self) -> _Timers:
        self._wrap(synth_mod._Levels, "rows", "upsampling", outer_only=True)
        for k in KERNELS:
            self._wrap(synth_mod, k, k)
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, f in reversed(self._undo):
            setattr(owner, name, f)


def measure(data: bytes, repeat: int) -> dict[str, Any]:
    """Best-of-`repeat` CPU seconds of a decode and of its stages; the image's SHA-256."""
    c = unpack(data)
    h, w = c.header.height, c.header.width
    p = unpack_payload(c.frames()[0].payload, w, h)
    gs = grids(h, w)
    image = api.decode_image(data)  # compiles (or loads) every kernel
    best: dict[str, float] = {}
    for _ in range(repeat):
        total, _ = _cpu(lambda: api.decode_image(data))
        lat_s, lat = _cpu(lambda: decode_latents(p.words, p.excess, gs, p.net))
        with _Timers() as tm:
            syn_s, _ = _cpu(lambda lat=lat: synth_mod.synthesize(lat, gs, p.net, h, w))
        row = {"total": total, "latents": lat_s, "upsampling": tm.t["upsampling"],
               "synthesis": syn_s - tm.t["upsampling"], "other": max(0.0, total - lat_s - syn_s),
               **{k: tm.t[k] for k in KERNELS}}
        best = row if not best or row["total"] < best["total"] else best
    best["sha256"] = hashlib.sha256(image.tobytes()).hexdigest()
    best["arch"] = p.net.arch
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="low,medium")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--real", action="store_true", help="also a real kodim23 encode (medium)")
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/field-decode-speed"))
    ap.add_argument("--kernels", action="store_true", help="CPU seconds of each synthesis kernel")
    ap.add_argument("--sha", action="store_true", help="print each image's SHA-256")
    args = ap.parse_args()
    streams = [(f"crafted {p}", lambda p=p: field_stream(PRESETS[p], args.size))
               for p in args.presets.split(",")]
    if args.real:
        streams.append((f"kodim23 medium q{args.quality}",
                        lambda: real_stream(args.size, args.quality, args.iterations, args.cache)))
    cols = ["total", "latents", "upsampling", "synthesis", "other"] + (list(KERNELS) if args.kernels else [])
    scale = (4096 / args.size) ** 2
    print(f"| stream ({args.size}²) | bytes | " + " | ".join(cols) + f" | x{scale:.0f} (4096²) |")
    print("|---" * (len(cols) + 3) + "|")
    for name, make in streams:
        data = make()
        r = measure(data, args.repeat)
        cells = " | ".join(f"{r[k]:.3f}" for k in cols)
        print(f"| {name} | {len(data)} | {cells} | {r['total'] * scale:.1f} |", flush=True)
        if args.sha:
            print(f"    sha256 {r['sha256']}  {r['arch']}")


if __name__ == "__main__":
    main()

"""The field codec's encode and decode costs, and quality against fitting time (issue 12).

Modes:
  encode  Encode whole images at each effort with a quality preset: wall and CPU seconds (CPU
          time is what one core spends, the figure to compare on a shared machine), bpp, PSNR,
          JPEG and WebP PSNR at the same bpp (interpolated in log-rate over their quality range).
  curve   PSNR against iterations at a bpp target (rate control on) on images or crops.
  iteration  CPU seconds per fit iteration at each preset (--complexity low,high,medium), after a
          2-iteration warm-up (numba caches), over --iterations N (the first value) at a fixed
          lambda: the fit's own cost, without the encoder's analysis, quantization or coding.
  decode  Decode time (CPU, in process after one warm-up decode; and a fresh process) of streams
          made by `encode`.

Usage:
    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/field_speed.py encode \\
        --images kodim23,kodim05 --efforts fast,default [--quality 4] [--out runs/field-speed]
    ... field_speed.py curve --images kodim23,kodim05,kodim15 --iterations 250,500,1000,2000 \\
        --bpp 0.5 [--crop 256]
    ... field_speed.py iteration --images kodim23 --complexity low,medium --iterations 30
    ... field_speed.py decode --out runs/field-speed
Prints one line per measurement and writes them as JSON lines to OUT/field-speed.jsonl.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dappled.codec import api
from dappled.datasets.images import load_image
from dappled.eval.metrics import psnr


def _reference(img: np.ndarray, fmt: str, bpp: float, **kw: object) -> float:
    """PSNR of a Pillow codec at `bpp`, interpolated in log-rate over qualities 5..95."""
    pts = []
    for q in range(5, 96, 5):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, fmt, quality=q, **kw)
        dec = np.array(Image.open(buf).convert("RGB"))
        pts.append((8 * len(buf.getvalue()) / (img.shape[0] * img.shape[1]), psnr(img, dec)))
    pts.sort()
    return float(np.interp(np.log(bpp), np.log([p[0] for p in pts]), [p[1] for p in pts]))


def _record(out: Path, row: dict) -> None:
    print(json.dumps(row), flush=True)
    with open(out / "field-speed.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def _image(root: Path, name: str, crop: int) -> np.ndarray:
    img = load_image(root / "kodak" / f"{name}.png")
    return img[:crop, :crop].copy() if crop else img


def encode_mode(args: argparse.Namespace, out: Path) -> None:
    for name in args.images.split(","):
        img = _image(Path(args.data_root), name, args.crop)
        for effort in args.efforts.split(","):
            w0, c0 = time.perf_counter(), time.process_time()
            data = api.encode_image(img, "field", quality=args.quality, effort=effort,
                                    complexity=args.complexity)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            (out / f"{name}-{effort}.dpl").write_bytes(data)
            dec = api.decode_image(data)
            bpp = 8 * len(data) / (img.shape[0] * img.shape[1])
            _record(out, {"mode": "encode", "image": name, "effort": effort, "complexity": args.complexity,
                          "quality": args.quality, "bpp": round(bpp, 4), "psnr": round(psnr(img, dec), 3),
                          "jpeg_psnr": round(_reference(img, "JPEG", bpp), 3),
                          "webp_psnr": round(_reference(img, "WEBP", bpp, method=6), 3),
                          "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)})


def curve_mode(args: argparse.Namespace, out: Path) -> None:
    for name in args.images.split(","):
        img = _image(Path(args.data_root), name, args.crop)
        for n in (int(v) for v in args.iterations.split(",")):
            c0 = time.process_time()
            data = api.encode_image(img, "field", bpp=args.bpp, iterations=n, complexity=args.complexity)
            cpu = time.process_time() - c0
            dec = api.decode_image(data)
            bpp = 8 * len(data) / (img.shape[0] * img.shape[1])
            _record(out, {"mode": "curve", "image": name, "crop": args.crop, "iterations": n,
                          "bpp": round(bpp, 4), "psnr": round(psnr(img, dec), 3),
                          "jpeg_psnr": round(_reference(img, "JPEG", bpp), 3),
                          "webp_psnr": round(_reference(img, "WEBP", bpp, method=6), 3),
                          "cpu_s": round(cpu, 1)})


def iteration_mode(args: argparse.Namespace, out: Path) -> None:
    import torch

    from dappled.models.field.fit import FitConfig, fit
    from dappled.models.field.layout import PRESETS, preset_for, steps_for

    torch.set_num_threads(1)
    n = int(args.iterations.split(",")[0])
    lam = 0.004
    shift, ladder = steps_for(lam)
    for name in args.images.split(","):
        img = _image(Path(args.data_root), name, args.crop)
        for preset in args.complexity.split(","):
            arch = PRESETS[preset_for(preset, lam)]  # auto: the low preset at this lambda
            fit(img, arch, FitConfig(iterations=2, lam=lam, step_shift=shift, step_ladder=ladder))
            c0 = time.process_time()
            fit(img, arch, FitConfig(iterations=n, lam=lam, step_shift=shift, step_ladder=ladder))
            per = (time.process_time() - c0) / n
            _record(out, {"mode": "iteration", "image": name, "size": f"{img.shape[1]}x{img.shape[0]}",
                          "complexity": preset, "iterations": n, "cpu_s_per_iteration": round(per, 4)})


def decode_mode(args: argparse.Namespace, out: Path) -> None:
    for path in sorted(out.glob("*.dpl")):
        data = path.read_bytes()
        api.decode_image(data)  # warm: numba cache loaded, tables built
        times = []
        for _ in range(args.runs):
            c0 = time.process_time()
            api.decode_image(data)
            times.append(time.process_time() - c0)
        code = ("import sys, time; t = time.perf_counter(); from dappled.codec import api; "
                "api.decode_image(open(sys.argv[1], 'rb').read()); print(time.perf_counter() - t)")
        cold = float(subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                                    check=True).stdout)
        _record(out, {"mode": "decode", "stream": path.name, "bytes": len(data),
                      "cpu_ms_median": round(1000 * float(np.median(times)), 1),
                      "fresh_process_s": round(cold, 2)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["encode", "curve", "iteration", "decode"])
    ap.add_argument("--images", default="kodim23,kodim05")
    ap.add_argument("--efforts", default="fast,default")
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--complexity", default="auto")
    ap.add_argument("--iterations", default="250,500,1000,2000")
    ap.add_argument("--bpp", type=float, default=0.5)
    ap.add_argument("--crop", type=int, default=0, help="Top-left crop size (0: whole image).")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--out", default="runs/field-speed")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    modes = {"encode": encode_mode, "curve": curve_mode, "iteration": iteration_mode, "decode": decode_mode}
    modes[args.mode](args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

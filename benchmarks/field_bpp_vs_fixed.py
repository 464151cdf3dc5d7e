"""Where `--bpp` lands against the fixed-lambda curve of the same fits (issue 20): for each
`--bpp` point of a `dappled eval` run, the rate miss and the dB against the image's fixed-lambda
curve at the rate it landed on (benchmarks/field_rate.py trajectory rows of the same recipe,
interpolated linearly in log rate; points outside the curve's rates are extrapolated from its
nearest segment and flagged), and per image the BD-rate of the `--bpp` points against that curve.

    python benchmarks/field_bpp_vs_fixed.py RUN/results.csv TRAJECTORIES.jsonl [SERIES]
    # against the preset sweep of the same images (rows of REFERENCE whose params are quality=Q
    # and whose series is REF_SERIES): the issue's "BD-rate against the preset sweep"
    python benchmarks/field_bpp_vs_fixed.py RUN/results.csv PRESETS/results.csv SERIES REF_SERIES
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from dappled.eval.bdrate import bd_rate


def _curve(rows: list[dict], image: str) -> tuple[np.ndarray, np.ndarray]:
    pts = sorted((r["bpp"], r["psnr"]) for r in rows if r["image"] == image)
    return np.array([math.log(b) for b, _ in pts]), np.array([p for _, p in pts])


def _at(lr: np.ndarray, q: np.ndarray, x: float) -> float:
    i = int(np.clip(np.searchsorted(lr, x) - 1, 0, len(lr) - 2))
    return float(q[i] + (q[i + 1] - q[i]) * (x - lr[i]) / (lr[i + 1] - lr[i]))


def main() -> int:
    results, traj = sys.argv[1], sys.argv[2]
    series = sys.argv[3] if len(sys.argv) > 3 else "field[effort=fast]"
    if traj.endswith(".csv"):  # a preset sweep: its quality points are the reference curve
        ref_series = sys.argv[4]
        with open(traj) as f:
            fixed = [{"image": r["image"], "bpp": float(r["bpp"]), "psnr": float(r["psnr"])}
                     for r in csv.DictReader(f)
                     if r["series"] == ref_series and r["params"].startswith("quality=")]
    else:
        fixed = [json.loads(line) for line in Path(traj).read_text().splitlines() if line.strip()]
    for r in fixed:
        r["image"] = r["image"].removesuffix(".png")
    with open(results) as f:
        points = [r for r in csv.DictReader(f) if r["series"] == series and r["bpp_target"]]
    misses, gaps, bds = [], [], []
    print("| image | target | landed bpp | miss | PSNR | reference curve there | dB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for image in sorted({p["image"] for p in points}):
        lr, q = _curve(fixed, image.removesuffix(".png"))
        mine = sorted((p for p in points if p["image"] == image), key=lambda p: float(p["bpp"]))
        for p in mine:
            t, b, psnr = float(p["bpp_target"]), float(p["bpp"]), float(p["psnr"])
            miss = b / t - 1
            misses.append(miss)
            if len(lr) >= 2:
                ref = _at(lr, q, math.log(b))
                out = "" if lr[0] <= math.log(b) <= lr[-1] else " (extrapolated)"
                gaps.append(psnr - ref)
                print(f"| {image} | {t} | {b:.4f} | {miss:+.1%} | {psnr:.2f} | {ref:.2f}{out} "
                      f"| {psnr - ref:+.2f} |")
            else:
                print(f"| {image} | {t} | {b:.4f} | {miss:+.1%} | {psnr:.2f} | — | — |")
        if len(lr) >= 4 and len(mine) >= 4:
            try:
                rates, psnrs = [float(p["bpp"]) for p in mine], [float(p["psnr"]) for p in mine]
                bds.append(bd_rate(np.exp(lr), q, rates, psnrs))
            except ValueError:
                pass
    m = np.abs(np.array(misses))
    print(f"\n{len(misses)} points: |miss| mean {m.mean():.1%}, max {m.max():.1%}, within 5 %: "
          f"{int((m <= 0.05).sum())}/{len(m)}")
    if gaps:
        print(f"dB against the fixed-lambda curve: mean {np.mean(gaps):+.2f}, min {np.min(gaps):+.2f}")
    if bds:
        print(f"BD-rate of --bpp against the fixed-lambda curve, mean of {len(bds)} images: "
              f"{np.mean(bds):+.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

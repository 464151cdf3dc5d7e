"""The field codec on Kodak from a (possibly still running) `dappled eval` sweep (issue 12).

Reads OUT/results.csv of a run such as

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 dappled eval --dataset kodak --codec field --codec jpeg \\
        --codec webp --codec avif --points 6 --param field:quality=2,4,6,8 --out runs/kodak-field -j 1

keeps the images whose field curve is complete (the sweep runs image by image, so a growing run
holds whole curves of its first images), and prints mean curves and BD-rates (PSNR and MS-SSIM)
of every series against JPEG, WebP and AVIF on exactly those images, plus encode and decode
times; writes OUT/rd-partial.png. Nothing is encoded.

Usage: .venv/bin/python benchmarks/field_kodak.py runs/kodak-field [--series field]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

from dappled.eval.plot import plot_rd
from dappled.eval.summary import bd_table, mean_curves

NUMERIC = ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--codec", default="field")
    ap.add_argument("--points", type=int, default=4, help="Rate points of a complete curve.")
    args = ap.parse_args()
    out = Path(args.out)
    rows = list(csv.DictReader(open(out / "results.csv")))
    for r in rows:
        for k in NUMERIC:
            r[k] = float(r[k])
    points: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r["codec"] == args.codec:
            points[r["image"]].add(r["params"])
    n_points = args.points
    done = sorted(img for img, p in points.items() if len(p) == n_points)
    rows = [r for r in rows if r["image"] in done]
    if not done:
        print("no image has a complete curve yet")
        return 1
    curves = mean_curves(rows, n_images=len(done))
    print(f"{len(done)} images with complete curves: {', '.join(done)}\n")
    for c in curves:
        print(f"{c.label}:")
        for p in c.points:
            print(f"  {p.params:<24} {p.bpp:6.3f} bpp  {p.psnr:6.2f} dB  MS-SSIM {p.ms_ssim:.4f}  "
                  f"encode {p.encode_s:7.1f} s  decode {1000 * p.decode_s:7.1f} ms  ({p.images} images)")
    for anchor in ("jpeg", "webp", "avif"):
        print(f"\nBD against {anchor} (negative: fewer bits for the same quality):")
        for row in bd_table(curves, anchor):
            fmt = lambda v: "n/a" if v is None else f"{v:+.1f} %"  # noqa: E731
            print(f"  {row.label:<24} PSNR {fmt(row.bd_rate_psnr)}   MS-SSIM {fmt(row.bd_rate_msssim)}")
    plot_rd(curves, out / "rd-partial.png", f"Kodak, first {len(done)} images", published=[])
    print(f"\nplot: {out / 'rd-partial.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

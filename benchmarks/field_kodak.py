"""The field codec on Kodak from a (possibly still running) `dappled eval` sweep (issue 12).

Reads OUT/results.csv of a run such as

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 dappled eval --dataset kodak --codec field --codec jpeg \\
        --codec webp --codec avif --points 6 --param field:quality=2,4,6,8 --out runs/kodak-field -j 1

keeps the images whose field curve is complete (the sweep runs image by image, so a growing run
holds whole curves of its first images), and prints mean curves and BD-rates (PSNR and MS-SSIM)
of every series against JPEG, WebP and AVIF on exactly those images, plus encode and decode
times; writes OUT/rd-partial.png. Nothing is encoded.

With `--compare OLD` (an earlier run or its committed rows, e.g. docs/data/kodak-field-default-v1)
the codec's rows of OLD join as series "<series> (OLD's folder name)", and only images complete
in both runs count: a before/after figure on the same images.

Usage: .venv/bin/python benchmarks/field_kodak.py runs/kodak-field [--codec field] [--compare OLD]
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
    ap.add_argument("--compare", help="An earlier run folder whose codec rows join, relabelled.")
    args = ap.parse_args()
    out = Path(args.out)
    rows = _read(out / "results.csv")
    done = _complete(rows, args.codec, args.points)
    anchors = ["jpeg", "webp", "avif"]
    if args.compare:
        old = Path(args.compare)
        old_rows = [r for r in _read(old / "results.csv") if r["codec"] == args.codec]
        done &= _complete(old_rows, args.codec, args.points)
        for r in old_rows:
            r["series"] = f"{r['series']} ({old.name})"
        anchors += sorted({r["series"] for r in old_rows})
        rows += old_rows
    done = sorted(done)
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
    for anchor in anchors:
        print(f"\nBD against {anchor} (negative: fewer bits for the same quality):")
        for row in bd_table(curves, anchor):
            fmt = lambda v: "n/a" if v is None else f"{v:+.1f} %"  # noqa: E731
            print(f"  {row.label:<24} PSNR {fmt(row.bd_rate_psnr)}   MS-SSIM {fmt(row.bd_rate_msssim)}")
    plot_rd(curves, out / "rd-partial.png", f"Kodak, first {len(done)} images", published=[])
    print(f"\nplot: {out / 'rd-partial.png'}")
    return 0


def _read(path: Path) -> list[dict]:
    """The rows of a results.csv, numeric columns as floats."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in NUMERIC:
            r[k] = float(r[k])
    return rows


def _complete(rows: list[dict], codec: str, n_points: int) -> set[str]:
    """The images on which `codec` has all `n_points` rate points."""
    points: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r["codec"] == codec:
            points[r["image"]].add(r["params"])
    return {img for img, p in points.items() if len(p) == n_points}


if __name__ == "__main__":
    sys.exit(main())

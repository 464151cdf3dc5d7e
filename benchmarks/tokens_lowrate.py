"""Issue 5 figures from a `dappled eval` run folder: tokens against the classical codecs at the
lowest rates (per image, at equal bpp), and the mean curve of each series below 0.3 bpp.

For every image and every classical point at or below ``--max-bpp`` (default 0.1), the tokens
series' MS-SSIM and PSNR are interpolated (linearly in log bpp, between that image's own
tokens points) at exactly that bpp; a point outside the tokens range of the image is counted
as not comparable. Usage:

    python benchmarks/tokens_lowrate.py runs/kodak-tokens [--series tokens] [--max-bpp 0.1] [--plot PNG]

``--plot`` draws every series of the folder (the adaptive and uniform tokens series and the
baselines) on one rate-distortion figure; `dappled eval` draws only the series of its own run.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict

import numpy as np

from dappled.eval.sweep import load_results


def _interp(points: list[tuple[float, float, float]], bpp: float) -> tuple[float, float] | None:
    """(MS-SSIM, PSNR) of a per-image curve at ``bpp`` (log-bpp interpolation), None outside it."""
    pts = sorted(points)
    xs = [math.log(p[0]) for p in pts]
    x = math.log(bpp)
    if not pts or x < xs[0] or x > xs[-1]:
        return None
    return float(np.interp(x, xs, [p[1] for p in pts])), float(np.interp(x, xs, [p[2] for p in pts]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--series", default="tokens")
    ap.add_argument("--max-bpp", type=float, default=0.1)
    ap.add_argument("--plot", default=None, help="PNG of all the folder's mean curves")
    args = ap.parse_args()
    rows = load_results(args.run_dir)
    if args.plot:
        from dappled.eval.plot import plot_rd
        from dappled.eval.summary import mean_curves

        n_images = len({(r["image"], r["image_sha1"]) for r in rows})
        plot_rd(mean_curves(rows, n_images), args.plot, f"Kodak ({n_images} images)")
    per: dict[str, dict[str, list[tuple[float, float, float]]]] = defaultdict(lambda: defaultdict(list))
    params: dict[tuple[str, str, float], str] = {}
    for r in rows:
        per[r["series"]][r["image"]].append((float(r["bpp"]), float(r["ms_ssim"]), float(r["psnr"])))
        params[(r["series"], r["image"], float(r["bpp"]))] = r["params"]
    if args.series not in per:
        raise SystemExit(f"no series {args.series!r} in {args.run_dir}")
    tok = per[args.series]
    print(f"| codec | points ≤ {args.max_bpp} bpp (of images) | comparable | tokens wins (MS-SSIM) | "
          "mean bpp | mean MS-SSIM codec / tokens | mean PSNR codec / tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for series in sorted(per):
        if series.startswith("tokens"):
            continue
        low = [(img, p) for img, pts in per[series].items() for p in pts if p[0] <= args.max_bpp]
        comp = []
        for img, (bpp, ms, ps) in low:
            t = _interp(tok.get(img, []), bpp)
            if t is not None:
                comp.append((bpp, ms, ps, t[0], t[1]))
        images = len({img for img, _ in low})
        if not comp:
            print(f"| {series} | {len(low)} ({images}) | 0 | – | – | – | – |")
            continue
        a = np.array(comp)
        wins = int((a[:, 3] > a[:, 1]).sum())
        print(f"| {series} | {len(low)} ({images}) | {len(comp)} | {wins} of {len(comp)} | "
              f"{a[:, 0].mean():.4f} | {a[:, 1].mean():.4f} / {a[:, 3].mean():.4f} | "
              f"{a[:, 2].mean():.2f} / {a[:, 4].mean():.2f} |")


if __name__ == "__main__":
    main()

"""Reproduce the classical-baseline figures of docs/results.md on Kodak.

1. The reference check: JPEG q20/q50, WebP q20/q60, AVIF q40/q55 (mean over the 24 images)
   against the figures quoted in issue 3; exits 1 if any PSNR is off by more than 0.1 dB.
2. With --sweep, the full baseline sweep (five codecs, 6 points each) into runs/kodak-baselines.

Both runs are resumable (re-running skips finished points). Usage:

    .venv/bin/python benchmarks/kodak_baselines.py [--jobs 2] [--sweep] [--report docs/results.md]
"""

from __future__ import annotations

import argparse
import sys

from dappled.eval.evaluate import EvalSpec, evaluate

# (codec, quality) -> (bpp, PSNR dB) quoted in issue 3 for Pillow 13 on this machine type.
REFERENCE = {
    ("jpeg", 20): (0.51, 29.1),
    ("jpeg", 50): (0.91, 32.2),
    ("webp", 20): (0.38, 30.2),
    ("webp", 60): (0.77, 33.7),
    ("avif", 40): (0.38, 31.5),
    ("avif", 55): (0.72, 34.6),
}
TOLERANCE_DB = 0.1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--sweep", action="store_true", help="also run the full 5-codec, 6-point sweep")
    ap.add_argument("--report", default=None, help="refresh sections of this Markdown file")
    args = ap.parse_args()

    params = [f"{c}:quality={','.join(str(q) for (cc, q) in REFERENCE if cc == c)}"
              for c in ("jpeg", "webp", "avif")]
    ref = evaluate(EvalSpec(codecs=["jpeg", "webp", "avif"], dataset="kodak", params=params,
                            out_dir="runs/kodak-reference", jobs=args.jobs, data_root=args.data_root,
                            report=args.report, report_section="kodak-reference",
                            command="dappled eval --dataset kodak --codec jpeg --codec webp --codec avif "
                                    + " ".join(f"--param {p}" for p in params)
                                    + f" --out runs/kodak-reference --jobs {args.jobs}"))
    ok = True
    print("| codec | quality | bpp (ours) | PSNR (ours) | bpp (quoted) | PSNR (quoted) | ΔPSNR |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for curve in ref.curves:
        for p in curve.points:
            q = int(p.params.split("=")[1])
            bpp, db = REFERENCE[(curve.codec, q)]
            delta = p.psnr - db
            ok &= abs(delta) <= TOLERANCE_DB
            print(f"| {curve.codec} | {q} | {p.bpp:.3f} | {p.psnr:.2f} | {bpp:.2f} | {db:.1f} "
                  f"| {delta:+.2f} |")
    if args.sweep:
        evaluate(EvalSpec(codecs=["jpeg", "webp", "avif", "jp2", "hevc"], dataset="kodak", points=6,
                          out_dir="runs/kodak-baselines", jobs=args.jobs, data_root=args.data_root,
                          report=args.report, report_section="kodak-baselines",
                          command="dappled eval --dataset kodak --codec jpeg --codec webp --codec avif "
                                  f"--codec jp2 --codec hevc --points 6 --jobs {args.jobs} "
                                  "--out runs/kodak-baselines"))
    if not ok:
        print(f"some PSNR differs from the quoted figure by more than {TOLERANCE_DB} dB", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Merge the rows of several `dappled eval` runs (image sets split over processes, or a series
measured in another session) into one results.json / results.csv, summary.md and RD plot, as `dappled eval`
summarizes one run.

    python benchmarks/field_merge_runs.py OUT --anchor webp --images 24 --title "Kodak, fast effort" \
        --plot docs/img/rd.png BASE/results.csv "RUN1/results.csv=field fast (session 12)" ...

A source is PATH, or PATH=LABEL (every row of it relabelled LABEL), or PATH=LABEL=PREFIX (only its
rows whose series starts with PREFIX, relabelled), or PATH=LABEL=PREFIX=QUALITIES (of those, the
rows at these qualities alone, e.g. 2,4,6: a curve built from two runs). Series whose label starts
with an --omit prefix stay in the table but not in the plot. --only IMAGES keeps those images' rows alone.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from dappled.eval.plot import plot_rd
from dappled.eval.summary import mean_curves, summary_markdown
from dappled.eval.sweep import save_results

NUMBERS = ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s")


def read_rows(source: str) -> list[dict[str, Any]]:
    """The rows of one source (PATH[=LABEL[=PREFIX[=QUALITIES]]]), numbers parsed."""
    path, label, prefix, quals = [*source.split("=", 3), None, None, None][:4]
    keep = set(quals.split(",")) if quals else None
    out = []
    with open(path) as f:
        for r in csv.DictReader(f):
            if prefix and not r["series"].startswith(prefix):
                continue
            if keep is not None and r["quality"] not in keep:
                continue
            for k in NUMBERS:
                r[k] = float(r[k])
            if label:
                r["series"] = label
            out.append(r)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("sources", nargs="+")
    ap.add_argument("--anchor", default="webp")
    ap.add_argument("--images", type=int, required=True, help="images of a complete point")
    ap.add_argument("--title", required=True)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--omit", action="append", default=[], help="series prefix left out of the plot")
    ap.add_argument("--only", help="comma-separated images (kodim01.png,...): every source's rows of "
                    "these alone (a run that has not finished every image yet)")
    args = ap.parse_args()
    rows = [r for s in args.sources for r in read_rows(s)]
    if args.only:
        keep = set(args.only.split(","))
        rows = [r for r in rows if r["image"] in keep]
    args.out.mkdir(parents=True, exist_ok=True)
    curves = mean_curves(rows, args.images)
    md = summary_markdown(curves, args.anchor, args.title, args.images, rows=rows)
    (args.out / "summary.md").write_text(md)
    save_results(args.out, rows)  # results.json and results.csv, as `dappled eval` writes them
    if args.plot:
        shown = [c for c in curves if not any(c.label.startswith(p) for p in args.omit)]
        plot_rd(shown, args.plot, args.title)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

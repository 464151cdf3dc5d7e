"""Compare recipe ablations written by benchmarks/field_recipe.py at equal rate (issue 20).

Each configuration's fit of a case (image, lambda) is set against the base configuration's fit
of that case and the base's fit at lambda x 1.4 (``lam_mult=1.4``): the two base points give the
case's local slope in dB per log rate, and the configuration's PSNR is compared with the base
line at the configuration's own rate. A concave curve lies under its chord's extension, so for
configurations that land well below the base rate the figure errs low.

Usage:
    python benchmarks/field_recipe_compare.py ROWS.jsonl [ROWS.jsonl ...] [--base NAME] [--slope NAME]
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict


def compare(rows: list[dict], base: str, slope: str) -> list[tuple[str, list[tuple[str, float, float]]]]:
    """[(configuration, [(case, dB at equal rate, log rate ratio), ...]), ...] in first-seen order."""
    by: dict[str, dict[tuple[str, float], dict]] = defaultdict(dict)
    for r in rows:
        lam = r["lam"] / (1.4 if r["config"] == slope else 1.0)
        by[r["config"]][(r["image"], round(lam, 7))] = r
    out = []
    if base not in by or slope not in by:
        raise SystemExit(f"no rows for the base {base!r} or its slope run {slope!r} "
                         f"(configurations: {', '.join(by)})")
    for name, cases in list(by.items()):
        if name in (base, slope):
            continue
        got = []
        for key, r in cases.items():
            if key not in by[base] or key not in by[slope]:
                continue
            r0, r1 = by[base][key], by[slope][key]
            s = (r1["psnr"] - r0["psnr"]) / (math.log(r1["bpp"]) - math.log(r0["bpp"]))
            lr = math.log(r["bpp"] / r0["bpp"])
            got.append((f"{key[0]}@{key[1]:g}", r["psnr"] - (r0["psnr"] + s * lr), lr))
        if got:
            out.append((name, got))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+")
    ap.add_argument("--base", default="f300")
    ap.add_argument("--slope", default=None, help="the base at lambda x 1.4 (default BASE_l14)")
    args = ap.parse_args()
    rows = [json.loads(line) for p in args.rows for line in open(p) if line.strip()]
    for name, got in compare(rows, args.base, args.slope or f"{args.base}_l14"):
        mean = sum(g[1] for g in got) / len(got)
        print(f"{name:12s} n={len(got)} {mean:+.2f} dB | " + " ".join(f"{g[1]:+.2f}" for g in got)
              + " | rate " + " ".join(f"{100 * (math.exp(g[2]) - 1):+.0f}%" for g in got))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Calibrate the short-fit rate control (models/field/rate.py: SHORT_LAMBDA_SCALE, SHORT_RATE_POWER
and the TrendSteer decisions) from fixed-lambda trajectories and lambda moves written by
benchmarks/field_rate.py (trajectory / move, with --target: lambda from rate.base_lambda).

    python benchmarks/field_rate_calibrate.py TRAJECTORIES.jsonl [MOVES.jsonl]

Prints, for the trajectories: how far the predicted lambda's fit lands from its target (the
lambda scale that centres it), the rate power between two lambdas of one image, and for each
candidate decision probe p the leave-one-image-out error of predicting the final coded payload
rate as R(p) * exp(a + b * log(R(p) / R(p - 0.05))) (R: the hard-rounded rate at a probe), and
with a term c * log(lambda) (the fit's first lambda) added; for
the moves: the share of a lambda move's full effect on the final rate, and what of it the rate
at later probes already shows.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

from dappled.codec.defaults import IMAGE_CONTAINER_BYTES


def _rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _probes(row: dict) -> dict[float, float]:
    return {round(f, 2): r for f, r, _ in row["probes"]}


def _payload(row: dict, pixels: int = 768 * 512) -> float:
    return row["bpp"] - 8 * IMAGE_CONTAINER_BYTES / pixels  # the steer sees the payload alone


def predictor(rows: list[dict]) -> float:
    """Print the landing error of the predicted lambda and return the rate power."""
    miss = np.array([math.log(r["bpp"] / r["target"]) for r in rows])
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["image"], []).append(r)
    powers = []
    for rs in by.values():
        rs = sorted(rs, key=lambda r: r["lam"])
        powers += [-math.log(b["bpp"] / a["bpp"]) / math.log(b["lam"] / a["lam"])
                   for a, b in itertools.pairwise(rs) if b["lam"] / a["lam"] > 1.2]
    power = float(np.median(powers)) if powers else 0.67
    print(f"{len(rows)} fits of {len(by)} images; log(landed / target): mean {miss.mean():+.3f} "
          f"sd {miss.std():.3f} (max |.| {np.abs(miss).max():.3f})")
    for t in sorted({r["target"] for r in rows}):
        m = np.array([math.log(r["bpp"] / r["target"]) for r in rows if r["target"] == t])
        print(f"  target {t}: n {len(m)} mean {m.mean():+.3f} sd {m.std():.3f}")
    print(f"rate power (d log bpp / d log lambda, same image): median {power:.3f} over {len(powers)} pairs"
          + (f", range {min(powers):.2f}..{max(powers):.2f}" if powers else ""))
    print(f"=> lambda scale that centres the landing: {math.exp(miss.mean() / power):.3f}")
    return power


def decisions(rows: list[dict]) -> None:
    """Leave-one-image-out error of the final-rate prediction at each candidate probe."""
    fracs = sorted(_probes(rows[0]))
    for p in (f for f in fracs if 0.1 <= f <= 0.5):
        ref = max(f for f in fracs if f < p - 1e-9)
        x = np.array([[1.0, math.log(_probes(r)[p] / _probes(r)[ref]), math.log(r["lam"])] for r in rows])
        y = np.array([math.log(_payload(r) / _probes(r)[p]) for r in rows])
        images = [r["image"] for r in rows]
        for name, cols in (("const", [0]), ("trend", [0, 1]), ("trend+lambda", [0, 1, 2])):
            err = []
            for im in set(images):
                train = [i for i, m in enumerate(images) if m != im]
                test = [i for i, m in enumerate(images) if m == im]
                c, *_ = np.linalg.lstsq(x[train][:, cols], y[train], rcond=None)
                err += list(x[test][:, cols] @ c - y[test])
            c, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
            e = np.array(err)
            rms, worst = np.sqrt(np.mean(e**2)), np.abs(e).max()
            print(f"p {p:.2f} (ref {ref:.2f}) {name:12s}: leave-one-image-out rms {rms:.3f} max {worst:.3f}; "
                  f"coefficients {np.round(c, 3).tolist()}")


def moves(rows: list[dict], moved: list[dict]) -> None:
    """A move's effect on the final rate and on the rate at later probes, against its base fit."""
    for m in moved:
        base = [r for r in rows if r["image"] == m["image"] and r["target"] == m["target"]]
        if not base:
            continue
        b = base[0]
        full = math.log(m["bpp"] / b["bpp"])
        pb, pm = _probes(b), _probes(m)
        shown = " ".join(f"{f:.2f}:{math.log(pm[f] / pb[f]) / full:.2f}" for f in sorted(pb) if f > m["at"])
        print(f"{m['image']} x{m['factor']} at {m['at']}: final log ratio {full:+.3f} "
              f"(bpp {m['bpp']:.3f} vs {b['bpp']:.3f}, PSNR {m['psnr']:.2f} vs {b['psnr']:.2f}); "
              f"shown at later probes: {shown}")


def main() -> int:
    rows = [r for r in _rows(sys.argv[1]) if r.get("target")]
    predictor(rows)
    decisions(rows)
    if len(sys.argv) > 2:
        moves(rows, _rows(sys.argv[2]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

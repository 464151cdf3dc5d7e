"""Scale-out figures (docs/results.md, "Scale-out on Ray"): Ray's per-task overhead against local
processes, and row-by-row comparison of two eval runs.

    # per-task overhead: JPEG points of Kodak in this process, with -j 2, and as Ray tasks on the
    # cluster at ADDRESS (cold: fresh worker processes; warm: the same job again)
    .venv/bin/python benchmarks/scale_bench.py overhead --ray 127.0.0.1:6390 --qualities 10

    # are two eval runs the same rows (everything but the timings)?
    .venv/bin/python benchmarks/scale_bench.py compare runs/a runs/b
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from dappled.datasets.images import dataset_images
from dappled.eval import sweep

TIMING = ("encode_s", "decode_s", "finished_utc")


def _rows(out: str | Path) -> list[dict[str, object]]:
    rows = sweep.load_results(out)
    return sorted(({k: v for k, v in r.items() if k not in TIMING} for r in rows),
                  key=lambda r: (str(r["series"]), str(r["params"]), str(r["image"])))


def compare(a: str, b: str) -> int:
    """Print whether the two runs hold the same rows; exit status 0 when they do."""
    ra, rb = _rows(a), _rows(b)
    same = ra == rb
    verdict = "yes" if same else "NO"
    print(f"{a}: {len(ra)} rows, {b}: {len(rb)} rows, identical apart from timings: {verdict}")
    return 0 if same else 1


def overhead(address: str, limit: int, qualities: int, data_root: str | None) -> None:
    import ray

    from dappled.scale.cluster import runtime_env

    files = dataset_images("kodak", data_root)[:limit]
    images = sweep.image_refs(files)
    qs = ",".join(str(round(5 + 90 * i / max(1, qualities - 1))) for i in range(qualities))
    series = sweep.plan_series(["jpeg"], qualities, [f"jpeg:quality={qs}"])
    n = len(images) * qualities
    print(f"{n} JPEG points ({len(images)} Kodak images x {qualities} qualities), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, jobs in (("in this process (-j 1)", 1), ("local processes (-j 2)", 2)):
            t0 = time.perf_counter()
            sweep.run_sweep(series, images, Path(tmp) / f"j{jobs}", jobs=jobs, progress=False)
            results.append((label, time.perf_counter() - t0))
        t0 = time.perf_counter()
        ray.init(address=address, runtime_env=runtime_env(), log_to_driver=False, configure_logging=False)
        connect_s = time.perf_counter() - t0
        cpus = int(ray.cluster_resources().get("CPU", 0))
        nodes = len([x for x in ray.nodes() if x["Alive"]])
        try:
            for label, name in (("Ray tasks, cold workers", "cold"), ("Ray tasks, warm workers", "warm")):
                t0 = time.perf_counter()
                sweep.run_sweep(series, images, Path(tmp) / name, ray=address, progress=False)
                results.append((label, time.perf_counter() - t0))
        finally:
            ray.shutdown()
        same = _rows(Path(tmp) / "j2") == _rows(Path(tmp) / "warm") == _rows(Path(tmp) / "cold")
    print(f"Ray cluster at {address}: {nodes} node(s), {cpus} CPU(s); connecting took {connect_s:.2f} s")
    print(f"rows of -j 2 and Ray identical apart from timings: {'yes' if same else 'NO'}\n")
    print("| run | wall (s) | ms per point |")
    print("|---|---:|---:|")
    for label, wall in results:
        print(f"| {label} | {wall:.2f} | {1000 * wall / n:.1f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overhead", help="Ray per-task overhead with JPEG points")
    o.add_argument("--ray", required=True, help="address of a running cluster (HOST:PORT)")
    o.add_argument("--limit", type=int, default=24, help="first K Kodak images")
    o.add_argument("--qualities", type=int, default=10, help="JPEG qualities per image")
    o.add_argument("--data-root", default=None)
    c = sub.add_parser("compare", help="compare the rows of two eval runs")
    c.add_argument("a")
    c.add_argument("b")
    args = ap.parse_args()
    if args.cmd == "compare":
        return compare(args.a, args.b)
    overhead(args.ray, args.limit, args.qualities, args.data_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())

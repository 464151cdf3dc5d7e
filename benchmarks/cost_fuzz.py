"""Cost-guided fuzzing of every registered decoder (issue 18): search for the streams that cost
the most decode time and peak memory per input byte, and check each decode against the budget
its decoder declares (``Codec.decode_budget``).

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/cost_fuzz.py \
        --minutes 10 --work runs/costfuzz --json runs/costfuzz/summary.json

Seeds are the conformance corpus (tests/conformance/: every codec, every payload version). A case
is a mutant of a seed or of one of the costliest mutants found so far for that codec (the top
--keep by CPU seconds per byte and the top --keep by peak memory per byte: a corpus that grows
towards expensive inputs, like libFuzzer's slow-unit and value-profile tracking), made by
tests/_fuzz.py's :func:`mutate_cost`: container header and payload changed together, with the
fields that declare frame size, frame count, counts and architecture made larger.

Every case is decoded in a worker process (fuzz_decoders.Worker) whose data segment is capped
(--mem-mb) and which is killed past --timeout seconds. The worker measures the decode's CPU
seconds and its peak resident memory above the level before the case (VmHWM, reset through
/proc/self/clear_refs before each case: numpy, numba and torch allocations all count). Outcomes:
decoded, refused (BitstreamError), and the findings: error (any other exception: a traceback),
hang, died, memory (MemoryError or killed by the cap), over-memory (peak above the declared
budget plus SLACK_BYTES), over-time (CPU seconds above SLACK_SECONDS + SECONDS_PER_GMAC per
declared GMAC). Findings are saved to WORK/failures, the costliest mutants to WORK/costliest.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
CONFORMANCE = ROOT / "tests" / "conformance"

SLACK_BYTES = 64 << 20
"""Peak memory a decode may take beyond its declared budget: the libraries' working sets (numba
and torch scratch, Pillow's codec buffers), which no stream controls."""
SLACK_SECONDS = 2.0
SECONDS_PER_GMAC = 20.0
"""CPU seconds per declared GMAC a decode may take: far slower than any decoder here runs
(the field synthesis, the slowest per MAC, does ~0.4 GMAC/s on one core of this machine)."""
REFUSAL_COST = (0.05, 16 << 20)
"""CPU seconds or peak bytes from which a refused mutant is kept to grow from (a cheap refusal is
a dead end: its mutants are refused the same way)."""
FINDINGS = ("error", "hang", "died", "memory", "over-memory", "over-time")


# ---------------------------------------------------------------- measuring one decode


def _status_kb(key: str) -> int:
    m = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(m.group(1)) if m else 0


def tame_malloc() -> None:
    """Make glibc give freed memory back (fixed mmap threshold, no trim slack), so that a decode's
    peak RSS is its own and not hidden in memory an earlier case freed but the heap kept."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: blocks of 64 KiB and more are mapped and unmapped
    libc.mallopt(-1, 1 << 16)  # M_TRIM_THRESHOLD
    libc.malloc_trim(0)


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS
    except OSError:
        pass


def _decode(data: bytes) -> str:
    """Decode like the CLI: an image whole; a video frame by frame, nothing kept."""
    import numpy as np

    from dappled.codec import api
    from dappled.codec.video import iter_decode, stream_header

    h = stream_header(data)
    if h.frame_count == 1:
        out = api.decode_image(data)
        return f"decoded {out.shape}"
    import io

    n = 0
    for _, frame in iter_decode(io.BytesIO(data), size_hint=len(data)):
        if frame.shape != (h.height, h.width, 3) or frame.dtype != np.uint8:
            raise AssertionError(f"frame of shape {frame.shape} {frame.dtype}")
        n += 1
    return f"decoded {n} frames {h.width}x{h.height}"


def declared_budget(data: bytes) -> tuple[int, int] | None:
    """(MAC, bytes) the stream's decoder declares for it (a video: for its frames up to the first
    one the declaration refuses); None when the declaration refuses the stream (or its first
    frame) outright (BitstreamError, LimitError included)."""
    from dappled.codec import api, registry
    from dappled.errors import BitstreamError

    try:
        c = api.parse(data)
        impl = registry.by_id(c.header.codec_id)
        if c.header.frame_count == 1:
            b = impl.decode_budget(c.header, c.packets)
            return b.macs, b.bytes
    except BitstreamError:
        return None
    # a video is decoded frame by frame, each frame checked against its own share of the budget
    # before it is decoded (IntraDecoder, the splat video decoder): the work of the frames up to
    # the first one refused adds up, the memory is the costliest frame's
    each = []
    for p in c.frames():
        try:
            each.append(impl.decode_budget(c.header, [p]))
        except BitstreamError:
            break
    if not each:
        return None
    return sum(b.macs for b in each), max(b.bytes for b in each)


def measure(data: bytes) -> dict[str, Any]:
    """Decode one stream and measure it: outcome kind and message, CPU and wall seconds, peak
    memory above the level before (bytes), the declared budget. A traceback anywhere (the budget
    included) is the outcome ``error``."""
    from dappled.errors import BitstreamError

    res: dict[str, Any] = {"bytes": len(data)}
    try:
        res["budget"] = declared_budget(data)
    except Exception as exc:  # the finding: a traceback while declaring the budget
        res.update(kind="error", msg=f"{type(exc).__name__}: {str(exc)[:200]}",
                   tb=traceback.format_exc()[-1500:], cpu=0.0, wall=0.0, peak=0)
        return res
    tame_malloc()
    _reset_peak()
    rss0 = _status_kb("VmRSS")
    c0, t0 = time.process_time(), time.perf_counter()
    try:
        res.update(kind="decoded", msg=_decode(data))
    except BitstreamError as exc:
        res.update(kind="refused", msg=f"{type(exc).__name__}: {str(exc)[:200]}")
    except MemoryError:
        res.update(kind="memory", msg="MemoryError")
    except Exception as exc:  # the finding: a traceback
        res.update(kind="error", msg=f"{type(exc).__name__}: {str(exc)[:200]}",
                   tb=traceback.format_exc()[-1500:])
    res["cpu"] = time.process_time() - c0
    res["wall"] = time.perf_counter() - t0
    res["peak"] = max(0, _status_kb("VmHWM") - rss0) << 10
    if res["kind"] in ("decoded", "refused"):
        res["kind"] = over_budget(res) or res["kind"]
    return res


def over_budget(res: dict[str, Any]) -> str | None:
    """"over-memory" or "over-time" when a measured decode exceeds its declared budget (a
    refused declaration allows only the slack), else None."""
    macs, nbytes = res["budget"] if res["budget"] else (0, 0)
    if res["peak"] > nbytes + SLACK_BYTES:
        return "over-memory"
    if res["cpu"] > SLACK_SECONDS + SECONDS_PER_GMAC * macs / 1e9:
        return "over-time"
    return None


def worker(mem_mb: int) -> None:
    """Read length-prefixed cases on stdin, answer one JSON line per case on stdout."""
    import resource

    from fuzz_decoders import _LEN

    for path in sys.argv[3:]:  # imports, weights, compiled code: before the cap, not a case
        measure(Path(path).read_bytes())
    cap = mem_mb << 20
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    inp, out = sys.stdin.buffer, sys.stdout
    out.write("ready\n")
    out.flush()
    while True:
        head = inp.read(_LEN.size)
        if len(head) < _LEN.size:
            return
        res = measure(inp.read(_LEN.unpack(head)[0]))
        out.write(json.dumps(res) + "\n")
        out.flush()


# ---------------------------------------------------------------- the search


def seeds() -> dict[str, list[bytes]]:
    """The conformance corpus by codec name (from the stream headers)."""
    from dappled.codec import registry
    from dappled.codec.container import unpack

    out: dict[str, list[bytes]] = {}
    for path in sorted(CONFORMANCE.glob("*.dpl")):
        data = path.read_bytes()
        out.setdefault(registry.name_of(unpack(data).header.codec_id), []).append(data)
    return out


@dataclass
class Corpus:
    """One codec's seeds and its costliest mutants so far (top `keep` by CPU seconds per byte
    and by peak bytes per byte)."""

    seeds: list[bytes]
    keep: int = 8
    by_time: list[tuple[float, bytes]] = field(default_factory=list)
    by_mem: list[tuple[float, bytes]] = field(default_factory=list)

    def parent(self, rng: random.Random) -> bytes:
        """A seed, or one of the costliest mutants (the costlier, the likelier)."""
        pools = [p for p in (self.by_time, self.by_mem) if p]
        if not pools or rng.random() < 0.25:
            return rng.choice(self.seeds)
        pool = rng.choice(pools)
        return pool[min(int(rng.expovariate(0.5)), len(pool) - 1)][1]

    def add(self, data: bytes, res: dict[str, Any]) -> None:
        """Keep `data` if it is among the costliest per byte so far: a decoded stream, or a
        refused one whose refusal itself was costly (over REFUSAL_COST)."""
        if res["kind"] != "decoded" and res["cpu"] < REFUSAL_COST[0] and res["peak"] < REFUSAL_COST[1]:
            return
        for pool, score in ((self.by_time, res["cpu"] / len(data)), (self.by_mem, res["peak"] / len(data))):
            if len(pool) < self.keep or score > pool[-1][0]:
                pool.append((score, data))
                pool.sort(key=lambda t: -t[0])
                del pool[self.keep:]


@dataclass
class Tally:
    """What the cases of one codec gave."""

    counts: dict[str, int] = field(default_factory=dict)
    worst_time: dict[str, Any] = field(default_factory=dict)
    worst_mem: dict[str, Any] = field(default_factory=dict)
    cpu: float = 0.0

    def add(self, res: dict[str, Any]) -> None:
        """Count an outcome and keep the worst time and memory per byte."""
        self.counts[res["kind"]] = self.counts.get(res["kind"], 0) + 1
        self.cpu += res.get("cpu", 0.0)
        if "cpu" not in res:
            return
        t, m = res["cpu"] / res["bytes"], res["peak"] / res["bytes"]
        keys = ("kind", "msg", "bytes", "cpu", "peak", "budget")
        if t > self.worst_time.get("per_byte", -1):
            self.worst_time = {"per_byte": t, **{k: res.get(k) for k in keys}}
        if m > self.worst_mem.get("per_byte", -1):
            self.worst_mem = {"per_byte": m, **{k: res.get(k) for k in keys}}


def run_cases(decode: Any, corpora: dict[str, Corpus], cases: int, seed: int, *,
              deadline: float = float("inf"), max_pixels: int = 1 << 26, max_frames: int = 64,
              on_case: Any = None) -> dict[str, Tally]:
    """`cases` cost-guided cases per codec, round robin, until `deadline` (time.monotonic()):
    each a :func:`mutate_cost` mutant of a parent from the codec's corpus, measured by
    `decode(data) -> result dict` (:func:`measure`, or a worker), the corpus updated with it.
    `on_case(name, k, data, res)` is called after each. Deterministic for a given seed as far
    as the costs are (the corpus follows the measured costs)."""
    from _fuzz import mutate_cost

    tallies = {n: Tally() for n in corpora}
    for k in range(cases):
        for name, corpus in corpora.items():
            if time.monotonic() > deadline:
                return tallies
            rng = random.Random(f"{seed}:{name}:{k}")
            data = mutate_cost(corpus.parent(rng), rng, max_pixels=max_pixels, max_frames=max_frames)
            res = decode(data)
            tallies[name].add(res)
            if res["kind"] in ("decoded", "refused"):
                corpus.add(data, res)
            if on_case:
                on_case(name, k, data, res)
    return tallies


def _fmt_bytes(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _budget(b: Any) -> str:
    if not b:
        return "refused"
    from dappled.codec.registry import Budget

    return Budget(*b).describe()


def report(tallies: dict[str, Tally]) -> str:
    """The markdown table of a run."""
    lines = ["| decoder | cases | decoded | refused | findings | worst CPU time / byte (stream, budget) | "
             "worst peak memory / byte (stream, budget) |", "|---|---:|---:|---:|---|---|---|"]
    for n, t in tallies.items():
        c = t.counts
        found = ", ".join(f"{c[k]} {k}" for k in FINDINGS if c.get(k)) or "0"
        wt, wm = t.worst_time, t.worst_mem
        lines.append(
            f"| {n} | {sum(c.values())} | {c.get('decoded', 0)} | {c.get('refused', 0)} | {found} | "
            f"{wt.get('per_byte', 0) * 1e3:.3g} ms/B ({wt.get('bytes')} B, {wt.get('cpu', 0):.2f} s, "
            f"{wt.get('kind')}; {_budget(wt.get('budget'))}) | "
            f"{wm.get('per_byte', 0) / 1e3:.3g} kB/B ({wm.get('bytes')} B, {_fmt_bytes(wm.get('peak', 0))}, "
            f"{wm.get('kind')}; {_budget(wm.get('budget'))}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000, help="cases per codec (at most)")
    ap.add_argument("--minutes", type=float, default=10.0, help="stop after this wall time")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--mem-mb", type=int, default=3072, help="data segment cap of the worker (MiB)")
    ap.add_argument("--keep", type=int, default=8, help="costliest mutants kept per codec and measure")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--codec", action="append", help="only these (default: every codec of the corpus)")
    ap.add_argument("--work", type=Path, default=Path("runs/costfuzz"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from fuzz_decoders import Worker

    all_seeds = seeds()
    names = args.codec or list(all_seeds)
    corpora = {n: Corpus(all_seeds[n], args.keep) for n in names}
    warm = sorted(p for p in CONFORMANCE.glob("*.dpl"))
    w = Worker(args.mem_mb, warm, script=__file__)
    fail_dir = args.work / "failures"

    def decode(data: bytes) -> dict[str, Any]:
        nonlocal w
        line = w.run(data, args.timeout)
        if line.startswith("{"):
            return json.loads(line)
        kind = "hang" if line == "hang" else "memory" if line.startswith("memory") else "died"
        w.close()
        w = Worker(args.mem_mb, warm, script=__file__)
        return {"kind": kind, "msg": line, "bytes": len(data)}

    def on_case(name: str, k: int, data: bytes, res: dict[str, Any]) -> None:
        if res["kind"] in FINDINGS:
            fail_dir.mkdir(parents=True, exist_ok=True)
            (fail_dir / f"{name}-{k}.dpl").write_bytes(data)
            (fail_dir / f"{name}-{k}.json").write_text(json.dumps(res, indent=1))
            print(f"{name} case {k}: {res['kind']} {res.get('msg', '')[:200]} "
                  f"(cpu {res.get('cpu', 0):.1f} s, peak {_fmt_bytes(res.get('peak', 0))}, "
                  f"budget {_budget(res.get('budget'))})", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    try:
        tallies = run_cases(decode, corpora, args.cases, args.seed, deadline=t0 + 60 * args.minutes,
                            on_case=on_case)
    finally:
        w.close()
    seconds = time.monotonic() - t0
    keep_dir = args.work / "costliest"
    keep_dir.mkdir(parents=True, exist_ok=True)
    for n, corpus in corpora.items():
        for what, pool in (("time", corpus.by_time), ("mem", corpus.by_mem)):
            for i, (_, data) in enumerate(pool[:2]):
                (keep_dir / f"{n}-{what}{i}.dpl").write_bytes(data)
    print(report(tallies))
    total = sum(sum(t.counts.values()) for t in tallies.values())
    print(f"\n{total} cases in {seconds / 60:.1f} min (seed {args.seed}, timeout {args.timeout:g} s, "
          f"cap {args.mem_mb} MiB)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {"cases": total, "seconds": round(seconds, 1), "seed": args.seed,
                   "per_codec": {n: {"counts": t.counts, "cpu": round(t.cpu, 1), "worst_time": t.worst_time,
                                     "worst_mem": t.worst_mem} for n, t in tallies.items()}}
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]))
    else:
        main()

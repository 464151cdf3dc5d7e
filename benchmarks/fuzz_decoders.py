"""Structure-aware fuzzing of every registered decoder (issue 10), under a memory limit and a
per-case time limit.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz_decoders.py \
        --cases 12000 --minutes 30 --json runs/fuzz/summary.json

For every codec (and the splat video codec's predicted frames, as `splatv-video`) a small real
stream is made, then cases are CRC-valid mutants of it (tests/_fuzz.py: random field values,
valid entropy-coded leaves with random symbols, chunk tree edits, container header and packet
fields). Each case is decoded in a worker process whose data segment is capped (--mem-mb,
RLIMIT_DATA); a case that takes longer than --timeout seconds kills the worker (a hang). An
outcome is one of: decoded (a frame of the declared shape), refused (BitstreamError), memory
(MemoryError or the worker killed by the cap: an over-limit allocation), error (any other
exception: a traceback), hang, died (the worker crashed). Failing cases are saved to --save.
Cases are spread round-robin over the codecs until --cases per codec or --minutes is reached.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

_LEN = struct.Struct("<I")


# ---------------------------------------------------------------- worker side


def _decode(data: bytes) -> tuple[int, ...]:
    from dappled.codec import api
    from dappled.codec.video import decode_video, stream_header

    h = stream_header(data)
    if h.frame_count > 1:
        frames = decode_video(data)
        return (len(frames), *frames[0].shape)
    return api.decode_image(data).shape


def worker(mem_mb: int) -> None:
    """Read length-prefixed cases on stdin, answer one outcome line per case on stdout."""
    import resource

    from dappled.errors import BitstreamError

    # load every decoder once (imports, weights, compiled code) before the cap applies
    for path in sys.argv[3:]:
        _decode(Path(path).read_bytes())
    cap = mem_mb << 20
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    inp, out = sys.stdin.buffer, sys.stdout
    out.write("ready\n")  # the start-up above is not a case: the parent waits for this line
    out.flush()
    while True:
        head = inp.read(_LEN.size)
        if len(head) < _LEN.size:
            return
        data = inp.read(_LEN.unpack(head)[0])
        try:
            shape = _decode(data)
            msg = f"decoded {shape}"
        except BitstreamError as exc:
            msg = f"refused {type(exc).__name__}"
        except MemoryError:
            msg = "memory MemoryError"
        except Exception as exc:  # the finding: a traceback
            tb = traceback.format_exc().replace("\n", "\\n")
            msg = f"error {type(exc).__name__}: {str(exc)[:200]} | {tb[-1500:]}"
        out.write(msg.replace("\n", " ") + "\n")
        out.flush()


# ---------------------------------------------------------------- parent side


class Worker:
    """A decoding worker process (`script` --worker: this module's, or another fuzzer's) that
    answers one line per case; a case past its timeout or a dead worker is reported, not waited on."""

    def __init__(self, mem_mb: int, bases: list[Path], script: str = __file__) -> None:
        self.proc = subprocess.Popen([sys.executable, script, "--worker", str(mem_mb), *map(str, bases)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buf = b""
        ready = self._line(600.0)
        if ready != "ready":
            raise SystemExit(f"fuzz worker did not start: {ready}")

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return "hang"
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    rc = self.proc.wait()
                    return "memory (killed)" if rc in (-9, 137) else f"died rc={rc}"
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def run(self, data: bytes, timeout: float) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(_LEN.pack(len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            return "died"
        return self._line(timeout)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _bases(folder: Path) -> dict[str, Path]:
    """One small real stream per codec, plus a 4-frame splat video (predicted frames)."""
    from _clips import FAST, moving_pattern

    from dappled.codec import api, registry
    from dappled.codec.video import encode_video
    from dappled.datasets import SAMPLE_IMAGE, load_image

    folder.mkdir(parents=True, exist_ok=True)
    image = load_image(SAMPLE_IMAGE)[180:212, 300:348]
    out = {}
    for name in registry.names(streams=True):
        path = folder / f"{name}.dpl"
        if not path.exists():
            path.write_bytes(api.encode_image(image, name, **registry.get(name).test_encode_kwargs()))
        out[name] = path
    path = folder / "splatv-video.dpl"
    if not path.exists():
        path.write_bytes(encode_video(moving_pattern(4), 25, "splat", gop=4, kbps=300, **FAST).data)
    out["splatv-video"] = path
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000, help="cases per codec (at most)")
    ap.add_argument("--minutes", type=float, default=30.0, help="stop after this wall time")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--mem-mb", type=int, default=3072, help="data segment cap of the worker (MiB)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--codec", action="append", help="only these (default: all, plus splatv-video)")
    ap.add_argument("--work", type=Path, default=Path("runs/fuzz"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from _fuzz import mutate

    bases = _bases(args.work / "bases")
    names = args.codec or list(bases)
    base_bytes = {n: bases[n].read_bytes() for n in names}
    save = args.work / "failures"
    counts: dict[str, dict[str, int]] = {n: {} for n in names}
    spent: dict[str, float] = {}
    w = Worker(args.mem_mb, [bases[n] for n in names])
    t0 = time.monotonic()
    i = 0
    try:
        while time.monotonic() - t0 < args.minutes * 60:
            name = names[i % len(names)]
            k = i // len(names)
            if k >= args.cases:
                break
            rng = random.Random(f"{args.seed}:{name}:{k}")
            data = mutate(base_bytes[name], rng)
            t_case = time.monotonic()
            outcome = w.run(data, args.timeout)
            spent[name] = spent.get(name, 0.0) + time.monotonic() - t_case
            kind = outcome.split(" ", 1)[0]
            counts[name][kind] = counts[name].get(kind, 0) + 1
            if kind not in ("decoded", "refused"):
                save.mkdir(parents=True, exist_ok=True)
                (save / f"{name}-{k}.dpl").write_bytes(data)
                (save / f"{name}-{k}.txt").write_text(outcome.replace("\\n", "\n"))
                print(f"{name} case {k}: {outcome[:300]}", file=sys.stderr, flush=True)
                if kind in ("hang", "died", "memory") or outcome.startswith("memory (killed)"):
                    w.close()
                    w = Worker(args.mem_mb, [bases[n] for n in names])
            i += 1
            if i % 2000 == 0:
                print(f"{i} cases, {time.monotonic() - t0:.0f} s: {json.dumps(counts)}", file=sys.stderr,
                      flush=True)
    finally:
        w.close()
    seconds = time.monotonic() - t0
    summary: dict[str, Any] = {"cases": i, "seconds": round(seconds, 1), "timeout_s": args.timeout,
                               "mem_mb": args.mem_mb, "seed": args.seed, "per_codec": counts,
                               "decode_seconds": {n: round(v, 1) for n, v in spent.items()}}
    print("| decoder | cases | decoded | refused (BitstreamError) | tracebacks | hangs | over-limit memory | "
          "crashes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        c = counts[n]
        print(f"| {n} | {sum(c.values())} | {c.get('decoded', 0)} | {c.get('refused', 0)} | "
              f"{c.get('error', 0)} | {c.get('hang', 0)} | {c.get('memory', 0)} | {c.get('died', 0)} |")
    print(f"\n{i} cases in {seconds / 60:.1f} min; decode seconds per codec: "
          + ", ".join(f"{n} {v:.0f}" for n, v in spent.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]))
    else:
        main()

"""The resumable rate-distortion runner: every (codec series, rate point, image) encoded once.

For each point it records the rate (8 x bytes of the whole container / pixels), PSNR (RGB,
8-bit, whole image), MS-SSIM (see :func:`dappled.eval.metrics.ms_ssim`), encode seconds and
decode seconds (the second of two decodes, so a first-call warm-up such as JIT compilation or a
library import is not counted). Each finished point is added to ``DIR/results.json`` (the
record a resumed run reads) and ``DIR/results.csv`` (the same rows for spreadsheets), both
rewritten atomically, so an interrupted run loses at most the points in flight and a re-run
skips every point already there. A point is identified by series label, rate parameters and
the image's file name plus a hash of its bytes.

Points run in parallel over ``jobs`` worker processes (spawned, so no forked torch state),
each with ``max(1, cores // jobs)`` torch threads, or as Ray tasks across a cluster (``ray``:
one CPU each, the image's file bytes sent by value through the object store, so workers need
no shared filesystem). Either way the driver alone writes the results files, once per point
(dappled.scale.runner).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from dappled.errors import InputError, OptionError
from dappled.fileio import atomic_write_bytes

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
RESULTS_VERSION = 1

FIELDS = (
    "series", "codec", "options", "params", "quality", "bpp_target", "image", "image_sha1",
    "width", "height", "bytes", "bpp", "psnr", "ms_ssim", "encode_s", "decode_s", "device",
    "seed", "dataset", "finished_utc",
)

RATE_KEYS = ("quality", "bpp")


def format_params(point: dict[str, Any]) -> str:
    """Canonical text of a rate point, e.g. ``quality=20`` or ``bpp=0.43`` (part of the key)."""
    return ",".join(f"{k}={point[k]:g}" if isinstance(point[k], float) else f"{k}={point[k]}"
                    for k in sorted(point))


@dataclass(frozen=True)
class Series:
    """One curve: a codec, fixed codec options, and the rate points to sweep."""

    codec: str
    points: tuple[tuple[tuple[str, Any], ...], ...]
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """Name used in tables and plots: the codec, plus its options if any."""
        if not self.options:
            return self.codec
        return f"{self.codec}[{','.join(f'{k}={v}' for k, v in self.options)}]"

    def point_dicts(self) -> list[dict[str, Any]]:
        """The rate points as kwargs of ``api.encode_image``."""
        return [dict(p) for p in self.points]


def parse_param(text: str) -> tuple[str, str, list[str]]:
    """Split ``CODEC:KEY=V1,V2`` into (codec, key, values); OptionError when malformed."""
    if ":" not in text or "=" not in text.split(":", 1)[1]:
        raise OptionError(f"--param wants CODEC:KEY=VALUE[,VALUE...], got {text!r}")
    codec, rest = text.split(":", 1)
    key, values = rest.split("=", 1)
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not codec.strip() or not key.strip() or not items:
        raise OptionError(f"--param wants CODEC:KEY=VALUE[,VALUE...], got {text!r}")
    return codec.strip(), key.strip(), items


def plan_series(codecs: Sequence[str], points: int, params: Sequence[str] = ()) -> list[Series]:
    """Build the series of a run.

    Each codec sweeps ``codec.rd_points(points)`` unless ``params`` gives its rate points
    explicitly (``jpeg:quality=10,20,50`` or ``splat:bpp=0.43,0.72``); any other key is a fixed
    codec option for every point of that codec (``jpeg:subsampling=444``).
    """
    from dappled.codec import registry
    from dappled.codec.registry import EncodeParams

    if not codecs:
        raise OptionError("name at least one codec (--codec)")
    if len(set(codecs)) != len(codecs):
        raise OptionError("a codec is named twice in --codec")
    explicit: dict[str, dict[str, list[str]]] = {c: {} for c in codecs}
    options: dict[str, dict[str, str]] = {c: {} for c in codecs}
    for text in params:
        codec, key, values = parse_param(text)
        if codec not in explicit:
            raise OptionError(f"--param {text!r} names codec {codec!r}, which is not in --codec")
        if key in RATE_KEYS:
            explicit[codec][key] = values
        else:
            if len(values) != 1:
                raise OptionError(f"--param {text!r}: codec option {key} takes one value")
            options[codec][key] = values[0]
    out = []
    for name in codecs:
        try:
            impl = registry.get(name)
        except ImportError as exc:  # a codec module that is broken or lacks a library
            raise OptionError(f"codec {name} cannot be loaded ({exc})") from None
        rate = explicit[name]
        if len(rate) > 1:
            raise OptionError(f"give quality or bpp points for {name}, not both")
        if rate:
            key, values = next(iter(rate.items()))
            try:
                pts = [{key: int(v) if key == "quality" else float(v)} for v in values]
            except ValueError:
                raise OptionError(f"--param {name}:{key}= wants numbers, got {','.join(values)}") from None
        else:
            if points < 1:
                raise OptionError(f"--points must be at least 1, got {points}")
            pts = impl.rd_points(points)
        for p in pts:
            impl.check_params(EncodeParams(quality=p.get("quality"), bpp=p.get("bpp")))
        if len({format_params(p) for p in pts}) != len(pts):
            raise OptionError(f"repeated rate point for {name}")
        out.append(Series(name, tuple(tuple(sorted(p.items())) for p in pts),
                          tuple(sorted(options[name].items()))))
    return out


@dataclass(frozen=True)
class ImageRef:
    """An input image: its path, display name and content hash (part of each result's key)."""

    path: Path
    name: str
    sha1: str


def image_refs(paths: Iterable[str | os.PathLike[str]]) -> list[ImageRef]:
    """Hash the image files of a run (their bytes, not decoded pixels)."""
    refs = []
    for p in paths:
        path = Path(p)
        try:
            digest = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        refs.append(ImageRef(path, path.name, digest))
    names = [r.name for r in refs]
    if len(set(names)) != len(names):
        raise InputError("two images of the run share a file name")
    return refs


def point_key(series_label: str, params: str, image: str, sha1: str) -> str:
    """The identity of one result: what a resumed run looks up."""
    return f"{series_label}|{params}|{image}|{sha1}"


def row_key(row: dict[str, Any]) -> str:
    """The key of a stored result row."""
    return point_key(row["series"], row["params"], row["image"], row["image_sha1"])


def load_results(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows already stored in ``DIR/results.json`` (empty when there is none yet)."""
    path = Path(out_dir) / RESULTS_JSON
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text())
        rows = doc["results"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "series" in r for r in rows):
            raise ValueError("bad rows")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a results file of `dappled eval` ({exc})") from None
    return rows


def save_results(out_dir: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write results.json and results.csv atomically (whole files, so never a torn row)."""
    out = Path(out_dir)
    doc = {"format": "dappled-eval-results", "version": RESULTS_VERSION, "results": list(rows)}
    atomic_write_bytes(out / RESULTS_JSON, (json.dumps(doc, indent=1) + "\n").encode())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in FIELDS})
    atomic_write_bytes(out / RESULTS_CSV, buf.getvalue().encode())


@dataclass(frozen=True)
class Task:
    """One encode/decode/measure job, picklable for a worker process."""

    series: str
    codec: str
    options: tuple[tuple[str, str], ...]
    point: tuple[tuple[str, Any], ...]
    image: ImageRef
    device: str
    seed: int
    dataset: str

    @property
    def key(self) -> str:
        return point_key(self.series, format_params(dict(self.point)), self.image.name, self.image.sha1)


@lru_cache(maxsize=4)
def _load(path: Path) -> Any:
    from dappled.datasets.images import load_image

    return load_image(path)


def _load_bytes(data: bytes, name: str) -> Any:
    from dappled.datasets.images import load_image_bytes

    return load_image_bytes(data, name)


def run_task(task: Task, data: bytes | None = None) -> dict[str, Any]:
    """Encode, decode and measure one point; returns its result row. The image comes from
    ``data`` (its file's bytes) when given, else from its path."""
    from dappled.codec.api import decode_image, encode_image
    from dappled.eval.metrics import ms_ssim, psnr

    image = _load(task.image.path) if data is None else _load_bytes(data, task.image.name)
    h, w = image.shape[:2]
    point = dict(task.point)
    t0 = time.perf_counter()
    data = encode_image(image, task.codec, quality=point.get("quality"), bpp=point.get("bpp"),
                        device=task.device, progress=False, seed=task.seed, **dict(task.options))
    encode_s = time.perf_counter() - t0
    decode_image(data, device=task.device)  # warm-up: imports, JIT, caches
    t0 = time.perf_counter()
    decoded = decode_image(data, device=task.device)
    decode_s = time.perf_counter() - t0
    return {
        "series": task.series,
        "codec": task.codec,
        "options": ",".join(f"{k}={v}" for k, v in task.options),
        "params": format_params(point),
        "quality": point.get("quality"),
        "bpp_target": point.get("bpp"),
        "image": task.image.name,
        "image_sha1": task.image.sha1,
        "width": w,
        "height": h,
        "bytes": len(data),
        "bpp": 8.0 * len(data) / (w * h),
        "psnr": psnr(image, decoded),
        "ms_ssim": ms_ssim(image, decoded),
        "encode_s": encode_s,
        "decode_s": decode_s,
        "device": task.device,
        "seed": task.seed,
        "dataset": task.dataset,
        "finished_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def worker_threads(jobs: int) -> int:
    """Torch threads per worker so that jobs x threads does not exceed the cores."""
    from dappled.scale.runner import worker_threads as _threads

    return _threads(jobs)


@dataclass
class SweepOutcome:
    """What a sweep did: all rows of the run's points, and how many were new."""

    rows: list[dict[str, Any]]
    done_before: int
    ran: int
    all_rows: list[dict[str, Any]] = field(default_factory=list)


def plan_tasks(series: Sequence[Series], images: Sequence[ImageRef], device: str, seed: int,
               dataset: str) -> list[Task]:
    """Every point of the run, image by image (so an interrupted or still growing run of a slow
    codec already holds whole curves of its first images), then series by series, rate by rate."""
    return [Task(s.label, s.codec, s.options, p, img, device, seed, dataset)
            for img in images for s in series for p in s.points]


def run_sweep(series: Sequence[Series], images: Sequence[ImageRef], out_dir: str | os.PathLike[str], *,
              jobs: int = 1, ray: str | None = None, device: str = "cpu", seed: int = 0, dataset: str = "",
              progress: bool = True,
              on_row: Callable[[dict[str, Any]], None] | None = None) -> SweepOutcome:
    """Run the points of ``series`` x ``images`` not already stored in ``out_dir``.

    Local worker processes (``jobs``), or Ray tasks on the cluster at ``ray`` (``local`` starts
    a runtime here; see dappled.scale.cluster). Returns the rows of this run's points (stored
    and new). A DappledError from any point stops the sweep after saving the rows finished so
    far, and is raised; so does Ctrl-C, which cancels the points in flight: a re-run resumes.
    """
    from tqdm import tqdm

    from dappled.scale.runner import open_backend, run_all

    if jobs < 1:
        raise OptionError(f"--jobs must be at least 1, got {jobs}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stored = load_results(out)
    by_key = {row_key(r): r for r in stored}
    tasks = plan_tasks(series, images, device, seed, dataset)
    todo = [t for t in tasks if t.key not in by_key]
    done_before = len(tasks) - len(todo)
    all_rows = list(stored)

    bar = tqdm(total=len(tasks), initial=done_before, desc="eval", unit="pt", disable=not progress,
               dynamic_ncols=True)

    def finish(i: int, row: dict[str, Any]) -> None:
        key = row_key(row)
        if key in by_key:  # never two rows for one point, whatever a backend does
            return
        all_rows.append(row)
        by_key[key] = row
        save_results(out, all_rows)
        bar.set_postfix_str(f"{row['series']} {row['params']} {row['image']}")
        bar.update()
        if on_row is not None:
            on_row(row)

    try:
        if todo:
            with open_backend(jobs=jobs, ray=ray, device=device) as backend:
                left = {}  # image sha1 -> points not yet submitted (frees the shared bytes after)
                for t in todo:
                    left[t.image.sha1] = left.get(t.image.sha1, 0) + 1
                shared: dict[str, Any] = {}

                def make_args(i: int) -> tuple[Any, ...]:
                    task = todo[i]
                    if ray is None:
                        return (task,)
                    sha = task.image.sha1
                    if sha not in shared:
                        shared[sha] = backend.put(_read_bytes(task.image.path))
                    ref = shared[sha]
                    left[sha] -= 1
                    if left[sha] <= 0:  # a retry reads the file again
                        shared.pop(sha)
                    return (task, ref)

                run_all(backend, run_task, len(todo), make_args, lambda i, row: finish(i, row))
    finally:
        bar.close()
    rows = [by_key[t.key] for t in tasks]
    return SweepOutcome(rows, done_before, len(todo), all_rows)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None

"""Encode a folder (or a glob) of images, one ``.dpl`` per image, on local processes or Ray.

Resumable: ``OUTDIR/encode-manifest.json`` records, per output, the source's path, the sha256
of the source's bytes and of the output's bytes, and the settings it was coded with. An input
whose output exists with exactly the bytes the manifest records (its sha256 is checked again),
from the same source bytes and the same settings, is skipped; anything else is coded (again).
An output that came from another source (``a.png`` then ``a.jpg``, both ``a.dpl``), or that
exists but is not in the manifest, is never replaced without ``overwrite``: the run stops before
coding anything. Workers get each image's file bytes by value and send the stream back; the
driver records each output in the manifest and then writes the file, both atomically, as each
image finishes, so an interrupted run (Ctrl-C) leaves only outputs it can verify or redo.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dappled.errors import InputError, OptionError
from dappled.fileio import atomic_write_bytes

MANIFEST = "encode-manifest.json"
MANIFEST_FORMAT = "dappled-encode-manifest"
MANIFEST_VERSION = 2  # 2: source path, source_sha256 and the output's sha256 (1: source name, sha1)


def is_folder_source(src: str) -> bool:
    """True for a folder or a glob pattern (what `dappled encode` codes as a batch)."""
    return Path(src).is_dir() or (not Path(src).exists() and glob.has_magic(src))


def folder_inputs(src: str) -> list[Path]:
    """The image files of a folder (not recursive) or of a glob pattern, sorted by name."""
    from dappled.datasets.images import IMAGE_SUFFIXES

    if Path(src).is_dir():
        files = [p for p in Path(src).iterdir() if p.is_file()]
    else:
        files = [Path(p) for p in glob.glob(src, recursive=True) if Path(p).is_file()]
    files = sorted((p for p in files if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: (p.name, str(p)))
    if not files:
        raise InputError(f"{src}: no images (extensions {', '.join(IMAGE_SUFFIXES)})")
    stems: dict[str, Path] = {}
    for p in files:
        if p.stem in stems:
            raise InputError(f"{stems[p.stem]} and {p} would both be coded to {p.stem}.dpl")
        stems[p.stem] = p
    return files


@dataclass(frozen=True)
class EncodeSettings:
    """What an output depends on besides its source bytes (part of the manifest's skip test)."""

    codec: str
    quality: int | None = None
    bpp: float | None = None
    device: str = "cpu"
    seed: int = 0
    options: tuple[tuple[str, str], ...] = ()

    def key(self) -> str:
        """Canonical text of the settings."""
        return json.dumps({"codec": self.codec, "quality": self.quality, "bpp": self.bpp,
                           "device": self.device, "seed": self.seed, "options": dict(self.options)},
                          sort_keys=True)


def encode_one(data: bytes, name: str, settings: EncodeSettings) -> tuple[bytes, int, int, float]:
    """Decode an image file's bytes and encode it; returns (stream, width, height, seconds).
    Runs in a worker."""
    from dappled.codec.api import encode_image
    from dappled.datasets.images import load_image_bytes

    image = load_image_bytes(data, name)
    t0 = time.perf_counter()
    stream = encode_image(image, settings.codec, quality=settings.quality, bpp=settings.bpp,
                          device=settings.device, seed=settings.seed, **dict(settings.options))
    return stream, image.shape[1], image.shape[0], time.perf_counter() - t0


@dataclass
class FolderReport:
    """What a folder encode did."""

    out_dir: Path
    encoded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes: int = 0
    pixels: int = 0
    seconds: float = 0.0

    @property
    def bpp(self) -> float:
        """Mean bits per pixel of the images coded in this run."""
        return 8 * self.bytes / self.pixels if self.pixels else 0.0


def load_manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Entries of ``OUTDIR/encode-manifest.json`` by output name (empty when there is none).
    Version 1 entries are read too: they are never taken as done (no output hash), and their
    source is a file name."""
    path = out_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("outputs"), dict):
            raise ValueError("not a manifest")
        if doc.get("version", 1) not in (1, MANIFEST_VERSION):
            raise ValueError(f"manifest version {doc.get('version')} is newer than this dappled")
        if not all(isinstance(v, dict) for v in doc["outputs"].values()):
            raise ValueError("an entry is not an object")
        return dict(doc["outputs"])
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: not a manifest of `dappled encode` ({exc})") from None


def _save_manifest(out_dir: Path, outputs: dict[str, dict[str, Any]]) -> None:
    doc = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
           "outputs": {k: outputs[k] for k in sorted(outputs)}}
    atomic_write_bytes(out_dir / MANIFEST, (json.dumps(doc, indent=1) + "\n").encode())


def sha256_file(path: Path) -> str | None:
    """The sha256 of a file's bytes, None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def source_id(p: Path) -> str:
    """How the manifest names a source: its absolute path."""
    return os.path.abspath(p)


def _same_source(entry: dict[str, Any], p: Path) -> bool:
    recorded = str(entry.get("source", ""))
    if os.path.isabs(recorded):
        return recorded == source_id(p)
    return recorded == p.name  # a version 1 entry: the file name only


def _is_done(entry: dict[str, Any] | None, out: Path, src_sha: str, settings_key: str) -> bool:
    """The output exists with the bytes recorded for these source bytes and settings."""
    if entry is None or entry.get("source_sha256") != src_sha or entry.get("settings") != settings_key:
        return False
    return entry.get("sha256") is not None and sha256_file(out) == entry["sha256"]


def _check_replacements(files: list[Path], out: Path, outputs: dict[str, dict[str, Any]]) -> None:
    """InputError when an input would replace an output that came from another source, or an
    existing file the manifest does not know (given ``overwrite`` this check is skipped)."""
    clashes: list[str] = []
    for p in files:
        name = f"{p.stem}.dpl"
        entry = outputs.get(name)
        if entry is not None and not _same_source(entry, p):
            clashes.append(f"{out / name} was coded from {entry.get('source')}; {p} would replace it")
        elif entry is None and (out / name).exists():
            clashes.append(f"{out / name} exists and is not in {MANIFEST}; {p} would replace it")
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise InputError(f"{clashes[0]}{more}; give --overwrite to replace")


def encode_folder(src: str, out_dir: str | os.PathLike[str], settings: EncodeSettings, *,
                  jobs: int = 1, ray: str | None = None, progress: bool = True,
                  on_file: Callable[[str], None] | None = None, overwrite: bool = False) -> FolderReport:
    """Encode every image of folder or glob ``src`` into ``out_dir/STEM.dpl``, skipping those
    already done with the same settings (output bytes verified against the manifest's sha256);
    on ``jobs`` local processes or as Ray tasks on the cluster at ``ray``. Outputs of other
    sources are replaced only with ``overwrite`` (else InputError before any work). A
    DappledError (an unreadable image, a bad option) or Ctrl-C stops the run after the finished
    outputs are recorded, and is raised; a re-run goes on from there."""
    from tqdm import tqdm

    from dappled.codec import registry
    from dappled.codec.registry import EncodeParams
    from dappled.scale.runner import open_backend, run_all

    impl = registry.get(settings.codec)
    impl.check_params(EncodeParams(settings.quality, settings.bpp))
    files = folder_inputs(src)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OptionError(f"{out}: not a folder (a folder encode writes one .dpl per image into -o)")
    out.mkdir(parents=True, exist_ok=True)
    outputs = load_manifest(out)
    if not overwrite:
        _check_replacements(files, out, outputs)
    key = settings.key()
    report = FolderReport(out)
    todo: list[tuple[Path, str]] = []
    for p in files:
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise InputError(f"{p}: cannot read ({exc.strerror})") from None
        src_sha = hashlib.sha256(data).hexdigest()
        name = f"{p.stem}.dpl"
        if _is_done(outputs.get(name), out / name, src_sha, key):
            report.skipped.append(name)
        else:
            todo.append((p, src_sha))  # bytes read again at submission: only the window is in memory
    bar = tqdm(total=len(files), initial=len(report.skipped), desc="encode", unit="img",
               disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()

    def make_args(i: int) -> tuple[Any, ...]:
        p = todo[i][0]
        try:
            return (p.read_bytes(), str(p), settings)
        except OSError as exc:
            raise InputError(f"{p}: cannot read ({exc.strerror})") from None

    def done(i: int, result: tuple[bytes, int, int, float]) -> None:
        p, src_sha = todo[i]
        stream, w, h, seconds = result
        name = f"{p.stem}.dpl"
        # the manifest first: interrupted between the two writes, the output's hash does not
        # match and a re-run codes it again (never an output the manifest does not know)
        outputs[name] = {"source": source_id(p), "source_sha256": src_sha,
                         "sha256": hashlib.sha256(stream).hexdigest(), "settings": key,
                         "bytes": len(stream), "width": w, "height": h, "encode_s": round(seconds, 4)}
        _save_manifest(out, outputs)
        atomic_write_bytes(out / name, stream)
        report.encoded.append(name)
        report.bytes += len(stream)
        report.pixels += w * h
        bar.update()
        if on_file is not None:
            on_file(name)

    try:
        if todo:
            with open_backend(jobs=jobs, ray=ray, device=settings.device) as backend:
                run_all(backend, encode_one, len(todo), make_args, done)
    finally:
        bar.close()
        report.seconds = time.perf_counter() - t0
    return report


def settings_from(codec: str, quality: int | None, bpp: float | None, device: str, seed: int,
                  options: dict[str, str] | Sequence[tuple[str, str]]) -> EncodeSettings:
    """EncodeSettings from CLI values (options sorted, as strings)."""
    items = options.items() if isinstance(options, dict) else options
    return EncodeSettings(codec, quality, bpp, device, seed, tuple(sorted((k, str(v)) for k, v in items)))

"""Speed benchmark: decode frames per second at the image's native size, and encode time.

Per codec: one encode (timed; neural encoders take tens of seconds, so once is enough), then
``warmup`` untimed decodes (imports, JIT compilation, caches, CUDA context), then ``runs``
timed decodes; the decode figure is the median. A decode is the whole library call
(``api.decode_image``: container parse, entropy decoding, reconstruction, and the copy to a host
uint8 array), so on CUDA the time includes the device-to-host transfer and is synchronised.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dappled.errors import DappledError, OptionError


@dataclass
class BenchRow:
    """Timings of one codec on one image."""

    codec: str
    setting: str
    width: int
    height: int
    bytes: int
    bpp: float
    psnr: float
    encode_s: float
    decode_s: float  # median of the timed decodes
    runs: int
    device: str

    @property
    def fps(self) -> float:
        """Decoded frames per second (1 / median decode time)."""
        return 1.0 / self.decode_s if self.decode_s > 0 else float("inf")


def bench_codec(image: np.ndarray, codec: str, *, runs: int = 20, warmup: int = 2, device: str = "cpu",
                settings: dict[str, Any] | None = None) -> BenchRow:
    """Encode ``image`` once with ``codec`` and time ``runs`` decodes after ``warmup`` ones.

    ``settings`` are kwargs of ``api.encode_image`` (quality, bpp, codec options); by default
    the codec's default quality.
    """
    from dappled.codec import registry
    from dappled.codec.api import decode_image, encode_image
    from dappled.eval.metrics import psnr

    if runs < 1:
        raise OptionError(f"--runs must be at least 1, got {runs}")
    impl = registry.get(codec)
    kwargs = dict(settings or {})
    if kwargs.get("quality") is None and kwargs.get("bpp") is None:
        kwargs["quality"] = impl.default_quality
    setting = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in sorted(kwargs.items()) if v is not None)
    t0 = time.perf_counter()
    data = encode_image(image, codec, device=device, **kwargs)
    encode_s = time.perf_counter() - t0
    out = None
    for _ in range(max(0, warmup)):
        out = decode_image(data, device=device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = decode_image(data, device=device)
        times.append(time.perf_counter() - t0)
    assert out is not None
    h, w = image.shape[:2]
    return BenchRow(codec, setting, w, h, len(data), 8 * len(data) / (w * h), psnr(image, out),
                    encode_s, statistics.median(times), runs, device)


def parse_settings(codecs: Sequence[str], params: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``CODEC:KEY=VALUE`` texts -> per-codec encode kwargs (quality and bpp become numbers)."""
    from dappled.eval.sweep import parse_param

    settings: dict[str, dict[str, Any]] = {c: {} for c in codecs}
    for text in params:
        codec, key, values = parse_param(text)
        if codec not in settings:
            raise OptionError(f"--param {text!r} names codec {codec!r}, which is not benchmarked")
        if len(values) != 1:
            raise OptionError(f"--param {text!r}: bench takes one value per key")
        value: Any = values[0]
        try:
            if key == "quality":
                value = int(value)
            elif key == "bpp":
                value = float(value)
        except ValueError:
            raise OptionError(f"--param {text!r}: {key} wants a number") from None
        settings[codec][key] = value
    return settings


def bench(codecs: Sequence[str], image: np.ndarray, *, runs: int = 20, warmup: int = 2,
          device: str = "cpu", settings: dict[str, dict[str, Any]] | None = None,
          progress: bool = True, skip_errors: bool = False) -> tuple[list[BenchRow], list[str]]:
    """Benchmark several codecs; returns the rows and a note per codec that could not run.

    A codec whose module cannot be imported is always skipped with a note; with
    ``skip_errors`` (benchmarking every registered codec) so is one that refuses the image,
    e.g. a video-only codec.
    """
    from tqdm import tqdm

    from dappled.codec.api import check_device

    check_device(device)
    rows, skipped = [], []
    for name in tqdm(codecs, desc="bench", unit="codec", disable=not progress):
        try:
            rows.append(bench_codec(image, name, runs=runs, warmup=warmup, device=device,
                                    settings=(settings or {}).get(name)))
        except ImportError as exc:  # a codec still being written, or a missing optional library
            skipped.append(f"{name}: cannot import ({exc})")
        except DappledError as exc:
            if not skip_errors:
                raise
            skipped.append(f"{name}: {exc}")
    return rows, skipped


def format_table(rows: Sequence[BenchRow]) -> str:
    """A Markdown table of the rows (also readable as plain text)."""
    lines = [
        "| codec | setting | size | bytes | bpp | PSNR (dB) | encode (s) | decode (ms, median) | fps "
        "| device |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r.codec} | {r.setting} | {r.width}x{r.height} | {r.bytes} | {r.bpp:.4f} "
                     f"| {r.psnr:.2f} | {r.encode_s:.3f} | {1000 * r.decode_s:.2f} | {r.fps:.1f} "
                     f"| {r.device} |")
    return "\n".join(lines)

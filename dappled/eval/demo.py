"""The demo: one codec against JPEG, WebP and AVIF at the same file size, with a picture.

The image is encoded with the demo codec (``field`` at the fast effort unless told otherwise);
each baseline then gets the largest quality whose stream is not above that many bytes (binary
search over its quality range), and a side-by-side crop (original | codec | baselines), each
panel labelled with codec, bytes and PSNR, is written as a PNG. Figures are whole-image
figures; bytes are whole stream files (the same container around every codec).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dappled.codec import api, registry
from dappled.fileio import atomic_open
from dappled.quality import psnr

DEMO_CODEC = registry.DEMO_CODEC
DEMO_OPTIONS = registry.DEMO_OPTIONS
BASELINES = registry.DEMO_BASELINES
SAMPLE_CROP = (60, 160, 256, 256)
"""x, y, width, height of the picture's crop of the bundled sample (kodim23: the blue-and-yellow
macaw's head, its striped face and the beak, where artefacts show first)."""

PANEL_LABEL_HEIGHT = 40
_PAD = 4


@dataclass
class CodecFigures:
    """One codec's encode of the demo image (whole-image figures)."""

    codec: str
    bytes: int
    bpp: float
    psnr: float
    quality: int | None = None  # the baseline quality the size match picked
    fits: bool = True  # False: even the lowest quality is above the target size
    encode_s: float = 0.0
    decode_ms: float | None = None


@dataclass
class DemoResult:
    """What :func:`run_demo` measured and wrote."""

    width: int
    height: int
    main: CodecFigures
    baselines: list[CodecFigures] = field(default_factory=list)
    picture: Path | None = None
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def rows(self) -> list[CodecFigures]:
        """The demo codec first, then the baselines."""
        return [self.main, *self.baselines]


def match_size(image: np.ndarray, codec: str, max_bytes: int, *,
               encode: Callable[[int], bytes] | None = None) -> tuple[int, bytes]:
    """The largest quality of `codec` whose stream of `image` is at most `max_bytes` long, and
    that stream (binary search over the quality range: sizes grow with quality). When even the
    lowest quality is larger, that quality and its stream (the caller checks the length)."""
    lo, hi = registry.get(codec).quality_range
    cache: dict[int, bytes] = {}

    def at(q: int) -> bytes:
        if q not in cache:
            cache[q] = encode(q) if encode else api.encode_image(image, codec, quality=q)
        return cache[q]

    if len(at(lo)) > max_bytes:
        return lo, at(lo)
    while lo < hi:  # invariant: at(lo) fits
        mid = (lo + hi + 1) // 2
        if len(at(mid)) <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo, at(lo)


def _clip_crop(crop: tuple[int, int, int, int] | None, width: int, height: int) -> tuple[int, int, int, int]:
    """The crop box inside the image; None: a centred square of at most 256 pixels."""
    if crop is None:
        s = min(256, width, height)
        return (width - s) // 2, (height - s) // 2, s, s
    x, y, w, h = crop
    w, h = min(w, width), min(h, height)
    x, y = min(max(x, 0), width - w), min(max(y, 0), height - h)
    return x, y, w, h


def side_by_side(panels: Sequence[tuple[str, str, np.ndarray]], crop: tuple[int, int, int, int]) -> Any:
    """A PIL image of the crop of each (title, subtitle, image) panel, left to right, each
    under a label strip."""
    from PIL import Image, ImageDraw, ImageFont

    x, y, w, h = crop
    font = ImageFont.load_default(size=14)
    n = len(panels)
    sheet = Image.new("RGB", (n * w + (n - 1) * _PAD, PANEL_LABEL_HEIGHT + h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (title, subtitle, img) in enumerate(panels):
        left = i * (w + _PAD)
        sheet.paste(Image.fromarray(np.ascontiguousarray(img[y:y + h, x:x + w])),
                    (left, PANEL_LABEL_HEIGHT))
        draw.text((left + 4, 3), title, fill="black", font=font)
        draw.text((left + 4, 21), subtitle, fill=(60, 60, 60), font=font)
    return sheet


def _label(fig: CodecFigures) -> tuple[str, str]:
    title = fig.codec if fig.quality is None else f"{fig.codec} (quality {fig.quality})"
    if not fig.fits:
        title += ", over size"
    return title, f"{fig.bytes:,} B  {fig.psnr:.2f} dB"


def run_demo(image: np.ndarray, out: str | os.PathLike[str] | None, codec: str = DEMO_CODEC, *,
             quality: int | None = None, bpp: float | None = None, options: dict[str, Any] | None = None,
             baselines: Sequence[str] = BASELINES, crop: tuple[int, int, int, int] | None = None,
             device: str = "cpu", progress: bool = True, seed: int = 0) -> DemoResult:
    """Encode and decode `image` with `codec` (options: :data:`DEMO_OPTIONS` for the demo codec
    when None), match each baseline to its stream's size, and write the side-by-side crop to
    `out` (atomically; None: no picture)."""
    if out is not None:
        api.check_output_folder(out)
    if options is None:
        options = dict(DEMO_OPTIONS) if codec == DEMO_CODEC else {}
    h, w = image.shape[:2]
    t0 = time.perf_counter()
    data = api.encode_image(image, codec, quality=quality, bpp=bpp, device=device, progress=progress,
                            seed=seed, **options)
    t_enc = time.perf_counter() - t0
    api.decode_image(data, device=device)  # warm-up: JIT compilation and caches
    t0 = time.perf_counter()
    decoded = api.decode_image(data, device=device)
    t_dec = time.perf_counter() - t0
    main = CodecFigures(codec, len(data), 8 * len(data) / (w * h), psnr(image, decoded),
                        encode_s=t_enc, decode_ms=1000 * t_dec)
    result = DemoResult(w, h, main, crop=_clip_crop(crop, w, h))
    panels = [("original", f"{w}x{h}, crop at {result.crop[0]},{result.crop[1]}", image),
              (*_label(main), decoded)]
    for name in baselines:
        if name == codec:
            continue
        q, stream = match_size(image, name, len(data))
        recon = api.decode_image(stream)
        fig = CodecFigures(name, len(stream), 8 * len(stream) / (w * h), psnr(image, recon), quality=q,
                           fits=len(stream) <= len(data))
        result.baselines.append(fig)
        panels.append((*_label(fig), recon))
    if out is not None:
        sheet = side_by_side(panels, result.crop)
        with atomic_open(out) as f:
            sheet.save(f, format="PNG")
        result.picture = Path(out)
    return result


def format_figures(result: DemoResult) -> str:
    """The figures table the CLI prints: bytes, bpp, PSNR per codec."""
    lines = [f"{'codec':<8} {'quality':>7} {'bytes':>8} {'bpp':>7} {'PSNR':>9}"]
    for fig in result.rows:
        q = "-" if fig.quality is None else str(fig.quality)
        note = "" if fig.fits else "  (lowest quality, above the size)"
        lines.append(f"{fig.codec:<8} {q:>7} {fig.bytes:>8} {fig.bpp:>7.4f} {fig.psnr:>6.2f} dB{note}")
    return "\n".join(lines)

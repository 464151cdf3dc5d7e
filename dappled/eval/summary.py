"""Mean rate-distortion curves of a run and the BD table against an anchor -> ``DIR/summary.md``.

Each curve point is the mean over the run's images at one rate setting (mean bpp, mean PSNR,
mean MS-SSIM: the usual Kodak convention). BD figures (see :mod:`dappled.eval.bdrate`) compare
the mean curves over their overlapping range, using only points measured on every image. Mean
curves average a fixed-quality codec's varied rates but a rate-targeted codec's equal ones, which
flatters the latter (the field codec's `--bpp` sweep: +6.7 % vs WebP on mean curves, +16.8 % image
by image), so the table also gives the mean of the per-image BD-rates, which treats both alike.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dappled.codec.defaults import IMAGE_CONTAINER_BYTES
from dappled.eval.bdrate import bd_quality, bd_rate, msssim_db
from dappled.fileio import atomic_write_bytes

SUMMARY_MD = "summary.md"
CONTAINER_OVERHEAD = IMAGE_CONTAINER_BYTES  # per image stream: 32-byte header, 16-byte packet header, END


@dataclass
class CurvePoint:
    """One rate setting of a codec, averaged over images."""

    params: str
    bpp: float
    psnr: float
    ms_ssim: float
    encode_s: float
    decode_s: float
    images: int
    complete: bool = True


@dataclass
class Curve:
    """The mean curve of one series (codec + options), points sorted by rate."""

    label: str
    codec: str
    baseline: bool
    points: list[CurvePoint] = field(default_factory=list)

    def complete_points(self) -> list[CurvePoint]:
        """Points measured on every image of the run (the ones BD figures use)."""
        return [p for p in self.points if p.complete]


def _is_baseline(codec: str) -> bool:
    from dappled.codec import registry

    try:
        return bool(getattr(registry.get(codec), "baseline", False))
    except Exception:  # a codec that cannot be imported now still has stored results
        return False


def mean_curves(rows: Sequence[dict[str, Any]], n_images: int | None = None) -> list[Curve]:
    """Average rows per (series, rate setting); series keep their first-seen order."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    codecs: dict[str, str] = {}
    for r in rows:
        groups.setdefault(r["series"], {}).setdefault(r["params"], []).append(r)
        codecs[r["series"]] = r["codec"]
    if n_images is None:
        n_images = len({(r["image"], r["image_sha1"]) for r in rows})
    curves = []
    for label, by_params in groups.items():
        curve = Curve(label, codecs[label], _is_baseline(codecs[label]))
        for params, rs in by_params.items():
            n = len(rs)
            curve.points.append(CurvePoint(
                params=params,
                bpp=sum(r["bpp"] for r in rs) / n,
                psnr=sum(r["psnr"] for r in rs) / n,
                ms_ssim=sum(r["ms_ssim"] for r in rs) / n,
                encode_s=sum(r["encode_s"] for r in rs) / n,
                decode_s=sum(r["decode_s"] for r in rs) / n,
                images=n,
                complete=n >= n_images,
            ))
        curve.points.sort(key=lambda p: p.bpp)
        curves.append(curve)
    return curves


@dataclass
class BdRow:
    """BD figures of one curve against the anchor (None where they cannot be computed)."""

    label: str
    bd_rate_psnr: float | None
    bd_psnr: float | None
    bd_rate_msssim: float | None
    points: int
    note: str = ""
    per_image: float | None = None  # mean of the per-image BD-rates (PSNR)
    images: int = 0  # ... over this many images (those with two points or more of both)


def _safe(fn: Any, *args: Any) -> tuple[float | None, str]:
    try:
        value = fn(*args)
    except ValueError as exc:
        return None, str(exc)
    return (value, "") if math.isfinite(value) else (None, "not finite")


def per_image_bd(rows: Sequence[dict[str, Any]], anchor: str) -> dict[str, tuple[float, int]]:
    """Series -> (mean over images of its BD-rate (PSNR) against ``anchor``'s points on the same
    image, how many images): each image's own curves, so a rate-targeted series and a
    fixed-quality one are compared alike. Images where either side has under two points, or no
    overlap, are left out."""
    by: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in rows:
        by.setdefault((r["series"], f"{r['image']}|{r['image_sha1']}"), []).append((r["bpp"], r["psnr"]))
    out: dict[str, list[float]] = {}
    for (series, image), pts in by.items():
        ref = by.get((anchor, image))
        if series == anchor or ref is None or len(ref) < 2 or len(pts) < 2:
            continue
        a, t = sorted(ref), sorted(pts)
        value, _ = _safe(bd_rate, [p[0] for p in a], [p[1] for p in a], [p[0] for p in t], [p[1] for p in t])
        if value is not None:
            out.setdefault(series, []).append(value)
    return {k: (sum(v) / len(v), len(v)) for k, v in out.items()}


def bd_table(curves: Sequence[Curve], anchor: str,
             rows: Sequence[dict[str, Any]] | None = None) -> list[BdRow]:
    """BD-rate (PSNR), BD-PSNR and BD-rate (MS-SSIM in dB) of every curve against ``anchor``;
    with ``rows``, also the mean per-image BD-rate (:func:`per_image_bd`)."""
    ref = next((c for c in curves if c.label == anchor), None)
    if ref is None:
        return []
    a = ref.complete_points()
    ar, ap, am = [p.bpp for p in a], [p.psnr for p in a], [msssim_db(p.ms_ssim) for p in a]
    each = per_image_bd(rows, anchor) if rows else {}
    out = []
    for c in curves:
        if c is ref:
            continue
        t = c.complete_points()
        tr, tp, tm = [p.bpp for p in t], [p.psnr for p in t], [msssim_db(p.ms_ssim) for p in t]
        r1, n1 = _safe(bd_rate, ar, ap, tr, tp)
        q1, n2 = _safe(bd_quality, ar, ap, tr, tp)
        r2, n3 = _safe(bd_rate, ar, am, tr, tm)
        pi, n_img = each.get(c.label, (None, 0))
        out.append(BdRow(c.label, r1, q1, r2, len(t), n1 or n2 or n3, pi, n_img))
    return out


def _fmt(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def bd_markdown(curves: Sequence[Curve], anchor: str,
                results: Sequence[dict[str, Any]] | None = None) -> str:
    """The BD table as Markdown (or a line saying why there is none); with the run's rows
    (``results``), a column of the mean per-image BD-rate."""
    rows = bd_table(curves, anchor, results)
    if not any(c.label == anchor for c in curves):
        return f"No BD table: the anchor `{anchor}` is not part of this run.\n"
    each = bool(results)
    lines = [
        f"BD against `{anchor}` (mean curves, PCHIP over the overlapping range; negative BD-rate "
        "= fewer bits for the same quality" + ("; per image: the mean of each image's BD-rate "
                                              "(PSNR) on its own curves" if each else "") + "):",
        "",
        "| codec | BD-rate (PSNR) | BD-PSNR | BD-rate (MS-SSIM dB) | points |"
        + (" BD-rate per image (images) |" if each else ""),
        "|---|---:|---:|---:|---:|" + ("---:|" if each else ""),
    ]
    for r in rows:
        note = f" ({r.note})" if r.note and r.bd_rate_psnr is None else ""
        extra = f" {_fmt(r.per_image, '+.1f')} % ({r.images}) |" if each else ""
        lines.append(f"| {r.label} | {_fmt(r.bd_rate_psnr, '+.1f')} %{note} | {_fmt(r.bd_psnr, '+.2f')} dB "
                     f"| {_fmt(r.bd_rate_msssim, '+.1f')} % | {r.points} |{extra}")
    return "\n".join(lines) + "\n"


def points_markdown(curves: Sequence[Curve]) -> str:
    """The mean rate points of every curve as one Markdown table."""
    lines = [
        "| codec | setting | bpp | PSNR (dB) | MS-SSIM | encode (s) | decode (ms) | images |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in curves:
        for p in c.points:
            flag = "" if p.complete else " (incomplete)"
            lines.append(f"| {c.label} | {p.params} | {p.bpp:.4f} | {p.psnr:.2f} | {p.ms_ssim:.4f} "
                         f"| {p.encode_s:.3f} | {1000 * p.decode_s:.1f} | {p.images}{flag} |")
    return "\n".join(lines) + "\n"


def summary_markdown(curves: Sequence[Curve], anchor: str, dataset: str, n_images: int,
                     heading: bool = True, rows: Sequence[dict[str, Any]] | None = None) -> str:
    """The whole summary: what was measured, the BD table (with ``rows``, the per-image column
    too) and the rate points."""
    parts = []
    if heading:
        parts.append(f"# Rate-distortion summary: {dataset} ({n_images} images)\n")
    parts.append(
        "Rate: bits per pixel of the whole stored `.dpl` file (the codec's bytes plus "
        f"{CONTAINER_OVERHEAD} bytes of container per image). Quality: PSNR over RGB, 8-bit, whole "
        "image; MS-SSIM from pytorch-msssim on 0..255 (data_range 255). Each point is the mean "
        "over the images at one setting; encode/decode are mean seconds per image (decode: warm, "
        "second of two runs).\n"
    )
    parts.append(bd_markdown(curves, anchor, rows))
    parts.append(points_markdown(curves))
    return "\n".join(parts)


def write_summary(out_dir: str | os.PathLike[str], markdown: str) -> Path:
    """Write ``DIR/summary.md`` atomically; returns its path."""
    path = Path(out_dir) / SUMMARY_MD
    atomic_write_bytes(path, markdown.encode())
    return path

"""Video rate-distortion evaluation: our video codecs against the PyAV baselines (x264, x265, AV1
through SVT-AV1, motion JPEG), at matched bit rates and the same group length. Every codec is a
registered one, found by name; what a codec measures is its ``Codec.code_clip``.

For every (clip, codec, target kbps): encode the clip's first frames, decode them, and record the
real rate (ours: the whole .dpl file; baselines: the bytes of their coded packets, no container),
per-frame PSNR over RGB and MS-SSIM against the decoded source, and encode / decode frames per
second. Results go to OUT/results.json (resumable: finished points are skipped on a re-run) and
OUT/frames.csv; then OUT/summary.md with BD-rate tables and OUT/rd.png.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dappled.codec import registry
from dappled.errors import InputError, OptionError
from dappled.fileio import atomic_write_bytes


def default_codecs() -> tuple[str, ...]:
    """What `dappled eval --video` runs by default: the default codec (through its video form)
    and every registered video baseline (codecs that write no Dappled stream)."""
    return (registry.DEFAULT_VIDEO_CODEC, *registry.names(streams=False))


def known_codecs() -> tuple[str, ...]:
    """Every codec `dappled eval --video` can run: all registered codecs."""
    return tuple(registry.names())


def label(codec: str) -> str:
    """A codec's label in tables and plots (the label of the codec that codes its videos)."""
    try:
        return registry.video_codec(codec).display_name()
    except Exception:  # a codec that cannot be imported now still has stored results
        return codec


@dataclass
class PointResult:
    """One coded clip at one target rate."""

    clip: str
    codec: str
    target_kbps: float
    frames: int
    width: int
    height: int
    fps: float
    gop: int
    bytes: int
    kbps: float
    psnr: float  # mean over frames of the per-frame PSNR (RGB)
    ms_ssim: float  # mean over frames
    encode_fps: float
    decode_fps: float
    frame_psnr: list[float] = field(default_factory=list)
    frame_ms_ssim: list[float] = field(default_factory=list)
    # PSNR in BT.601 Y'CbCr 4:2:0 from the same RGB frames (eval.metrics.yuv_psnr): Y alone and
    # the weighted (6 Y + U + V) / 8; NaN in results stored before they were measured
    psnr_y: float = math.nan
    psnr_yuv: float = math.nan
    frame_psnr_yuv: list[float] = field(default_factory=list)

    def key(self) -> str:
        """Identity of the point in results.json."""
        return f"{self.clip}|{self.codec}|{self.target_kbps:g}"


# ---------------------------------------------------------------- one point


def _quality(src: Sequence[np.ndarray], out: Sequence[np.ndarray]) -> tuple[list[float], list[float],
                                                                            list[tuple[float, ...]]]:
    """Per frame: RGB PSNR, MS-SSIM and (Y, U, V, weighted) PSNR."""
    from dappled.eval.metrics import ms_ssim, psnr, yuv_psnr

    if len(out) != len(src):
        raise RuntimeError(f"decoded {len(out)} frames for {len(src)}")
    p = [min(psnr(a, b), 100.0) for a, b in zip(src, out, strict=True)]
    m = [ms_ssim(a, b) for a, b in zip(src, out, strict=True)]
    yuv = [yuv_psnr(a, b) for a, b in zip(src, out, strict=True)]
    return p, m, yuv


def run_point(clip: str, frames: Sequence[np.ndarray], fps: Fraction, codec: str, kbps: float, gop: int,
              options: dict[str, Any] | None = None, progress: bool = False) -> PointResult:
    """Encode + decode one clip at one rate with one codec (``Codec.code_clip``) and measure it;
    `options` are the codec's own (its ``-O`` options, ``seed`` among them)."""
    h, w = frames[0].shape[:2]
    seconds_total = len(frames) / float(fps)
    res = registry.get(codec).code_clip(frames, fps, kbps, gop, progress=progress, **(options or {}))
    p, m, yuv = _quality(frames, res.frames)
    return PointResult(clip, codec, kbps, len(frames), w, h, float(fps), gop, res.bytes,
                       8 * res.bytes / 1000 / seconds_total, float(np.mean(p)), float(np.mean(m)),
                       len(frames) / res.encode_seconds, len(frames) / res.decode_seconds, p, m,
                       float(np.mean([q[0] for q in yuv])), float(np.mean([q[3] for q in yuv])),
                       [q[3] for q in yuv])


# ---------------------------------------------------------------- the run


@dataclass
class VideoEvalSpec:
    """What `dappled eval --video` asks for."""

    clips: Sequence[str]
    codecs: Sequence[str] = field(default_factory=default_codecs)
    kbps: dict[str, list[float]] = field(default_factory=dict)  # per clip name; default by size
    gop: int = 25
    frames: int | None = 100
    start: int = 0
    out_dir: str | None = None
    anchor: str = registry.VIDEO_ANCHORS[0]
    report: str | None = None
    report_section: str | None = None
    command: str = ""
    progress: bool = True
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per codec: its encoder options


def default_kbps(width: int, height: int, fps: float,
                 codec: str = registry.DEFAULT_VIDEO_CODEC) -> list[float]:
    """Target rates of a codec on a clip (``Codec.video_rates``: bits per pixel per frame, or the
    quantizers of a codec without rate control)."""
    return registry.get(codec).video_rates(width, height, fps)


def clip_paths(video: str) -> list[Path]:
    """A clip file, or the video files of a folder (sorted)."""
    from dappled.datasets.video import VIDEO_SUFFIXES

    p = Path(video)
    if not p.exists():
        for root in (Path(os.environ.get("DAPPLED_DATA", "../shared/data")) / "video",):
            if (root / video).exists():
                p = root / video
                break
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
        if not files:
            raise InputError(f"{video}: no video files in the folder")
        return files
    if not p.exists():
        raise InputError(f"{video}: no such file or folder")
    return [p]


@dataclass
class VideoEvalResult:
    """Where the run's outputs went."""

    out_dir: Path
    ran: int
    skipped: int
    summary: Path
    plot: Path
    report: Path | None = None
    frames_plot: Path | None = None  # per-frame PSNR against the anchor (frames.png)


def evaluate_video(spec: VideoEvalSpec, log: Callable[[str], None] = print) -> VideoEvalResult:
    """Run (or resume) a video RD evaluation; write results, summary, plot and report section."""
    from dappled.datasets.video import load_clip, probe_video

    for c in spec.codecs:
        if c not in known_codecs():
            raise OptionError(f"unknown video codec {c!r} (known: {', '.join(known_codecs())})")
    out = Path(spec.out_dir or "runs/video")
    out.mkdir(parents=True, exist_ok=True)
    store = out / "results.json"
    done: dict[str, dict[str, Any]] = json.loads(store.read_text()) if store.exists() else {}
    ran = skipped = 0
    for clip_path in spec.clips:
        info = probe_video(clip_path)
        name = Path(clip_path).name
        frames = load_clip(clip_path, spec.start, spec.frames)
        for codec in spec.codecs:
            fixed = registry.get(codec).fixed_quantizer  # its rates are quantizers, not kbps
            rates = (spec.kbps.get(f"{name}:{codec}") or spec.kbps.get(f"*:{codec}")
                     or (None if fixed else spec.kbps.get(name) or spec.kbps.get("*"))
                     or default_kbps(info.width, info.height, float(info.fps), codec))
            for kbps in rates:
                key = f"{name}|{codec}|{kbps:g}"
                if key in done and done[key]["frames"] == len(frames) and done[key]["gop"] == spec.gop:
                    skipped += 1
                    continue
                log(f"{name}: {codec} at {kbps:g} kbps ({len(frames)} frames, gop {spec.gop})")
                r = run_point(name, frames, info.fps, codec, kbps, spec.gop, spec.options.get(codec),
                              spec.progress)
                done[key] = asdict(r)
                ran += 1
                log(f"  -> {r.kbps:.1f} kbps, {r.psnr:.2f} dB, MS-SSIM {r.ms_ssim:.4f}, "
                    f"encode {r.encode_fps:.2f} fps, decode {r.decode_fps:.1f} fps")
                atomic_write_bytes(store, json.dumps(done, indent=1).encode())
    results = [PointResult(**d) for d in done.values()]
    results = [r for r in results if r.codec in spec.codecs and r.clip in {Path(c).name for c in spec.clips}]
    _write_frames_csv(out / "frames.csv", results)
    summary_md = summarize(results, spec.anchor, spec.gop)
    summary = out / "summary.md"
    atomic_write_bytes(summary, summary_md.encode())
    plot = plot_video_rd(results, out / "rd.png")
    frames_plot = plot_video_frames(results, out / "frames.png", spec.anchor)
    report = None
    if spec.report:
        report = update_video_report(spec.report, spec.report_section or "video", spec.command,
                                     str(out), summary_md, plot)
    return VideoEvalResult(out, ran, skipped, summary, plot, report, frames_plot)


def _write_frames_csv(path: Path, results: Sequence[PointResult]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["clip", "codec", "target_kbps", "frame", "psnr", "ms_ssim", "psnr_yuv"])
    for r in results:
        n = len(r.frame_psnr)
        yuv = r.frame_psnr_yuv if len(r.frame_psnr_yuv) == n else [math.nan] * n
        for i, (p, m, q) in enumerate(zip(r.frame_psnr, r.frame_ms_ssim, yuv, strict=True)):
            w.writerow([r.clip, r.codec, r.target_kbps, i, f"{p:.4f}", f"{m:.6f}",
                        f"{q:.4f}" if math.isfinite(q) else ""])
    atomic_write_bytes(path, buf.getvalue().encode())


def _curve(results: Sequence[PointResult], clip: str, codec: str) -> list[PointResult]:
    return sorted((r for r in results if r.clip == clip and r.codec == codec), key=lambda r: r.kbps)


def _codecs_in(results: Sequence[PointResult]) -> list[str]:
    """The codecs of the results, in registry order (then any no longer registered)."""
    present = {r.codec for r in results}
    return [c for c in registry.names() if c in present] + sorted(present - set(registry.names()))


def _is_ours(codec: str) -> bool:
    try:
        return not registry.get(codec).baseline
    except Exception:  # a codec that cannot be imported now still has stored results
        return False


def summarize(results: Sequence[PointResult], anchor: str = registry.VIDEO_ANCHORS[0], gop: int = 25) -> str:
    """Markdown: per clip, BD-rate of every codec against `anchor` and the other reference
    curves (``registry.VIDEO_ANCHORS``), then the measured points."""
    from dappled.eval.bdrate import bd_quality, bd_rate, msssim_db

    lines = ["Rate: kbps of the coded frames (ours: the whole `.dpl` file, container included; "
             "baselines: their coded packets). Quality: mean over frames of per-frame PSNR (RGB, "
             "8-bit, against the decoded source) and MS-SSIM; PSNR-Y and PSNR-YUV ((6 Y + U + V) / 8) "
             "of the same frames in BT.601 Y'CbCr 4:2:0. Encode/decode: frames per second "
             f"on this machine. All codecs use the same group length ({gop} frames).", ""]
    for clip in sorted({r.clip for r in results}):
        lines += [f"### {clip}", ""]
        codecs = [c for c in _codecs_in(results) if _curve(results, clip, c)]
        for ref in dict.fromkeys([anchor, *registry.VIDEO_ANCHORS[1:]]):
            a = _curve(results, clip, ref)
            if len(a) < 2:
                continue
            lines += [f"BD against {label(ref)} "
                      "(negative BD-rate = fewer bits for the same quality):", "",
                      "| codec | BD-rate (PSNR) | BD-PSNR | BD-rate (MS-SSIM dB) | BD-rate (PSNR-YUV) |",
                      "|---|---:|---:|---:|---:|"]
            for c in codecs:
                if c == ref:
                    continue
                t = _curve(results, clip, c)
                cells = []
                for fn, qa, qt in (
                    (bd_rate, [r.psnr for r in a], [r.psnr for r in t]),
                    (bd_quality, [r.psnr for r in a], [r.psnr for r in t]),
                    (bd_rate, [msssim_db(r.ms_ssim) for r in a], [msssim_db(r.ms_ssim) for r in t]),
                    (bd_rate, [r.psnr_yuv for r in a], [r.psnr_yuv for r in t]),
                ):
                    if not np.all(np.isfinite(qa + qt)):
                        cells.append("n/a (not measured)")
                        continue
                    try:
                        v = fn([r.kbps for r in a], qa, [r.kbps for r in t], qt)
                        cells.append(f"{v:+.1f} %" if fn is bd_rate else f"{v:+.2f} dB")
                    except ValueError:
                        cells.append("n/a (no overlap)")
                lines.append(f"| {label(c)} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += ["Target: kbps asked for (a codec without rate control, motion JPEG: its fixed "
                  "quantizer).", "",
                  "| codec | target kbps | kbps | PSNR (dB) | MS-SSIM | PSNR-Y | PSNR-YUV | encode fps | "
                  "decode fps | frames |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in codecs:
            for r in _curve(results, clip, c):
                yuv = (f"{r.psnr_y:.2f} | {r.psnr_yuv:.2f}" if math.isfinite(r.psnr_yuv) else "n/a | n/a")
                lines.append(f"| {c} | {r.target_kbps:g} | {r.kbps:.1f} | {r.psnr:.2f} | {r.ms_ssim:.4f} | "
                             f"{yuv} | {r.encode_fps:.2f} | {r.decode_fps:.1f} | {r.frames} |")
        lines.append("")
    return "\n".join(lines)


def plot_video_rd(results: Sequence[PointResult], path: Path) -> Path:
    """PSNR and MS-SSIM (dB) against kbps, one row per clip, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dappled.eval.bdrate import msssim_db

    clips = sorted({r.clip for r in results}) or ["(none)"]
    fig, axes = plt.subplots(len(clips), 2, figsize=(13, 4.6 * len(clips)), squeeze=False)
    ours_colors = ("#d62728", "#9467bd", "#2ca02c", "#8c564b")
    base_colors = ("#444444", "#ff7f0e", "#17becf", "#bcbd22", "#1f77b4", "#e377c2", "#7f7f7f")
    codecs = _codecs_in(results)
    ours_list = [c for c in codecs if _is_ours(c)]
    base_list = [c for c in codecs if c not in ours_list]
    colors = {c: ours_colors[i % len(ours_colors)] for i, c in enumerate(ours_list)}
    colors.update({c: base_colors[i % len(base_colors)] for i, c in enumerate(base_list)})
    for row, clip in zip(axes, clips, strict=True):
        for c in codecs:
            pts = _curve(results, clip, c)
            if not pts:
                continue
            ours = c in ours_list
            style = {"color": colors[c], "marker": "o", "linestyle": "-" if ours else "--",
                     "linewidth": 2.2 if ours else 1.2, "markerfacecolor": colors[c] if ours else "none"}
            x = [r.kbps for r in pts]
            row[0].plot(x, [r.psnr for r in pts], label=label(c), **style)
            row[1].plot(x, [msssim_db(r.ms_ssim) for r in pts], label=label(c), **style)
        row[0].set(xlabel="rate (kbps)", ylabel="PSNR RGB (dB)", title=f"{clip}: PSNR")
        row[1].set(xlabel="rate (kbps)", ylabel="MS-SSIM (dB)", title=f"{clip}: MS-SSIM")
        for ax in row:
            ax.grid(True, alpha=0.3)
            ax.set_xscale("log")
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_video_frames(results: Sequence[PointResult], path: Path,
                      anchor: str = registry.VIDEO_ANCHORS[0]) -> Path:
    """Per-frame PSNR, one panel per clip: each rate point of our codecs (solid) beside the
    anchor's point nearest to it in kbps (dashed, same colour), so drift over a group of pictures
    and where it falls behind the anchor show frame by frame. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = sorted({r.clip for r in results}) or ["(none)"]
    fig, axes = plt.subplots(len(clips), 1, figsize=(13, 4.6 * len(clips)), squeeze=False)
    palette = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#e377c2")
    for (ax,), clip in zip(axes, clips, strict=True):
        ref = _curve(results, clip, anchor)
        drawn: set[float] = set()  # anchor points already drawn (two of ours may share one)
        k = 0
        for c in _codecs_in(results):
            if not _is_ours(c):
                continue
            for r in _curve(results, clip, c):
                color = palette[k % len(palette)]
                k += 1
                name = f"{label(c)} {r.kbps:.1f} kbps"
                near = (min(ref, key=lambda a, r=r: abs(math.log(max(a.kbps, 1e-6) / max(r.kbps, 1e-6))))
                        if ref else None)
                if near is not None and near.kbps in drawn:
                    name += f" (vs {label(anchor)} {near.kbps:.1f} kbps)"
                ax.plot(r.frame_psnr, color=color, linewidth=1.8, label=name)
                if near is not None and near.kbps not in drawn:
                    drawn.add(near.kbps)
                    ax.plot(near.frame_psnr, color=color, linewidth=1.0, linestyle="--",
                            label=f"{label(anchor)} {near.kbps:.1f} kbps")
        ax.set(xlabel="frame", ylabel="PSNR RGB (dB)", title=f"{clip}: per-frame PSNR")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def update_video_report(report: str, name: str, command: str, out_dir: str, summary_md: str,
                        plot: Path) -> Path:
    """Refresh the section <!-- eval:NAME:start/end --> of a Markdown report with this run."""
    import datetime as _dt

    from dappled.eval.report import machine_description, replace_section

    path = Path(report)
    text = path.read_text() if path.exists() else "# Results\n"
    img = path.parent / "img" / f"rd-{name}.png"
    img.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(img, plot.read_bytes())
    date = _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    body = "\n".join([f"Command: `{command}`", "",
                      f"Machine: {machine_description()}. Date: {date}. Results: `{out_dir}/results.json`, "
                      f"per-frame `{out_dir}/frames.csv`.", "", summary_md.rstrip(), "",
                      f"![video rate-distortion curves](img/{img.name})", ""])
    atomic_write_bytes(path, replace_section(text, name, body).encode())
    return path


def parse_rates(values: Sequence[str]) -> dict[str, list[float]]:
    """--kbps [CLIP[:CODEC]=]R1,R2,... -> rates per clip name (key '*' for all clips, ':CODEC'
    for one codec only, e.g. '*:mjpeg=800,1600')."""
    out: dict[str, list[float]] = {}
    for v in values:
        name, _, rates = v.rpartition("=")
        try:
            out[name or "*"] = sorted(float(x) for x in rates.split(",") if x.strip())
        except ValueError:
            raise OptionError(f"--kbps wants [CLIP=]R1,R2,..., got {v!r}") from None
        if any(not (r > 0 and math.isfinite(r)) for r in out[name or "*"]):
            raise OptionError(f"--kbps rates must be positive: {v!r}")
    return out

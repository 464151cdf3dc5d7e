"""Video rate-distortion evaluation: the splat video codec against x264, x265, AV1 (SVT-AV1) and
motion JPEG through PyAV, at matched bit rates and the same group length.

For every (clip, codec, target kbps): encode the clip's first frames, decode them, and record the
real rate (splat: the whole .dpl file; baselines: the bytes of their coded packets, no container),
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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dappled.codec.classical_video import BASELINES, decode_baseline, encode_baseline
from dappled.errors import InputError, OptionError
from dappled.fileio import atomic_write_bytes

CODECS = ("splat", *BASELINES)
LABELS = {"splat": "splat video (ours)", "x264": "x264 medium", "x265": "x265 medium",
          "av1": "AV1 (SVT-AV1 preset 8)", "mjpeg": "motion JPEG"}


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

    def key(self) -> str:
        """Identity of the point in results.json."""
        return f"{self.clip}|{self.codec}|{self.target_kbps:g}"


# ---------------------------------------------------------------- one point


def _quality(src: Sequence[np.ndarray], out: Sequence[np.ndarray]) -> tuple[list[float], list[float]]:
    from dappled.eval.metrics import ms_ssim, psnr

    if len(out) != len(src):
        raise RuntimeError(f"decoded {len(out)} frames for {len(src)}")
    p = [min(psnr(a, b), 100.0) for a, b in zip(src, out, strict=True)]
    m = [ms_ssim(a, b) for a, b in zip(src, out, strict=True)]
    return p, m


def run_point(clip: str, frames: Sequence[np.ndarray], fps: Fraction, codec: str, kbps: float, gop: int,
              options: dict[str, Any] | None = None, progress: bool = False) -> PointResult:
    """Encode + decode one clip at one rate with one codec and measure it."""
    h, w = frames[0].shape[:2]
    seconds_total = len(frames) / float(fps)
    if codec == "splat":
        from dappled.codec.video import decode_video, encode_video

        res = encode_video(frames, fps, kbps=kbps, gop=gop, progress=progress, **(options or {}))
        decode_video(res.data)  # warm-up (JIT, caches)
        t0 = time.perf_counter()
        out = decode_video(res.data)
        t_dec = time.perf_counter() - t0
        nbytes, t_enc = len(res.data), res.seconds
    else:
        packets, t_enc, extra = encode_baseline(frames, fps, codec, kbps, gop)
        nbytes = sum(len(p) for p in packets)
        decode_baseline(packets, codec, extra["extradata"], (w, h))
        out, t_dec = decode_baseline(packets, codec, extra["extradata"], (w, h))
    p, m = _quality(frames, out)
    return PointResult(clip, codec, kbps, len(frames), w, h, float(fps), gop, nbytes,
                       8 * nbytes / 1000 / seconds_total, float(np.mean(p)), float(np.mean(m)),
                       len(frames) / t_enc, len(frames) / t_dec, p, m)


# ---------------------------------------------------------------- the run


@dataclass
class VideoEvalSpec:
    """What `dappled eval --video` asks for."""

    clips: Sequence[str]
    codecs: Sequence[str] = CODECS
    kbps: dict[str, list[float]] = field(default_factory=dict)  # per clip name; default by size
    gop: int = 25
    frames: int | None = 100
    start: int = 0
    out_dir: str | None = None
    anchor: str = "x264"
    report: str | None = None
    report_section: str | None = None
    command: str = ""
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # splat encoder options


# Motion JPEG has no usable rate control in FFmpeg: it is swept over fixed quantizers instead
# (its "target kbps" entries are the qscale, 2 = finest .. 31 = coarsest).
MJPEG_QSCALE = (31.0, 16.0, 8.0, 4.0, 2.0)
SPLAT_BPP = (0.05, 0.1, 0.2, 0.4)
# the baselines go lower too, so that their curves overlap ours in quality
BASELINE_BPP = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def default_kbps(width: int, height: int, fps: float, codec: str = "splat") -> list[float]:
    """Target rates of a codec on a clip: SPLAT_BPP or BASELINE_BPP bits per pixel per frame
    (motion JPEG: the MJPEG_QSCALE quantizers)."""
    if codec == "mjpeg":
        return list(MJPEG_QSCALE)
    bpp = SPLAT_BPP if codec == "splat" else BASELINE_BPP
    return [round(b * width * height * fps / 1000, 1) for b in bpp]


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


def evaluate_video(spec: VideoEvalSpec, log: Callable[[str], None] = print) -> VideoEvalResult:
    """Run (or resume) a video RD evaluation; write results, summary, plot and report section."""
    from dappled.datasets.video import load_clip, probe_video

    for c in spec.codecs:
        if c not in CODECS:
            raise OptionError(f"unknown video codec {c!r} (known: {', '.join(CODECS)})")
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
            rates = (spec.kbps.get(f"{name}:{codec}") or spec.kbps.get(f"*:{codec}")
                     or (None if codec == "mjpeg" else spec.kbps.get(name) or spec.kbps.get("*"))
                     or default_kbps(info.width, info.height, float(info.fps), codec))
            for kbps in rates:
                key = f"{name}|{codec}|{kbps:g}"
                if key in done and done[key]["frames"] == len(frames) and done[key]["gop"] == spec.gop:
                    skipped += 1
                    continue
                log(f"{name}: {codec} at {kbps:g} kbps ({len(frames)} frames, gop {spec.gop})")
                r = run_point(name, frames, info.fps, codec, kbps, spec.gop, spec.options, spec.progress)
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
    report = None
    if spec.report:
        report = update_video_report(spec.report, spec.report_section or "video", spec.command,
                                     str(out), summary_md, plot)
    return VideoEvalResult(out, ran, skipped, summary, plot, report)


def _write_frames_csv(path: Path, results: Sequence[PointResult]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["clip", "codec", "target_kbps", "frame", "psnr", "ms_ssim"])
    for r in results:
        for i, (p, m) in enumerate(zip(r.frame_psnr, r.frame_ms_ssim, strict=True)):
            w.writerow([r.clip, r.codec, r.target_kbps, i, f"{p:.4f}", f"{m:.6f}"])
    atomic_write_bytes(path, buf.getvalue().encode())


def _curve(results: Sequence[PointResult], clip: str, codec: str) -> list[PointResult]:
    return sorted((r for r in results if r.clip == clip and r.codec == codec), key=lambda r: r.kbps)


def summarize(results: Sequence[PointResult], anchor: str = "x264", gop: int = 25) -> str:
    """Markdown: per clip, BD-rate of every codec against `anchor` and against motion JPEG,
    then the measured points."""
    from dappled.eval.bdrate import bd_quality, bd_rate, msssim_db

    lines = ["Rate: kbps of the coded frames (splat: the whole `.dpl` file, container included; "
             "baselines: their coded packets). Quality: mean over frames of per-frame PSNR (RGB, "
             "8-bit, against the decoded source) and MS-SSIM. Encode/decode: frames per second "
             f"on this machine. All codecs use the same group length ({gop} frames).", ""]
    for clip in sorted({r.clip for r in results}):
        lines += [f"### {clip}", ""]
        codecs = [c for c in CODECS if _curve(results, clip, c)]
        for ref in dict.fromkeys([anchor, "mjpeg"]):
            a = _curve(results, clip, ref)
            if len(a) < 2:
                continue
            lines += [f"BD against {LABELS.get(ref, ref)} "
                      "(negative BD-rate = fewer bits for the same quality):", "",
                      "| codec | BD-rate (PSNR) | BD-PSNR | BD-rate (MS-SSIM dB) |", "|---|---:|---:|---:|"]
            for c in codecs:
                if c == ref:
                    continue
                t = _curve(results, clip, c)
                cells = []
                for fn, qa, qt in (
                    (bd_rate, [r.psnr for r in a], [r.psnr for r in t]),
                    (bd_quality, [r.psnr for r in a], [r.psnr for r in t]),
                    (bd_rate, [msssim_db(r.ms_ssim) for r in a], [msssim_db(r.ms_ssim) for r in t]),
                ):
                    try:
                        v = fn([r.kbps for r in a], qa, [r.kbps for r in t], qt)
                        cells.append(f"{v:+.1f} %" if fn is bd_rate else f"{v:+.2f} dB")
                    except ValueError:
                        cells.append("n/a (no overlap)")
                lines.append(f"| {LABELS.get(c, c)} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += ["Target: kbps asked for (motion JPEG: its fixed qscale).", "",
                  "| codec | target kbps | kbps | PSNR (dB) | MS-SSIM | encode fps | decode fps | frames |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for c in codecs:
            for r in _curve(results, clip, c):
                lines.append(f"| {c} | {r.target_kbps:g} | {r.kbps:.1f} | {r.psnr:.2f} | {r.ms_ssim:.4f} | "
                             f"{r.encode_fps:.2f} | {r.decode_fps:.1f} | {r.frames} |")
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
    colors = {"splat": "#d62728", "x264": "#444444", "x265": "#ff7f0e", "av1": "#17becf", "mjpeg": "#bcbd22"}
    for row, clip in zip(axes, clips, strict=True):
        for c in CODECS:
            pts = _curve(results, clip, c)
            if not pts:
                continue
            ours = c == "splat"
            style = {"color": colors[c], "marker": "o", "linestyle": "-" if ours else "--",
                     "linewidth": 2.2 if ours else 1.2, "markerfacecolor": colors[c] if ours else "none"}
            x = [r.kbps for r in pts]
            row[0].plot(x, [r.psnr for r in pts], label=LABELS[c], **style)
            row[1].plot(x, [msssim_db(r.ms_ssim) for r in pts], label=LABELS[c], **style)
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

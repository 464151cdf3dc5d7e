"""Video files through PyAV: probe, read RGB frames, write mp4 / mkv / webm / y4m or PNG sequences.

Reading accepts whatever container and codec PyAV (FFmpeg) can decode. Writing is atomic: the
file goes to a temporary name beside the target and is renamed on success
(:mod:`dappled.fileio`). Every error names the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from dappled.errors import InputError, OptionError
from dappled.fileio import atomic_open
from dappled.limits import MAX_DIMENSION, MAX_PIXELS

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".y4m", ".avi", ".mov", ".m4v", ".ts", ".mpg", ".ivf")
# container format name for av.open(..., format=...) when writing to a file object
_WRITE_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".webm": "webm", ".y4m": "yuv4mpegpipe",
                  ".avi": "avi", ".mov": "mov"}
VIDEO_CODECS = ("auto", "ffv1", "x264", "x265", "vp9", "rawvideo")


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds: size, frame count (exact when the container says so) and rate."""

    path: str
    width: int
    height: int
    frames: int
    fps: Fraction
    codec: str


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name says it is a video (by suffix) or it is a frame pattern (%04d)."""
    p = str(path)
    return Path(p).suffix.lower() in VIDEO_SUFFIXES or is_image_pattern(p)


def is_image_pattern(path: str | os.PathLike[str]) -> bool:
    """True for a printf-style image sequence name such as frames/%04d.png."""
    return re.search(r"%0?\d*d", str(path)) is not None


def _open(path: str | os.PathLike[str]):
    import av

    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: holds no video stream")
    return container


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Size, frame count and frame rate of a video file, without decoding its frames.

    The count comes from the container; where it does not store one it is estimated from the
    duration (and a reader simply stops at the real end).
    """
    container = _open(path)
    try:
        s = container.streams.video[0]
        w, h = s.codec_context.width, s.codec_context.height
        rate = s.average_rate or s.guessed_rate or Fraction(25)
        n = s.frames
        if not n and s.duration and s.time_base:
            n = round(float(s.duration * s.time_base * rate))
        if not n and container.duration:
            n = round(container.duration / 1_000_000 * float(rate))
        _check_size(path, w, h)
        return VideoInfo(str(path), w, h, int(n or 0), Fraction(rate).limit_denominator(1001 * 1000),
                         s.codec_context.name)
    finally:
        container.close()


def _check_size(path: str | os.PathLike[str], w: int, h: int) -> None:
    if not (1 <= w <= MAX_DIMENSION and 1 <= h <= MAX_DIMENSION) or w * h > MAX_PIXELS:
        raise InputError(f"{path}: unusable frame size {w}x{h}")


def read_frames(path: str | os.PathLike[str], start: int = 0,
                count: int | None = None) -> Iterator[np.ndarray]:
    """Yield (H, W, 3) uint8 RGB frames start .. start + count - 1 (all to the end if count is None).

    Frames before `start` are decoded and skipped (exact for every codec, unlike a timestamp
    seek). A decoding error midway raises InputError naming the file.
    """
    import av

    if start < 0 or (count is not None and count < 0):
        raise OptionError("--start and --frames must not be negative")
    if is_image_pattern(path):
        yield from _read_pattern(path, start, count)
        return
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        _check_size(path, stream.codec_context.width, stream.codec_context.height)
        i = 0
        done = 0
        for frame in container.decode(stream):
            if count is not None and done >= count:
                break
            if i >= start:
                yield frame.to_ndarray(format="rgb24")
                done += 1
            i += 1
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: cannot decode ({exc})") from None
    finally:
        container.close()


def _read_pattern(pattern: str | os.PathLike[str], start: int, count: int | None) -> Iterator[np.ndarray]:
    from dappled.datasets.images import load_image

    i = start
    while count is None or i < start + count:
        p = Path(str(pattern) % i)
        if not p.exists():
            if i == start:
                raise InputError(f"{pattern}: no frame {p}")
            return
        yield load_image(p)
        i += 1


def load_clip(path: str | os.PathLike[str], start: int = 0, count: int | None = None) -> list[np.ndarray]:
    """All requested frames of a clip in memory; InputError when there are none."""
    frames = list(read_frames(path, start, count))
    if not frames:
        raise InputError(f"{path}: no frames (start {start})")
    return frames


def _pick_codec(suffix: str, codec: str) -> str:
    if codec != "auto":
        if codec not in VIDEO_CODECS:
            raise OptionError(f"video codec must be one of {', '.join(VIDEO_CODECS)}, got {codec!r}")
        return codec
    return {".mp4": "x264", ".mov": "x264", ".mkv": "ffv1", ".avi": "ffv1", ".webm": "vp9",
            ".y4m": "rawvideo"}.get(suffix, "ffv1")


def _write_image_sequence(pattern: str, frames: Iterable[np.ndarray]) -> int:
    """Write frames as `pattern % i` files, all or nothing: into a temporary folder beside them,
    moved into place once the last frame is written (a failed decode leaves no frames behind)."""
    import shutil
    import tempfile

    from dappled.datasets.images import save_image

    folder = Path(pattern).parent if str(Path(pattern).parent) else Path(".")
    name = Path(pattern).name
    if not is_image_pattern(name):
        raise OptionError(f"{pattern}: the frame number pattern must be in the file name")
    if not folder.is_dir():
        raise InputError(f"{pattern}: folder {folder} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=".frames-", suffix=".part", dir=folder))
    try:
        n = 0
        for n, frame in enumerate(frames, start=1):
            save_image(tmp / (name % (n - 1)), frame)
        if n == 0:
            raise InputError(f"{pattern}: no frames to write")
        for i in range(n):
            os.replace(tmp / (name % i), folder / (name % i))
        return n
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float | Fraction,
                codec: str = "auto", crf: int = 12) -> int:
    """Write RGB frames to a video file (atomically) or a PNG sequence (pattern with %04d).

    codec "auto": mkv/avi -> FFV1 lossless RGB (bgr0), mp4/mov -> x264 4:4:4 at `crf`
    (high quality, ``crf=0`` is lossless), webm -> VP9, y4m -> raw 4:4:4. Returns frames written.
    """
    if is_image_pattern(path):
        return _write_image_sequence(str(path), frames)
    import av

    suffix = Path(path).suffix.lower()
    if suffix not in _WRITE_FORMATS:
        raise OptionError(f"{path}: cannot write video of type {suffix or '(none)'}; "
                          f"use one of {', '.join(_WRITE_FORMATS)} or a %04d.png pattern")
    vcodec = _pick_codec(suffix, codec)
    rate = Fraction(fps).limit_denominator(1001 * 1000) if fps else Fraction(25)
    lib, pix, opts = {
        "ffv1": ("ffv1", "bgr0", {"level": "3", "slicecrc": "1"}),
        "x264": ("libx264", "yuv444p", {"crf": str(crf), "preset": "medium"}),
        "x265": ("libx265", "yuv444p",
                 {"crf": str(crf), "preset": "medium", "x265-params": "log-level=error"}),
        "vp9": ("libvpx-vp9", "yuv444p", {"crf": str(crf), "b": "0"}),
        "rawvideo": ("rawvideo", "yuv444p", {}),
    }[vcodec]
    n = 0
    try:
        with atomic_open(path) as f:
            out = av.open(f, mode="w", format=_WRITE_FORMATS[suffix])
            try:
                stream = None
                for frame in frames:
                    if stream is None:
                        stream = out.add_stream(lib, rate=rate)
                        stream.width, stream.height = frame.shape[1], frame.shape[0]
                        stream.pix_fmt = pix
                        stream.options = opts
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                    if pix != "rgb24":
                        vf = vf.reformat(format=pix)
                    for pkt in stream.encode(vf):
                        out.mux(pkt)
                    n += 1
                if stream is None:
                    raise InputError(f"{path}: no frames to write")
                for pkt in stream.encode():
                    out.mux(pkt)
            finally:
                out.close()
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: cannot write video ({exc})") from None
    return n

"""The classical video baselines through PyAV codec contexts: x264, x265, AV1 (SVT-AV1 encoder,
dav1d decoder) and motion JPEG, at a target bit rate and a fixed group length. Their packets are
raw codec packets (no Dappled container); the video evaluation compares the splat video codec
against them (dappled/eval/video.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from dappled.errors import OptionError

BASELINES = ("x264", "x265", "av1", "mjpeg")


def _baseline_setup(codec: str, kbps: float, gop: int) -> tuple[str, str, dict[str, str]]:
    b = str(int(kbps * 1000))
    if codec == "x264":
        return "libx264", "yuv420p", {"preset": "medium", "b": b, "g": str(gop), "keyint_min": str(gop),
                                      "sc_threshold": "0", "x264-params": "log-level=error"}
    if codec == "x265":
        return "libx265", "yuv420p", {"preset": "medium", "b": b, "g": str(gop), "x265-params":
                                      f"keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error"}
    if codec == "av1":
        return "libsvtav1", "yuv420p", {"preset": "8", "b": b, "g": str(gop),
                                        "svtav1-params": "scd=0"}
    if codec == "mjpeg":  # no usable rate control: a fixed quantizer (the "rate" is the qscale)
        return "mjpeg", "yuvj420p", {"qmin": str(int(kbps)), "qmax": str(int(kbps))}
    raise OptionError(f"unknown video baseline {codec!r} (known: {', '.join(BASELINES)})")


def encode_baseline(frames: Sequence[np.ndarray], fps: Fraction, codec: str, kbps: float,
                    gop: int) -> tuple[list[bytes], float, dict[str, Any]]:
    """Encode frames with a PyAV encoder at a target bit rate; returns (packets, seconds, extradata)."""
    import av

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
    lib, pix, opts = _baseline_setup(codec, kbps, gop)
    h, w = frames[0].shape[:2]
    ctx = av.CodecContext.create(lib, "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, pix
    ctx.time_base = Fraction(1, 1) / fps
    ctx.framerate = fps
    if codec == "mjpeg":
        ctx.qmin = ctx.qmax = int(kbps)
    else:
        ctx.bit_rate = int(kbps * 1000)
    ctx.gop_size = gop
    ctx.options = {k: v for k, v in opts.items() if k not in ("b", "g")}
    t0 = time.perf_counter()
    packets: list[bytes] = []
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(format=pix)
        vf.pts = i
        packets += [bytes(p) for p in ctx.encode(vf)]
    packets += [bytes(p) for p in ctx.encode(None)]
    seconds = time.perf_counter() - t0
    return packets, seconds, {"extradata": ctx.extradata, "lib": lib}


def decode_baseline(packets: Sequence[bytes], codec: str, extradata: bytes | None,
                    size: tuple[int, int]) -> tuple[list[np.ndarray], float]:
    """Decode a baseline's packets back to RGB frames; returns (frames, seconds)."""
    import av

    name = {"x264": "h264", "x265": "hevc", "av1": "libdav1d", "mjpeg": "mjpeg"}[codec]
    try:
        ctx = av.CodecContext.create(name, "r")
    except (av.error.FFmpegError, ValueError):
        ctx = av.CodecContext.create("av1" if codec == "av1" else name, "r")
    if extradata:
        ctx.extradata = extradata
    out: list[np.ndarray] = []
    t0 = time.perf_counter()
    for data in packets:
        for f in ctx.decode(av.Packet(data)):
            out.append(f.to_ndarray(format="rgb24"))
    for f in ctx.decode(None):
        out.append(f.to_ndarray(format="rgb24"))
    seconds = time.perf_counter() - t0
    if out and out[0].shape[:2] != (size[1], size[0]):
        raise RuntimeError(f"{codec} decoded frames of the wrong size")
    return out, seconds

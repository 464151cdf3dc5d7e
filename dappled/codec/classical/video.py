"""The classical video baselines through PyAV codec contexts: x264, x265, AV1 (SVT-AV1 encoder,
dav1d decoder) and motion JPEG, at a target bit rate and a fixed group length. Their packets are
raw codec packets (no Dappled container); the video evaluation (dappled/eval/video.py) finds
them in the registry like every codec and measures them with :meth:`Codec.code_clip`.

They are registered (``dappled codecs`` lists them, their ids are reserved) but write no Dappled
stream: ``writes_streams`` is False and an image or stream encode with one of them is a clear
UnsupportedError.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from dappled.codec.container import Packet, StreamHeader
from dappled.codec.defaults import DEFAULT_GOP
from dappled.codec.registry import ClipResult, Codec, EncodeParams
from dappled.errors import OptionError, UnsupportedError

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


class PyavVideoCodec(Codec):
    """A PyAV video encoder and decoder measured outside the container (see module doc)."""

    baseline: ClassVar[bool] = True
    writes_streams: ClassVar[bool] = False
    video_eval_bpp: ClassVar[tuple[float, ...]] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
    """Lower than ours too, so that the curves overlap in quality."""

    def _no_stream(self) -> UnsupportedError:
        return UnsupportedError(f"{self.name} is a video baseline of `dappled eval --video`; "
                                "it writes no Dappled stream")

    def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
        """Not available: the baseline writes no Dappled stream."""
        raise self._no_stream()

    def decode_image(self, header: StreamHeader, packets: list[Packet], device: str = "cpu") -> np.ndarray:
        """Not available: the baseline writes no Dappled stream."""
        raise self._no_stream()

    def make_encoder(self, width: int, height: int, fps: float, params: EncodeParams, *,
                     kbps: float | None = None, gop: int = DEFAULT_GOP, frames: int | None = None) -> Any:
        """Not available: the baseline writes no Dappled stream."""
        raise self._no_stream()

    def make_decoder(self, header: StreamHeader, device: str = "cpu") -> Any:
        """Not available: the baseline writes no Dappled stream."""
        raise self._no_stream()

    def code_clip(self, frames: Sequence[np.ndarray], fps: Fraction, kbps: float, gop: int, *,
                  seed: int = 0, progress: bool = False, **options: Any) -> ClipResult:
        """Encode with PyAV at `kbps`, decode twice (the second timed); the size counts the coded
        packets alone. Encoder options are fixed (module doc): `options` must be empty."""
        if options:
            raise OptionError(f"the {self.name} baseline takes no options, got {', '.join(options)}")
        h, w = frames[0].shape[:2]
        packets, t_enc, extra = encode_baseline(frames, fps, self.name, kbps, gop)
        decode_baseline(packets, self.name, extra["extradata"], (w, h))  # warm-up
        out, t_dec = decode_baseline(packets, self.name, extra["extradata"], (w, h))
        return ClipResult(sum(len(p) for p in packets), t_enc, out, t_dec)


class X264Codec(PyavVideoCodec):
    """H.264 through libx264, preset medium."""

    name = "x264"
    codec_id = 24
    label = "x264 medium"
    description = "video baseline: H.264 (libx264 medium) through PyAV; eval --video only"


class X265Codec(PyavVideoCodec):
    """HEVC through libx265, preset medium."""

    name = "x265"
    codec_id = 25
    label = "x265 medium"
    description = "video baseline: HEVC (libx265 medium) through PyAV; eval --video only"


class Av1Codec(PyavVideoCodec):
    """AV1: SVT-AV1 preset 8 to encode, dav1d to decode."""

    name = "av1"
    codec_id = 26
    label = "AV1 (SVT-AV1 preset 8)"
    description = "video baseline: AV1 (SVT-AV1 preset 8, dav1d) through PyAV; eval --video only"


class MjpegCodec(PyavVideoCodec):
    """Motion JPEG: FFmpeg's has no usable rate control, so it sweeps fixed quantizers."""

    name = "mjpeg"
    codec_id = 27
    label = "motion JPEG"
    description = "video baseline: motion JPEG through PyAV (rates are qscales); eval --video only"
    fixed_quantizer: ClassVar[bool] = True
    QSCALES: ClassVar[tuple[float, ...]] = (31.0, 16.0, 8.0, 4.0, 2.0)
    """Its "target kbps" entries are the qscale, 2 = finest .. 31 = coarsest."""

    def video_rates(self, width: int, height: int, fps: float) -> list[float]:
        """The fixed quantizers (QSCALES), not bit rates."""
        return list(self.QSCALES)

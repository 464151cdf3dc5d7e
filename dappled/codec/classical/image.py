"""Classical baseline codecs behind the registry: JPEG, WebP, AVIF, JPEG 2000, HEVC intra, JPEG XL.

Each codec stores the codec's own bytes (a real .jpg, .webp, .avif, .j2k or .hevc byte string)
as the single FRAME packet of a Dappled container, so the rate counted by `dappled eval` is the
real size of what is stored: the codec's bytes plus the container's fixed overhead (a 32-byte
file header, a 16-byte packet header and a 16-byte END packet: 64 bytes per image).

Settings (fixed so results are reproducible; see docs/results.md):

* ``jpeg``: Pillow / libjpeg-turbo, baseline Huffman tables (no ``optimize``), 4:2:0 chroma
  (``-O subsampling=444`` or ``422``), quality 1..100.
* ``webp``: Pillow / libwebp, lossy, ``method=6`` (slowest, best), quality 0..100.
* ``avif``: Pillow / libavif (libaom), ``speed=4``, 4:2:0 full range, quality 0..100.
* ``jp2``: Pillow / OpenJPEG, 9/7 irreversible wavelet with the RGB->YCC colour transform, one
  quality layer at a target rate. ``--bpp B`` asks OpenJPEG for compression ratio 24/B;
  ``--quality q`` (1..100) is shorthand for ``--bpp q/25`` (25 -> 1 bpp, 100 -> 4 bpp).
* ``hevc``: libx265 through PyAV, one intra frame, 4:4:4, full-range BT.601 YCbCr computed here
  (so no swscale range guesswork), constant QP with ``QP = 51 - quality`` (quality 0..51),
  preset ``slow`` (``-O preset=...``), wavefront on, no info SEI, logging off. x265 refuses
  frames under 16 px a side, so smaller images are edge-padded to 16 and cropped after decoding.
* ``jxl``: JPEG XL (libjxl through pillow-jxl-plugin), lossy VarDCT, ``effort=7`` (libjxl's
  default, ``-O effort=1..9``), quality 1..99 (libjxl maps it to a Butteraugli distance, as
  ``cjxl -q`` does), a bare codestream (no ISOBMFF container, no metadata).

Decoding checks the codec's bytes against the container header (format, then dimensions,
before any pixel buffer is allocated) and turns every library failure into a BitstreamError.
These formats carry no checksum, so a flipped bit inside entropy-coded data may decode to a
damaged picture (FFmpeg even conceals a truncated HEVC slice); inside a Dappled stream the
packet CRC32 catches such damage before the codec sees the bytes.
"""

from __future__ import annotations

import io
import math
import warnings
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from dappled.codec.container import KEYFRAME, Packet, PacketType, StreamHeader
from dappled.codec.registry import Budget, Codec, EncodeParams
from dappled.errors import BitstreamError, OptionError

# Useful sweep range: rd_points() spreads log-rate between these (bpp, on Kodak-like images).
SWEEP_BPP = (0.2, 2.0)


class ClassicalCodec(Codec):
    """Common plumbing of the baselines: one FRAME packet holding the codec's own file bytes."""

    baseline: ClassVar[bool] = True
    extension: ClassVar[str] = "bin"
    # option name -> {accepted spelling -> value}; anything else is an OptionError.
    option_values: ClassVar[dict[str, dict[str, Any]]] = {}
    option_defaults: ClassVar[dict[str, Any]] = {}
    # (quality, mean bpp on Kodak) measured with Pillow 13 / PyAV 18; used to aim rd_points().
    calibration: ClassVar[tuple[tuple[float, float], ...]] = ()

    # -- to implement -------------------------------------------------------------------------
    def _encode(self, image: np.ndarray, quality: int | None, bpp: float | None,
                opts: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        raise NotImplementedError

    # -- Codec interface ----------------------------------------------------------------------
    def options(self, given: dict[str, Any]) -> dict[str, Any]:
        """Resolve codec options (strings from the CLI or Python values) to encoder settings."""
        opts = dict(self.option_defaults)
        for key, value in given.items():
            if key not in self.option_values:
                known = ", ".join(self.option_values) or "none"
                raise OptionError(f"codec {self.name} has no option {key!r} (options: {known})")
            table = self.option_values[key]
            spelled = str(value).strip().lower()
            if spelled not in table:
                raise OptionError(f"{self.name} option {key} must be one of {', '.join(table)}, "
                                  f"got {value!r}")
            opts[key] = table[spelled]
        return opts

    def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
        """Encode with the codec's library; the payload is the codec's own byte string."""
        opts = self.options(params.options)
        quality = None if params.bpp is not None else self.resolve_quality(params)
        data = self._encode(np.ascontiguousarray(image), quality, params.bpp, opts)
        return [Packet(PacketType.FRAME, data, 0, KEYFRAME)]

    def decode_budget(self, header: StreamHeader, packets: list[Packet]) -> Budget:
        """A library decode: about 100 operations and at most 16 bytes (planes, RGB output) per
        pixel, plus the codec bytes twice."""
        pixels = header.width * header.height
        return Budget(100 * pixels, 16 * pixels + 2 * sum(len(p.payload) for p in packets))

    def decode_image(self, header: StreamHeader, packets: list[Packet], device: str = "cpu") -> np.ndarray:
        """Decode the single FRAME packet; any defect of the codec bytes is a BitstreamError."""
        frames = [p for p in packets if p.type == PacketType.FRAME]
        if len(frames) != 1:
            raise BitstreamError(f"{self.name} stream must hold exactly one frame, found {len(frames)}")
        image = self._decode(frames[0].payload, header.width, header.height)
        if image.shape != (header.height, header.width, 3):
            raise BitstreamError(f"{self.name} payload decodes to {image.shape[1]}x{image.shape[0]}, "
                                 f"header says {header.width}x{header.height}")
        return np.ascontiguousarray(image, dtype=np.uint8)

    def stream_sizes(self, packets: list[Packet]) -> dict[str, int]:
        """All bytes are the codec's own file (no sub-streams)."""
        return {self.extension: sum(len(p.payload) for p in packets)}

    def rd_points(self, n: int) -> list[dict[str, Any]]:
        """n qualities whose Kodak rates are log-spaced over SWEEP_BPP (via the calibration table)."""
        if n < 1:
            raise OptionError(f"number of rate points must be at least 1, got {n}")
        qs, rates = zip(*self.calibration, strict=True)
        lo, hi = (math.log(r) for r in SWEEP_BPP)
        targets = [math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(n)] if n > 1 else [0.7]
        qlo, qhi = self.quality_range
        picked: list[int] = []
        for t in targets:
            q = round(float(np.interp(math.log(t), np.log(rates), qs)))
            q = min(max(q, qlo), qhi)
            if q not in picked:
                picked.append(q)
        return [{"quality": q} for q in picked]


def _pillow_encode(image: np.ndarray, fmt: str, **kwargs: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _pillow_decode(data: bytes, fmt: str, width: int, height: int, what: str) -> np.ndarray:
    """Decode with Pillow, restricted to one format, refusing a size other than the header's."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                if im.size != (width, height):  # checked before any pixel buffer is allocated
                    raise BitstreamError(f"{what} payload declares {im.size[0]}x{im.size[1]}, "
                                         f"container header says {width}x{height}")
                im.load()
                return np.array(im.convert("RGB"), dtype=np.uint8)
    except BitstreamError:
        raise
    except UnidentifiedImageError:
        raise BitstreamError(f"corrupt {what} payload (not a {what} byte string)") from None
    except Exception as exc:  # Pillow's decoders raise many types (OSError, SyntaxError, ValueError...)
        raise BitstreamError(f"corrupt {what} payload ({type(exc).__name__}: {exc})") from None


_SUBSAMPLING = {"420": "4:2:0", "4:2:0": "4:2:0", "422": "4:2:2", "4:2:2": "4:2:2",
                "444": "4:4:4", "4:4:4": "4:4:4"}
_BOOL = {"0": False, "1": True, "false": False, "true": True, "no": False, "yes": True}


class JpegCodec(ClassicalCodec):
    """JPEG (libjpeg-turbo through Pillow): the anchor of every BD-rate table."""

    name = "jpeg"
    codec_id = 16
    description = "JPEG baseline (Pillow/libjpeg-turbo, 4:2:0)"
    quality_range = (1, 100)
    default_quality = 75
    extension = "jpg"
    option_values: ClassVar[dict[str, dict[str, Any]]] = {
        "subsampling": {k: v for k, v in _SUBSAMPLING.items()},
        "optimize": _BOOL,
    }
    option_defaults: ClassVar[dict[str, Any]] = {"subsampling": "4:2:0", "optimize": False}
    calibration = ((1, 0.173), (3, 0.182), (5, 0.222), (8, 0.289), (10, 0.334), (15, 0.436),
                   (20, 0.526), (30, 0.685), (40, 0.816), (50, 0.942), (60, 1.079), (70, 1.291),
                   (80, 1.638), (85, 1.939), (90, 2.446), (95, 3.515), (100, 6.971))

    def _encode(self, image: np.ndarray, quality: int | None, bpp: float | None,
                opts: dict[str, Any]) -> bytes:
        return _pillow_encode(image, "JPEG", quality=quality, subsampling=opts["subsampling"],
                              optimize=opts["optimize"])

    def _decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        return _pillow_decode(data, "JPEG", width, height, "JPEG")


class WebpCodec(ClassicalCodec):
    """Lossy WebP (libwebp through Pillow), method 6."""

    name = "webp"
    codec_id = 17
    description = "WebP lossy (Pillow/libwebp, method 6)"
    quality_range = (0, 100)
    default_quality = 75
    extension = "webp"
    option_values: ClassVar[dict[str, dict[str, Any]]] = {"method": {str(m): m for m in range(7)}}
    option_defaults: ClassVar[dict[str, Any]] = {"method": 6}
    calibration = ((0, 0.102), (5, 0.226), (10, 0.289), (20, 0.402), (30, 0.512), (40, 0.622),
                   (50, 0.724), (60, 0.828), (70, 0.947), (80, 1.244), (85, 1.548), (90, 2.038),
                   (95, 2.933), (100, 3.937))

    def _encode(self, image: np.ndarray, quality: int | None, bpp: float | None,
                opts: dict[str, Any]) -> bytes:
        return _pillow_encode(image, "WEBP", quality=quality, method=opts["method"], lossless=False,
                              exact=False)

    def _decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        return _pillow_decode(data, "WEBP", width, height, "WebP")


class AvifCodec(ClassicalCodec):
    """AVIF (libavif/libaom through Pillow), speed 4."""

    name = "avif"
    codec_id = 18
    description = "AVIF (Pillow/libavif, speed 4, 4:2:0)"
    quality_range = (0, 100)
    default_quality = 60
    extension = "avif"
    option_values: ClassVar[dict[str, dict[str, Any]]] = {
        "speed": {str(s): s for s in range(11)},
        "subsampling": {k: v for k, v in _SUBSAMPLING.items()},
    }
    option_defaults: ClassVar[dict[str, Any]] = {"speed": 4, "subsampling": "4:2:0"}
    calibration = ((0, 0.063), (10, 0.101), (20, 0.162), (30, 0.251), (40, 0.395), (50, 0.633),
                   (60, 0.948), (70, 1.32), (80, 1.778), (90, 2.622))

    def _encode(self, image: np.ndarray, quality: int | None, bpp: float | None,
                opts: dict[str, Any]) -> bytes:
        return _pillow_encode(image, "AVIF", quality=quality, speed=opts["speed"],
                              subsampling=opts["subsampling"], range="full")

    def _decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        return _pillow_decode(data, "AVIF", width, height, "AVIF")


class Jpeg2000Codec(ClassicalCodec):
    """JPEG 2000 (OpenJPEG through Pillow): a raw .j2k codestream at a target rate."""

    name = "jp2"
    codec_id = 19
    description = "JPEG 2000 (Pillow/OpenJPEG, 9/7 wavelet, YCC)"
    quality_range = (1, 100)
    default_quality = 25
    supports_bpp = True
    extension = "j2k"
    QUALITY_BPP = 1 / 25  # --quality q means --bpp q * QUALITY_BPP

    def _encode(self, image: np.ndarray, quality: int | None, bpp: float | None,
                opts: dict[str, Any]) -> bytes:
        target = bpp if bpp is not None else float(quality) * self.QUALITY_BPP  # type: ignore[arg-type]
        h, w = image.shape[:2]
        # OpenJPEG needs at least 2^levels pixels per side for a wavelet level; keep <= 5 levels.
        levels = max(0, min(5, math.floor(math.log2(max(1, min(h, w))))))
        return _pillow_encode(image, "JPEG2000", quality_mode="rates", quality_layers=[24.0 / target],
                              irreversible=True, mct=1, no_jp2=True, num_resolutions=levels + 1)

    def _decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        return _pillow_decode(data, "JPEG2000", width, height, "JPEG 2000")

    def rd_points(self, n: int) -> list[dict[str, Any]]:
        """n bpp targets log-spaced over SWEEP_BPP (OpenJPEG hits rate targets closely)."""
        if n < 1:
            raise OptionError(f"number of rate points must be at least 1, got {n}")
        lo, hi = (math.log(r) for r in SWEEP_BPP)
        if n == 1:
            return [{"bpp": 0.7}]
        return [{"bpp": round(math.exp(lo + (hi - lo) * i / (n - 1)), 3)} for i in range(n)]


# Full-range BT.601 (JFIF) RGB <-> YCbCr, done here so the round trip does not depend on
# swscale's defaults. Element-wise float32 arithmetic (a 3x3 matmul over H x W x 3 in numpy is
# ~20x slower); each output is a fixed sequence of IEEE operations, so results are reproducible.
_RGB2YCC = np.array([[0.299, 0.587, 0.114],
                     [-0.168735892, -0.331264108, 0.5],
                     [0.5, -0.418687589, -0.081312411]])
_YCC2RGB = np.linalg.inv(_RGB2YCC)


def _mix(planes: list[np.ndarray], matrix: np.ndarray, offsets: tuple[float, float, float]) -> np.ndarray:
    """(3, H, W) uint8: row i of ``matrix`` applied to the float32 planes, plus offsets[i]."""
    out = np.empty((3, *planes[0].shape), dtype=np.uint8)
    m = matrix.astype(np.float32)
    for i in range(3):
        acc = planes[0] * m[i, 0]
        acc += planes[1] * m[i, 1]
        acc += planes[2] * m[i, 2]
        acc += np.float32(offsets[i])
        np.rint(acc, out=acc)
        np.clip(acc, 0, 255, out=acc)
        out[i] = acc
    return out


def rgb_to_ycbcr(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) uint8 full-range BT.601 Y, Cb, Cr planes."""
    planes = [image[..., c].astype(np.float32) for c in range(3)]
    return _mix(planes, _RGB2YCC, (0.0, 128.0, 128.0))


def ycbcr_to_rgb(planes: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 full-range BT.601 planes -> (H, W, 3) uint8 RGB."""
    y = planes[0].astype(np.float32)
    cb = planes[1].astype(np.float32) - np.float32(128.0)
    cr = planes[2].astype(np.float32) - np.float32(128.0)
    return np.ascontiguousarray(_mix([y, cb, cr], _YCC2RGB, (0.0, 0.0, 0.0)).transpose(1, 2, 0))


_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
            "veryslow", "placebo")


class HevcCodec(ClassicalCodec):
    """HEVC intra (libx265 through PyAV): one 4:4:4 frame at constant QP, like BPG."""

    name = "hevc"
    codec_id = 20
    description = "HEVC intra (libx265 via PyAV, 4:4:4, constant QP)"
    quality_range = (0, 51)
    default_quality = 21  # QP 30
    extension = "hevc"
    option_values: ClassVar[dict[str, dict[str, Any]]] = {"preset": {p: p for p in _PRESETS}}
    option_defaults: ClassVar[dict[str, Any]] = {"preset": "slow"}
    MIN_SIDE = 16  # smaller images are edge-padded to 16 px a side; the decoder crops back
    calibration = ((5, 0.099), (9, 0.202), (13, 0.369), (17, 0.629), (21, 0.979), (25, 1.428),
                   (29, 2.013), (33, 2.785), (37, 3.747))

    def _encode(self, image: np.ndarray, quality: int | None, bpp: float | None,
                opts: dict[str, Any]) -> bytes:
        import av

        h, w = image.shape[:2]
        if h < self.MIN_SIDE or w < self.MIN_SIDE:  # x265 refuses frames under 16 px a side
            pad = ((0, max(0, self.MIN_SIDE - h)), (0, max(0, self.MIN_SIDE - w)), (0, 0))
            image = np.pad(image, pad, mode="edge")
            h, w = image.shape[:2]
        qp = 51 - int(quality)  # type: ignore[arg-type]
        ctx = av.CodecContext.create("libx265", "w")
        ctx.width, ctx.height = w, h
        ctx.pix_fmt = "yuv444p"
        ctx.time_base = Fraction(1, 25)
        ctx.options = {
            "preset": opts["preset"],
            # log-level=none: x265 writes its banner to stderr otherwise; info=0: no SEI with the
            # encoder's version and options (~2 kB); wpp=1: same bytes whatever the thread count.
            "x265-params": f"log-level=none:qp={qp}:keyint=1:info=0:wpp=1:frame-threads=1:"
                           "range=full:colormatrix=bt470bg",
        }
        frame = av.VideoFrame.from_ndarray(rgb_to_ycbcr(image), format="yuv444p")
        frame.pts = 0
        packets = list(ctx.encode(frame)) + list(ctx.encode(None))
        return b"".join(bytes(p) for p in packets)

    def _decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        import av

        if not data:
            raise BitstreamError("empty HEVC payload")
        try:
            ctx = av.CodecContext.create("hevc", "r")
            # explode: fail on any detected error instead of concealing it.
            ctx.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
            frames = list(ctx.decode(av.Packet(data))) + list(ctx.decode(None))
        except Exception as exc:  # PyAV raises av.error.* (subclasses of OSError/ValueError)
            raise BitstreamError(f"corrupt HEVC payload ({type(exc).__name__}: {exc})") from None
        if len(frames) != 1:
            raise BitstreamError(f"HEVC payload decodes to {len(frames)} frames, expected 1")
        frame = frames[0]
        coded = (max(width, self.MIN_SIDE), max(height, self.MIN_SIDE))
        if (frame.width, frame.height) != coded:
            raise BitstreamError(f"HEVC payload declares {frame.width}x{frame.height}, "
                                 f"container header says {width}x{height}")
        if frame.format.name != "yuv444p":
            raise BitstreamError(f"HEVC payload has pixel format {frame.format.name}, expected yuv444p")
        return ycbcr_to_rgb(frame.to_ndarray()[:, :height, :width])


class JxlCodec(ClassicalCodec):
    """JPEG XL (libjxl through pillow-jxl-plugin), lossy, effort 7: a bare .jxl codestream."""

    name = "jxl"
    codec_id = 21
    description = "JPEG XL lossy (libjxl via pillow-jxl-plugin, effort 7)"
    quality_range = (1, 99)
    default_quality = 75
    extension = "jxl"
    option_values: ClassVar[dict[str, dict[str, Any]]] = {"effort": {str(e): e for e in range(1, 10)}}
    option_defaults: ClassVar[dict[str, Any]] = {"effort": 7}
    calibration = ((1, 0.156), (5, 0.189), (10, 0.238), (20, 0.306), (30, 0.414), (40, 0.461),
                   (50, 0.537), (60, 0.659), (70, 0.842), (80, 1.166), (85, 1.444), (90, 1.903),
                   (95, 2.854), (99, 5.135))  # pillow-jxl-plugin 1.3.8, effort 7

    def _encode(self, image: np.ndarray, quality: int | None, bpp: float | None,
                opts: dict[str, Any]) -> bytes:
        _jxl_plugin()
        # one encoder thread: the same bytes on every machine, and eval parallelises over images
        return _pillow_encode(image, "JXL", quality=quality, effort=opts["effort"], lossless=False,
                              use_container=False, num_threads=1)

    def _decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        size = jxl_size(data)
        if size != (width, height):  # the plugin decodes while opening: check the size first
            raise BitstreamError(f"JPEG XL payload declares {size[0]}x{size[1]}, "
                                 f"container header says {width}x{height}")
        _jxl_plugin()
        return _pillow_decode(data, "JXL", width, height, "JPEG XL")


def _jxl_plugin() -> None:
    """Register Pillow's JXL format (pillow-jxl-plugin); ImportError if it is not installed."""
    import pillow_jxl  # noqa: F401  (registers the JXL plugin with Pillow on import)


_JXL_RATIOS = (None, (1, 1), (12, 10), (4, 3), (3, 2), (16, 9), (5, 4), (2, 1))


def jxl_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the SizeHeader of a bare JPEG XL codestream (ISO/IEC 18181-1, A.4.1),
    read without decoding; BitstreamError if ``data`` is not one."""
    if len(data) < 3 or data[:2] != b"\xff\x0a":
        raise BitstreamError("corrupt JPEG XL payload (not a JPEG XL codestream)")
    bits = int.from_bytes(data[2:14], "little")  # the SizeHeader fits in 11 bytes
    pos = 0

    def u(n: int) -> int:
        nonlocal pos
        v = (bits >> pos) & ((1 << n) - 1)
        pos += n
        return v

    def u32_size() -> int:
        return u((9, 13, 18, 30)[u(2)]) + 1

    small = u(1)
    height = 8 * (u(5) + 1) if small else u32_size()
    ratio = u(3)
    if ratio:
        num, den = _JXL_RATIOS[ratio]
        width = height * num // den
    else:
        width = 8 * (u(5) + 1) if small else u32_size()
    return width, height

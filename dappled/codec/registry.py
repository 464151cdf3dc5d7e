"""The codec registry: every codec (ours and the classical baselines) behind one interface.

A codec is looked up by name (``splat``, ``jpeg`` ...) or by the id stored in a stream header.
Codec modules are imported lazily, so ``dappled info`` does not pay for importing torch.

This module and the codec's own package (``dappled/codec/<family>/``) are the only places that
spell a codec's name: adding a codec, or the video form of one, is a package and one line of
``_TABLE`` (docs/format.md, "Adding a codec"). Everything else asks the codec class: its
defaults (:meth:`Codec.resolve_quality`), its video form (:attr:`Codec.video_form`), whether it
is a baseline, how to label it.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dappled.codec.chunks import unpack_chunks
from dappled.codec.container import Packet, StreamHeader
from dappled.codec.defaults import DEFAULT_GOP, DEFAULT_QUALITY
from dappled.devices import cuda_available
from dappled.errors import BitstreamError, LimitError, OptionError, UnsupportedError

if TYPE_CHECKING:
    from dappled.codec.stream import StreamDecoder, StreamEncoder


@dataclass
class EncodeParams:
    """What the caller asks of an encode: a rate target (quality preset or bpp) and where to run."""

    quality: int | None = None
    bpp: float | None = None
    device: str = "cpu"
    progress: bool = False
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


DECODE_MAX_BYTES = 1_500_000_000
"""Most memory (bytes) a decode may need by its codec's :meth:`Codec.decode_budget`: 1.5 GB.
Beyond the interpreter and the stream bytes themselves."""
DECODE_MAX_MACS = 32_000_000_000
"""Most work (multiply-accumulates, or a codec's equivalent) a decode may need by default: 32
GMAC, a 16-Mpixel field image at the cap of its architecture (1536 MAC/pixel); codecs with
heavier fixed networks set their own :attr:`Codec.decode_max_macs`."""


@dataclass(frozen=True)
class Budget:
    """What decoding a stream will need, computed from its header and payload before any
    allocation: work in multiply-accumulates and peak memory in bytes."""

    macs: int
    bytes: int

    def describe(self) -> str:
        """E.g. ``6.4 GMAC / 0.41 GB`` (MMAC and MB below a tenth of a G)."""
        work = f"{self.macs / 1e9:.1f} GMAC" if self.macs >= 10**8 else f"{self.macs / 1e6:.3g} MMAC"
        mem = f"{self.bytes / 1e9:.2f} GB" if self.bytes >= 10**8 else f"{self.bytes / 1e6:.3g} MB"
        return f"{work} / {mem}"


@dataclass
class ClipResult:
    """A clip coded and decoded again: its size (the whole stream file, or a baseline's coded
    packets), the decoded frames and the seconds each way."""

    bytes: int
    encode_seconds: float
    frames: list[np.ndarray]
    decode_seconds: float


class Codec(ABC):
    """One image codec. Subclasses set the class attributes and implement encode/decode."""

    name: ClassVar[str]
    codec_id: ClassVar[int]
    description: ClassVar[str] = ""
    label: ClassVar[str] = ""
    """Name of the codec in plots and tables (default: its name)."""
    quality_range: ClassVar[tuple[int, int]] = (1, 8)
    default_quality: ClassVar[int] = DEFAULT_QUALITY
    supports_bpp: ClassVar[bool] = False
    baseline: ClassVar[bool] = False
    """A classical codec we compare against (dashed curves), not one of ours."""
    video_form: ClassVar[str | None] = None
    """The registered codec that codes this codec's videos (None: this codec itself, through
    :meth:`make_encoder` / :meth:`make_decoder`, intra-only by default)."""
    video_stream: ClassVar[bool] = False
    """True for a codec made for video (another codec's video form): a stream of it is a video
    even when it holds one frame, unless an image file is asked for."""
    writes_streams: ClassVar[bool] = True
    """False for a baseline measured outside the container (the PyAV video codecs of
    ``dappled eval --video``): it codes clips with :meth:`code_clip` and writes no stream."""

    decoders: ClassVar[dict[str, str]] = {"cpu": "CPU"}
    """This codec's decoders by device, and what each one is (`dappled play` picks the fastest
    present and reports it; see :meth:`pick_decoder`)."""

    decode_max_macs: ClassVar[int] = DECODE_MAX_MACS
    """The work a decode of this codec may need (:meth:`check_budget`)."""

    comparisons: ClassVar[tuple[tuple[str, str], ...]] = ()
    """(test, anchor) series pairs that ``python -m dappled.eval.compare`` tables by default
    (this codec's ablations, and the baselines it is measured against)."""

    def pick_decoder(self, device: str) -> tuple[str, str]:
        """(device, description) of the decoder to use: for "auto" the fastest this codec has on
        this machine (CUDA when it has a CUDA decoder and a GPU answers, else the CPU one); an
        explicit device this codec or machine lacks is an OptionError."""
        if device == "auto":
            device = "cuda" if "cuda" in self.decoders and cuda_available() else "cpu"
        if device not in self.decoders:
            have = ", ".join(self.decoders)
            raise OptionError(f"codec {self.name} has no {device} decoder (it has: {have})")
        if device == "cuda" and not cuda_available():
            raise OptionError("--device cuda: no CUDA GPU is available here (torch sees none)")
        return device, self.decoders[device]

    def resolve_quality(self, params: EncodeParams) -> int:
        """The --quality of an encode: the one asked for, else this codec's default."""
        return params.quality if params.quality is not None else self.default_quality

    def display_name(self) -> str:
        """The label of plots and tables."""
        return self.label or self.name
    # the lowest --bpp a codec with rate control accepts: far below any useful rate (a 768x512
    # image at 0.01 bpp is 490 bytes), and where the field codec's lambda (0.002 * (0.6 / bpp)**2,
    # 7.2 at 0.01) stays in the range its fit converges in; 1e-6 made it diverge to NaN
    min_bpp: ClassVar[float] = 0.01

    def check_params(self, params: EncodeParams) -> None:
        """Reject inconsistent or out-of-range rate options with an OptionError."""
        if params.quality is not None and params.bpp is not None:
            raise OptionError("give either --quality or --bpp, not both")
        if params.bpp is not None:
            if not self.supports_bpp:
                raise OptionError(f"codec {self.name} has no --bpp rate control; use --quality")
            if not (math.isfinite(params.bpp) and self.min_bpp <= params.bpp <= 24):
                raise OptionError(f"--bpp for {self.name} must be in [{self.min_bpp:g}, 24], "
                                  f"got {params.bpp:g}")
        if params.quality is not None:
            lo, hi = self.quality_range
            if not lo <= params.quality <= hi:
                raise OptionError(f"--quality for {self.name} must be in {lo}..{hi}")

    @abstractmethod
    def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
        """Encode an (H, W, 3) uint8 RGB image into packets (frame 0)."""

    @abstractmethod
    def decode_image(self, header: StreamHeader, packets: list[Packet], device: str = "cpu") -> np.ndarray:
        """Decode the packets of one image back to an (H, W, 3) uint8 RGB array."""

    def decode_budget(self, header: StreamHeader, packets: list[Packet]) -> Budget:
        """The work and peak memory decoding these packets will need, from the header and the
        payload sizes alone (nothing decoded, nothing image-sized allocated); an upper bound.

        Default, for a codec that says nothing more: 1000 MAC and 24 bytes per pixel per frame
        (RGB output, a few float planes) plus twice the payload bytes."""
        pixels = header.width * header.height * max(1, len([p for p in packets if p.type.name == "FRAME"]))
        payload = sum(len(p.payload) for p in packets)
        return Budget(1000 * pixels, 24 * header.width * header.height + 2 * payload)

    def check_budget(self, header: StreamHeader, packets: list[Packet]) -> Budget:
        """The stream's :meth:`decode_budget`; LimitError when it is over this decoder's limit
        (:attr:`decode_max_macs`, :data:`DECODE_MAX_BYTES`)."""
        b = self.decode_budget(header, packets)
        if b.macs > self.decode_max_macs or b.bytes > DECODE_MAX_BYTES:
            limit = Budget(self.decode_max_macs, DECODE_MAX_BYTES)
            raise LimitError(f"a {header.width}x{header.height} {self.name} decode of this stream needs "
                             f"{b.describe()}, over the decoder's limit ({limit.describe()})")
        return b

    def test_encode_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`dappled.codec.api.encode_image` for the cheapest real encode
        (fewest fit iterations, default rate): what the contract test and the cold-start
        benchmark encode with, so a codec joins both by registering. Default: no options."""
        return {}

    def make_decoder(self, header: StreamHeader, device: str = "cpu") -> StreamDecoder:
        """A decoder for the packets of a stream with this header (see dappled.codec.stream);
        default: every frame decoded alone by :meth:`decode_image`."""
        from dappled.codec.stream import IntraDecoder

        return IntraDecoder(self, header, device)

    def make_encoder(self, width: int, height: int, fps: float, params: EncodeParams, *,
                     kbps: float | None = None, gop: int = DEFAULT_GOP,
                     frames: int | None = None) -> StreamEncoder:
        """An encoder of `width` x `height` frames at `fps`, at `kbps` or at params' --quality
        (`frames`: the clip's length when known); default: every frame coded alone by
        :meth:`encode_image` (intra-only: `gop` and `frames` unused)."""
        from dappled.codec.stream import IntraEncoder

        return IntraEncoder(self, width, height, fps, params, kbps)

    def rd_points(self, n: int) -> list[dict[str, Any]]:
        """n rate settings for a rate-distortion sweep, low to high rate (kwargs of api.encode_image).

        Codecs with --bpp sweep bpp targets; the ladder puts GaussianImage's published Kodak
        points (0.43, 0.72, 1.0 bpp) first so small sweeps can be compared with them directly.
        Others spread --quality evenly over quality_range. Codecs override this for a tighter
        range (the classical baselines aim at 0.2..2 bpp).
        """
        if n < 1:
            raise OptionError(f"number of rate points must be at least 1, got {n}")
        if self.supports_bpp:
            ladder = (0.43, 0.72, 1.0, 0.25, 1.5, 0.5, 2.0, 0.15, 0.33, 1.25, 3.0, 0.1)
            if n <= len(ladder):
                return [{"bpp": b} for b in sorted(ladder[:n])]
            lo, hi = math.log(0.1), math.log(3.0)
            return [{"bpp": round(math.exp(lo + (hi - lo) * i / (n - 1)), 4)} for i in range(n)]
        lo_q, hi_q = self.quality_range
        if n == 1:
            return [{"quality": self.default_quality}]
        qs = sorted({round(lo_q + (hi_q - lo_q) * i / (n - 1)) for i in range(n)})
        return [{"quality": q} for q in qs]

    video_eval_bpp: ClassVar[tuple[float, ...]] = (0.05, 0.1, 0.2, 0.4)
    """Bits per pixel per frame of the rates ``dappled eval --video`` sweeps by default."""
    fixed_quantizer: ClassVar[bool] = False
    """True when the codec's video "rates" are quantizers (no rate control): a clip-wide --kbps
    list does not apply to it."""

    def video_rates(self, width: int, height: int, fps: float) -> list[float]:
        """Target kbps of a video rate-distortion sweep on a clip (``video_eval_bpp``)."""
        return [round(b * width * height * fps / 1000, 1) for b in self.video_eval_bpp]

    def code_clip(self, frames: Sequence[np.ndarray], fps: Fraction, kbps: float, gop: int, *,
                  seed: int = 0, progress: bool = False, **options: Any) -> ClipResult:
        """Encode a clip at `kbps` with this codec's video form and decode it again (the decode
        timed after a warm-up run): what ``dappled eval --video`` measures. A video form without
        rate control (``fixed_quantizer``) takes `kbps` as its --quality."""
        import time

        from dappled.codec.video import decode_video, encode_video

        rate: dict[str, Any] = {"kbps": kbps}
        if video_codec(self.name).fixed_quantizer:  # no rate control: the "rate" is a --quality
            rate = {"quality": round(kbps)}
        res = encode_video(frames, fps, self.name, gop=gop, progress=progress, seed=seed, **rate,
                           **options)
        decode_video(res.data)  # warm-up (JIT, caches)
        t0 = time.perf_counter()
        out = decode_video(res.data)
        return ClipResult(len(res.data), res.seconds, out, time.perf_counter() - t0)

    def describe(self, header: StreamHeader, packets: list[Packet]) -> dict[str, Any]:
        """Codec-specific facts about a stream for `dappled info` (none by default)."""
        return {}

    def stream_sizes(self, packets: list[Packet]) -> dict[str, int]:
        """Bytes per named sub-stream, for `dappled info`; codecs with chunked payloads get it free."""
        sizes: dict[str, int] = {}
        for p in packets:
            try:
                chunks = unpack_chunks(p.payload)
            except BitstreamError:
                chunks = {p.type.name.lower(): p.payload}
            for tag, data in chunks.items():
                sizes[tag] = sizes.get(tag, 0) + len(data)
        return sizes


# name -> (codec id, "module:Class"). Ids are stored in streams: never reuse or renumber one.
# One line per codec; its package is dappled/codec/<family>/.
_TABLE: dict[str, tuple[int, str]] = {
    "splat": (1, "dappled.codec.splat.codec:SplatCodec"),
    "rat": (2, "dappled.codec.rat.codec:RatCodec"),
    "tokens": (3, "dappled.codec.tokens.codec:TokensCodec"),
    "splatv": (4, "dappled.codec.splat.video.codec:SplatVideoCodec"),  # splat's video form
    "field": (5, "dappled.codec.field.codec:FieldCodec"),
    "fieldv": (6, "dappled.codec.field.video.codec:FieldVideoCodec"),  # field's video form
    # Classical image baselines.
    "jpeg": (16, "dappled.codec.classical.image:JpegCodec"),
    "webp": (17, "dappled.codec.classical.image:WebpCodec"),
    "avif": (18, "dappled.codec.classical.image:AvifCodec"),
    "jp2": (19, "dappled.codec.classical.image:Jpeg2000Codec"),
    "hevc": (20, "dappled.codec.classical.image:HevcCodec"),
    "jxl": (21, "dappled.codec.classical.image:JxlCodec"),
    # Classical video baselines through PyAV (ids reserved: they write no Dappled stream yet).
    "x264": (24, "dappled.codec.classical.video:X264Codec"),
    "x265": (25, "dappled.codec.classical.video:X265Codec"),
    "av1": (26, "dappled.codec.classical.video:Av1Codec"),
    "mjpeg": (27, "dappled.codec.classical.video:MjpegCodec"),
}
DEFAULT_CODEC = "field"
"""--codec when none is given for an image: the field codec, ahead of WebP at its fast effort on
Kodak (session 12)."""
DEFAULT_VIDEO_CODEC = "splat"
"""--codec when none is given for a video (coded by its video form, splatv: the one every player
plays in real time)."""
IMAGE_ANCHOR = "jpeg"
"""The reference curve of image BD tables (``dappled eval``)."""
DEMO_CODEC = "field"
"""The codec `dappled demo` (and `make demo`) shows: the best one that encodes in about a minute."""
DEMO_OPTIONS: dict[str, Any] = {"effort": "fast"}
"""Its options in the demo: about a minute of one core at 768x512."""
DEMO_BASELINES = ("jpeg", "webp", "avif")
"""The classical codecs the demo matches to its file size."""
VIDEO_ANCHORS = ("x264", "mjpeg")
"""The reference curves of video BD tables (``dappled eval --video``): the first is the default
anchor, the others are always tabled too."""
_INSTANCES: dict[str, Codec] = {}


def register(name: str, codec_id: int, target: str) -> None:
    """Add a codec to the table (used by codec families that live in other modules)."""
    for other, (oid, _) in _TABLE.items():
        if oid == codec_id and other != name:
            raise ValueError(f"codec id {codec_id} already taken by {other}")
    _TABLE[name] = (codec_id, target)


def names(*, streams: bool | None = None) -> list[str]:
    """Names of all registered codecs (``streams=True``: those that write Dappled streams;
    False: those that do not, the evaluation-only baselines)."""
    if streams is None:
        return list(_TABLE)
    return [n for n in _TABLE if get(n).writes_streams == streams]


def ids() -> list[int]:
    """Ids of all registered codecs (what a stream header may name)."""
    return [cid for cid, _ in _TABLE.values()]


def get(name: str) -> Codec:
    """The codec registered under `name`; OptionError if there is none."""
    if name not in _TABLE:
        raise OptionError(f"unknown codec {name!r} (known: {', '.join(names())})")
    if name not in _INSTANCES:
        module_name, cls_name = _TABLE[name][1].split(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        _INSTANCES[name] = cls()
    return _INSTANCES[name]


def name_of(codec_id: int) -> str:
    """The name of the codec with this stream id; UnsupportedError if unknown."""
    for name, (cid, _) in _TABLE.items():
        if cid == codec_id:
            return name
    raise UnsupportedError(f"unknown codec id {codec_id}")


def by_id(codec_id: int) -> Codec:
    """The codec with this stream id; UnsupportedError if unknown."""
    return get(name_of(codec_id))


def video_codec(name: str) -> Codec:
    """The codec that codes a video given as --codec `name`: its video form if it declares one
    (:attr:`Codec.video_form`), else the codec itself."""
    codec = get(name)
    return get(codec.video_form) if codec.video_form else codec

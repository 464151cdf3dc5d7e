"""The library entry points behind the CLI: encode an image, decode a stream, describe a stream."""

from __future__ import annotations

import os
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from dappled.codec import registry
from dappled.codec.container import (
    ColorSpace,
    Container,
    PacketType,
    StreamHeader,
    pack,
    unpack,
)
from dappled.codec.registry import EncodeParams
from dappled.errors import BitstreamError, InputError, LimitError, OptionError
from dappled.fileio import atomic_write_bytes

DEFAULT_CODEC = registry.DEFAULT_CODEC
DEFAULT_VIDEO_CODEC = registry.DEFAULT_VIDEO_CODEC


def check_device(device: str) -> str:
    """Validate a --device value; asking for CUDA where there is none is an OptionError."""
    if device not in ("cpu", "cuda"):
        raise OptionError(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise OptionError("--device cuda asked for, but no CUDA device is available")
    return device


def _check_image(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


def encode_image(
    image: np.ndarray,
    codec: str = DEFAULT_CODEC,
    *,
    quality: int | None = None,
    bpp: float | None = None,
    device: str = "cpu",
    progress: bool = False,
    seed: int = 0,
    **options: Any,
) -> bytes:
    """Encode an (H, W, 3) uint8 RGB image with the named codec; returns the container bytes."""
    image = _check_image(image)
    impl = registry.get(codec)
    params = EncodeParams(quality, bpp, check_device(device), progress, seed, dict(options))
    impl.check_params(params)
    packets = impl.encode_image(image, params)
    h, w = image.shape[:2]
    header = StreamHeader(impl.codec_id, w, h, 1, 0, 1, ColorSpace.RGB)
    return pack(header, packets)


def parse(data: bytes) -> Container:
    """Parse container bytes, checking the codec id against the registry."""
    return unpack(data, known_codecs=registry.ids())


def decode_image(data: bytes, *, device: str = "cpu") -> np.ndarray:
    """Decode container bytes of an image to an (H, W, 3) uint8 RGB array."""
    container = parse(data)
    h = container.header
    impl = registry.by_id(h.codec_id)
    frames = container.frames()
    if h.frame_count != 1:
        raise BitstreamError(f"expected an image stream, found a stream of {h.frame_count} frames")
    if len(frames) != 1:
        raise BitstreamError(f"an image stream holds one frame packet, found {len(frames)}")
    impl.check_budget(h, container.packets)  # before anything image-sized is allocated (issue 18)
    image = impl.decode_image(h, container.packets, check_device(device))
    if image.shape != (h.height, h.width, 3) or image.dtype != np.uint8:
        raise BitstreamError("decoder produced an image of the wrong shape")
    return image


@dataclass
class StreamInfo:
    """What `dappled info` prints about a stream."""

    codec: str
    width: int
    height: int
    frames: int
    fps: float
    bytes: int
    bpp: float
    streams: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def inspect(data: bytes) -> StreamInfo:
    """Describe a stream without decoding its pixels."""
    container = parse(data)
    h = container.header
    impl = registry.by_id(h.codec_id)
    payload_packets = [p for p in container.packets if p.type in (PacketType.CONFIG, PacketType.FRAME)]
    bpp = 8 * len(data) / (h.width * h.height * h.frame_count)
    details = impl.describe(h, container.packets)
    if h.frame_count == 1:  # an image: what its decode needs, against the decoder's limit
        budget = impl.decode_budget(h, container.packets)
        over = budget.macs > impl.decode_max_macs or budget.bytes > registry.DECODE_MAX_BYTES
        limit = registry.Budget(impl.decode_max_macs, registry.DECODE_MAX_BYTES)
        verdict = "over" if over else "within"
        details["decode budget"] = f"{budget.describe()} ({verdict} the limit {limit.describe()})"
    return StreamInfo(registry.name_of(h.codec_id), h.width, h.height, h.frame_count, h.fps,
                      len(data), bpp, impl.stream_sizes(payload_packets), details)


MAX_STREAM_BYTES = 1 << 30
"""Largest stream file read into memory whole (images and `info`); video playback streams."""
_READ_CHUNK = 1 << 20


def stream_byte_cap(header: StreamHeader) -> int:
    """Most bytes a stream with this header may hold: 8 bytes per pixel per frame (far above
    any lossy codec; raw RGB is 3) plus slack for headers, capped at MAX_STREAM_BYTES."""
    per_frame = 8 * header.width * header.height + 4096
    return min(MAX_STREAM_BYTES, header.frame_count * per_frame + 65536)


def _open_stream(path: str | os.PathLike[str]) -> BinaryIO:
    """The stream file opened for reading: `-` is standard input; anything else must be a
    regular file (a device such as /dev/zero or a FIFO would never end or never start)."""
    if str(path) == "-":
        return sys.stdin.buffer
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file (give - to read standard input)")
    try:
        return open(path, "rb")  # closed by read_stream
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def read_stream(path: str | os.PathLike[str]) -> bytes:
    """Read a stream file (or `-`, standard input) incrementally, never past the size its
    header allows (:func:`stream_byte_cap`). InputError naming the file if it cannot be read,
    BitstreamError naming it if it is not a valid stream or is over the cap."""
    from dappled.codec.container import HEADER_SIZE, decode_header

    f = _open_stream(path)
    try:
        head = f.read(HEADER_SIZE)
        try:
            header = decode_header(head, registry.ids())
        except BitstreamError as exc:
            raise type(exc)(f"{path}: {exc}") from None
        cap = stream_byte_cap(header)
        what = f"{header.width}x{header.height} stream of {header.frame_count} frame(s)"
        if f is not sys.stdin.buffer and os.fstat(f.fileno()).st_size > cap:
            raise LimitError(f"{path}: {os.fstat(f.fileno()).st_size} bytes is over the {cap} bytes a "
                             f"{what} may hold")
        parts = [head]
        size = len(head)
        while True:
            chunk = f.read(min(_READ_CHUNK, cap + 1 - size))
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
            if size > cap:
                raise LimitError(f"{path}: more than the {cap} bytes a {what} may hold")
        return b"".join(parts)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def check_output_folder(dst: str | os.PathLike[str]) -> None:
    """InputError naming `dst` when its folder does not exist, before any work is done (the
    atomic write would otherwise fail at the end, naming its temporary file)."""
    folder = Path(dst).parent
    if not folder.is_dir():
        raise InputError(f"{dst}: folder {folder} does not exist")


@dataclass
class EncodeReport:
    """Figures of one file encode, for the CLI and the demo."""

    bytes: int
    bpp: float
    seconds: float


def encode_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], codec: str = DEFAULT_CODEC, *,
                quality: int | None = None, bpp: float | None = None, device: str = "cpu",
                progress: bool = False, seed: int = 0,
                options: dict[str, Any] | None = None) -> EncodeReport:
    """Encode an image file to a stream file (written atomically); `options` are the codec's
    own (``-O key=value``), the rest as in :func:`encode_image`."""
    from dappled.datasets.images import load_image

    check_output_folder(dst)
    image = load_image(src)
    t0 = time.perf_counter()
    data = encode_image(image, codec, quality=quality, bpp=bpp, device=device, progress=progress, seed=seed,
                        **(options or {}))
    seconds = time.perf_counter() - t0
    atomic_write_bytes(dst, data)
    return EncodeReport(len(data), 8 * len(data) / (image.shape[0] * image.shape[1]), seconds)


def decode_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, device: str = "cpu") -> float:
    """Decode a stream file to an image file (written atomically); returns decode seconds."""
    from dappled.datasets.images import save_image

    check_output_folder(dst)
    data = read_stream(src)
    t0 = time.perf_counter()
    try:
        image = decode_image(data, device=device)
    except BitstreamError as exc:
        raise BitstreamError(f"{src}: {exc}") from None
    seconds = time.perf_counter() - t0
    save_image(dst, image)
    return seconds


# ---------------------------------------------------------------- video (dappled/codec/video.py)


IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp", ".ppm", ".pgm")


def is_image_output(dst: str | os.PathLike[str]) -> bool:
    """True when `dst` names one image file (not a video, not a frames/%04d.png pattern)."""
    return Path(dst).suffix.lower() in IMAGE_SUFFIXES and "%" not in str(dst)


def is_video_stream_file(path: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None) -> bool:
    """True when the stream file holds more than one frame, or its codec is made for video
    (``Codec.video_stream``) and `dst` is not one image file (a one-frame stream of such a codec
    decodes to an image like any other).

    An unreadable or invalid file returns False, so the image path reports its error.
    """
    from dappled.codec.container import HEADER_SIZE, decode_header

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
        h = decode_header(head, registry.ids())
    except (OSError, BitstreamError):
        return False
    if h.frame_count > 1:
        return True
    return registry.by_id(h.codec_id).video_stream and (dst is None or not is_image_output(dst))


def encode_video_file(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                      codec: str = DEFAULT_VIDEO_CODEC, **kwargs: Any) -> Any:
    """Encode a video file (anything PyAV reads) into a stream file; see dappled.codec.video."""
    from dappled.codec.video import encode_video_file as _encode

    return _encode(src, dst, codec, **kwargs)


def decode_video_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Decode a video stream file to a video file or image sequence; see dappled.codec.video."""
    from dappled.codec.video import decode_video_file as _decode

    return _decode(src, dst, **kwargs)

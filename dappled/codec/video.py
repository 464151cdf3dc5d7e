"""Video streams: encode a clip into a Dappled stream, decode one packet by packet, seek by index.

Stream layout (docs/format.md, "Video streams"): file header (frame_count > 1, fps), a CONFIG
packet, one FRAME packet per frame (intra frames flagged KEYFRAME), an INDEX packet listing the
byte offset of every intra frame, END. The INDEX payload ends with its entry count so a reader
with a seekable file finds it from the end without scanning; a reader on a pipe never needs it.
"""

from __future__ import annotations

import io
import math
import os
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from dappled.codec import registry
from dappled.codec.container import (
    HEADER_SIZE,
    KEYFRAME,
    MAX_FRAMES,
    PACKET_HEADER_SIZE,
    ContainerReader,
    Packet,
    PacketType,
    StreamHeader,
    encode_header,
    encode_packet,
)
from dappled.codec.defaults import DEFAULT_GOP
from dappled.codec.progress import bar as progress_bar
from dappled.codec.registry import Codec, EncodeParams
from dappled.codec.stream import FrameStats, StreamDecoder
from dappled.errors import BitstreamError, InputError, OptionError, TruncatedError
from dappled.fileio import atomic_open

_INDEX_ENTRY = struct.Struct("<IQ")
_PACKET = struct.Struct("<BBHIII")  # the container's packet header (docs/format.md)
_U32 = struct.Struct("<I")


@dataclass
class VideoEncodeResult:
    """A coded clip: the stream bytes, per-frame encoder statistics and (optionally) the
    encoder's own reconstruction (what any decoder must output)."""

    data: bytes
    stats: list[FrameStats]
    seconds: float
    recon: list[np.ndarray] = field(default_factory=list)

    @property
    def frames(self) -> int:
        """Frames coded."""
        return len(self.stats)


def as_fraction(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction (29.97 -> 30000/1001)."""
    f = Fraction(fps).limit_denominator(1001 * 1000) if not isinstance(fps, Fraction) else fps
    if f <= 0:
        raise OptionError(f"frame rate must be positive, got {fps}")
    return f


def index_payload(entries: Sequence[tuple[int, int]]) -> bytes:
    """INDEX payload: (frame u32, byte offset u64) per intra frame, then the entry count u32."""
    return b"".join(_INDEX_ENTRY.pack(f, o) for f, o in entries) + _U32.pack(len(entries))


def parse_index(payload: bytes, frame_count: int, file_size: int | None = None) -> list[tuple[int, int]]:
    """Entries of an INDEX payload, checked (ascending frames and offsets, inside the file)."""
    if len(payload) < 4:
        raise BitstreamError("index too short")
    (n,) = _U32.unpack_from(payload, len(payload) - 4)
    if len(payload) != n * _INDEX_ENTRY.size + 4:
        raise BitstreamError("index size does not match its entry count")
    entries = [_INDEX_ENTRY.unpack_from(payload, i * _INDEX_ENTRY.size) for i in range(n)]
    prev_f, prev_o = -1, HEADER_SIZE - 1
    for f, o in entries:
        if f <= prev_f or o <= prev_o or f >= frame_count or (file_size is not None and o >= file_size):
            raise BitstreamError("index entry out of order or out of range")
        prev_f, prev_o = f, o
    return entries


def build_stream(header: StreamHeader, packets: Sequence[Packet], config: bytes | None = None) -> bytes:
    """Serialize header, CONFIG, packets, INDEX (offsets of the keyframes) and END."""
    parts = [encode_header(header)]
    offset = HEADER_SIZE
    if config is not None:
        parts.append(encode_packet(Packet(PacketType.CONFIG, config)))
        offset += len(parts[-1])
    entries = []
    for p in packets:
        if p.type == PacketType.FRAME and p.keyframe:
            entries.append((p.frame, offset))
        parts.append(encode_packet(p))
        offset += len(parts[-1])
    parts.append(encode_packet(Packet(PacketType.INDEX, index_payload(entries))))
    parts.append(encode_packet(Packet(PacketType.END, b"")))
    return b"".join(parts)


def video_codec(name: str) -> Codec:
    """The codec that codes a video given as --codec `name`: its declared video form
    (``Codec.video_form``), else the codec itself with its own stream encoder (intra-only by
    default)."""
    return registry.video_codec(name)


def check_frames(frames: Sequence[np.ndarray], fps: Any, gop: int | None) -> tuple[int, int, Fraction, int]:
    """Check the frames and group length of an encode: (height, width, frame rate, gop)."""
    if not frames:
        raise InputError("no frames to encode")
    if len(frames) > MAX_FRAMES:
        raise OptionError(f"at most {MAX_FRAMES} frames")
    h, w = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.shape != (h, w, 3) or f.dtype != np.uint8:
            raise InputError(f"frame {i} is {f.shape} {f.dtype}, expected ({h}, {w}, 3) uint8")
    rate = as_fraction(fps)
    gop = DEFAULT_GOP if gop is None else gop
    if gop < 1:
        raise OptionError(f"--gop must be at least 1, got {gop}")
    return h, w, rate, gop

def encode_video(frames: Sequence[np.ndarray], fps: float | Fraction,
                 codec: str = registry.DEFAULT_VIDEO_CODEC, *, kbps: float | None = None,
                 quality: int | None = None, gop: int | None = None,
                 device: str = "cpu", progress: bool = False, keep_recon: bool = False,
                 seed: int = 0, **options: Any) -> VideoEncodeResult:
    """Encode RGB frames (all the same size) into a video stream with any registered codec.

    Give ``kbps`` or a ``quality`` (the codec's default when neither); ``options`` are the
    codec's own (``-O``, strings are parsed).
    """
    impl = video_codec(codec)
    h, w, rate, gop = check_frames(frames, fps, gop)
    if kbps is not None and not (math.isfinite(kbps) and kbps > 0):
        raise OptionError(f"--kbps must be a positive number, got {kbps}")
    n = len(frames)
    params = EncodeParams(quality, None, device, progress, seed, dict(options))
    enc = impl.make_encoder(w, h, float(rate), params, kbps=kbps, gop=gop, frames=n)
    header = StreamHeader(impl.codec_id, w, h, n, rate.numerator, rate.denominator)
    checker = impl.make_decoder(header, device) if keep_recon else None
    packets: list[Packet] = []
    recon: list[np.ndarray] = []
    t0 = time.perf_counter()
    bar = progress_bar(n, "encode", "frame") if progress else None
    total = 0
    try:
        for i, frame in enumerate(frames):
            packets.append(enc.encode(np.ascontiguousarray(frame), n - i))
            if checker is not None:
                pic = enc.recon if enc.recon is not None else checker.decode(packets[-1])
                assert pic is not None
                recon.append(pic)
            if bar is not None:
                st = enc.stats[-1]
                bar.update(1)
                extra = f", {st.gaussians} G" if hasattr(st, "gaussians") else ""
                extra += f", {st.psnr:.2f} dB" if getattr(st, "psnr", 0) else ""
                total += st.bytes
                kb = 8 * total * float(rate) / 1000 / (i + 1)  # the clip's rate so far
                bar.set_postfix_str(f"frame {st.frame} {'IP'[st.type]} {st.bytes} B{extra}, {kb:.0f} kbps")
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    data = build_stream(header, packets, enc.config())
    return VideoEncodeResult(data, enc.stats, seconds, recon)


# ---------------------------------------------------------------- decoding


def _reader(stream: BinaryIO, size_hint: int | None = None) -> ContainerReader:
    return ContainerReader(stream, known_codecs=registry.ids(), size_hint=size_hint)


def make_decoder(header: StreamHeader, device: str = "cpu") -> StreamDecoder:
    """The stream decoder of the codec the header names."""
    return registry.by_id(header.codec_id).make_decoder(header, device)


def iter_decode(stream: BinaryIO, device: str = "cpu",
                size_hint: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Decode a video stream packet by packet from any file object (a pipe is fine):
    yields (frame index, (H, W, 3) uint8 frame) as each packet arrives."""
    reader = _reader(stream, size_hint)
    dec = make_decoder(reader.header, device)
    n = 0
    for packet in reader:
        img = dec.decode(packet)
        if img is not None:
            if packet.frame != n:
                raise BitstreamError(f"frame {packet.frame} where frame {n} was expected")
            n += 1
            yield packet.frame, img
    if n != reader.header.frame_count:
        raise TruncatedError(f"stream ends after {n} of {reader.header.frame_count} frames")


def decode_video(data: bytes, device: str = "cpu") -> list[np.ndarray]:
    """All frames of a video stream held in memory."""
    return [img for _, img in iter_decode(io.BytesIO(data), device, size_hint=len(data))]


def stream_header(data: bytes) -> StreamHeader:
    """The header of a stream (to tell video from image streams)."""
    return ContainerReader(io.BytesIO(data[:HEADER_SIZE]), known_codecs=registry.ids()).header


class VideoReader:
    """Random access to a video stream in a seekable file: seek to the intra frame at or before
    the wanted frame through the INDEX packet, then decode forward from there."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, device: str = "cpu") -> None:
        if isinstance(source, (str, os.PathLike)):
            try:
                self._f: BinaryIO = open(source, "rb")
            except OSError as exc:
                raise InputError(f"{source}: cannot read ({exc.strerror})") from None
            self._own = True
        else:
            self._f, self._own = source, False
        self._f.seek(0, io.SEEK_END)
        self.size = self._f.tell()
        self._f.seek(0)
        self._reader = _reader(self._f, self.size)
        self.header = self._reader.header
        self.device = device
        self.index = self._load_index()

    def _load_index(self) -> list[tuple[int, int]]:
        """Keyframe offsets from the INDEX packet found from the end of the file; by scanning
        the packet headers when the file has no usable index."""
        try:
            end = self.size - PACKET_HEADER_SIZE  # the END packet
            self._f.seek(end - 4)
            (n,) = _U32.unpack(self._f.read(4))
            start = end - (n * _INDEX_ENTRY.size + 4) - PACKET_HEADER_SIZE
            if n > self.header.frame_count or start < HEADER_SIZE:
                raise BitstreamError("no index")
            self._reader.seek(start)
            p = self._reader.read_packet()
            if p is None or p.type != PacketType.INDEX:
                raise BitstreamError("no index")
            return parse_index(p.payload, self.header.frame_count, self.size)
        except (BitstreamError, struct.error):
            return self._scan_index()
        finally:
            self._reader.seek(HEADER_SIZE)

    def _scan_index(self) -> list[tuple[int, int]]:
        """Walk the packet headers (payloads are skipped, not read) up to INDEX or END."""
        entries = []
        offset = HEADER_SIZE
        while offset + PACKET_HEADER_SIZE <= self.size:
            self._f.seek(offset)
            ptype, flags, _res, frame, length, _crc = _PACKET.unpack(self._f.read(PACKET_HEADER_SIZE))
            if ptype in (PacketType.INDEX, PacketType.END):
                break
            if ptype == PacketType.FRAME and flags & KEYFRAME and frame < self.header.frame_count:
                entries.append((frame, offset))
            offset += PACKET_HEADER_SIZE + length
        return entries

    def _seek(self, offset: int) -> None:
        self._reader.seek(offset)

    def keyframe_before(self, frame: int) -> tuple[int, int]:
        """(frame, byte offset) of the last intra frame at or before `frame`."""
        if not 0 <= frame < self.header.frame_count:
            raise OptionError(f"frame {frame} outside 0..{self.header.frame_count - 1}")
        best = None
        for f, o in self.index:
            if f <= frame:
                best = (f, o)
        if best is None:
            raise BitstreamError(f"no intra frame at or before frame {frame}")
        return best

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, frame) from `start` on, decoding from the intra frame before it."""
        _key, offset = self.keyframe_before(start)
        self._seek(offset)
        dec = make_decoder(self.header, self.device)
        done = 0
        for p in self._reader:
            if p.type != PacketType.FRAME:
                continue
            img = dec.decode(p)
            if p.frame >= start and img is not None:
                yield p.frame, img
                done += 1
                if count is not None and done >= count:
                    return

    def frame(self, i: int) -> np.ndarray:
        """Frame i (decodes from the intra frame before it)."""
        for _, img in self.frames(i, 1):
            return img
        raise TruncatedError(f"stream ends before frame {i}")

    def time_to_frame(self, seconds: float) -> int:
        """The frame shown at time `seconds`."""
        return min(self.header.frame_count - 1, max(0, int(seconds * self.header.fps + 1e-9)))

    def close(self) -> None:
        """Close the file if this reader opened it."""
        if self._own:
            self._f.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- files


@dataclass
class VideoFileReport:
    """Figures of a file encode or decode, for the CLI."""

    frames: int
    bytes: int
    kbps: float
    seconds: float
    width: int = 0
    height: int = 0
    stats: list[FrameStats] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frames per second of the work done."""
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def encode_video_file(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                      codec: str = registry.DEFAULT_VIDEO_CODEC, *,
                      start: int = 0, frames: int | None = None, **kwargs: Any) -> VideoFileReport:
    """Read a clip with PyAV (or a %04d.png sequence), encode it, write the stream atomically."""
    from dappled.datasets.video import is_image_pattern, load_clip, probe_video

    fps: Fraction = Fraction(25)
    if not is_image_pattern(src):
        fps = probe_video(src).fps
    clip = load_clip(src, start, frames)
    result = encode_video(clip, fps, codec, **kwargs)
    with atomic_open(dst) as f:
        f.write(result.data)
    h, w = clip[0].shape[:2]
    kbps = 8 * len(result.data) / 1000 / (len(clip) / float(fps))
    return VideoFileReport(len(clip), len(result.data), kbps, result.seconds, w, h, result.stats)


def decode_video_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, device: str = "cpu",
                      vcodec: str = "auto", crf: int = 12) -> VideoFileReport:
    """Decode a video stream file to a video file (PyAV) or an image sequence; returns figures
    with the decode time alone (entropy decoding and rendering, not the output encoder)."""
    from dappled.datasets.video import write_video

    size = Path(src).stat().st_size if Path(src).exists() else None
    if size is None:
        raise InputError(f"{src}: no such file")
    spent = [0.0]
    count = [0]
    with open(src, "rb") as f:
        try:
            reader = _reader(f, size)
        except BitstreamError as exc:
            raise type(exc)(f"{src}: {exc}") from None
        header = reader.header

        def frames() -> Iterator[np.ndarray]:
            dec = make_decoder(header, device)
            n = 0
            while True:
                t0 = time.perf_counter()
                try:
                    p = reader.read_packet()
                    img = None if p is None else dec.decode(p)
                except BitstreamError as exc:
                    raise type(exc)(f"{src}: {exc}") from None
                spent[0] += time.perf_counter() - t0
                if p is None:
                    break
                if img is not None:
                    n += 1
                    count[0] = n
                    yield img
            if n != header.frame_count:
                raise TruncatedError(f"{src}: stream ends after {n} of {header.frame_count} frames")

        write_video(dst, frames(), Fraction(header.fps_num, header.fps_den), codec=vcodec, crf=crf)
    kbps = 8 * size / 1000 / (header.frame_count / header.fps) if header.fps else 0.0
    return VideoFileReport(count[0], size, kbps, spent[0], header.width, header.height)

"""Stream objects of a codec, in the style of PyAV's codec contexts: a decoder that takes one
packet at a time (``decode(packet) -> frame or None``, ``reset()``, ``warm_up()``) and an encoder
that gives one packet per frame (``encode(frame) -> packet``, ``stats``, ``config()``).

Every codec has them (``Codec.make_decoder`` / ``Codec.make_encoder``): the default ones here
code each frame on its own with the codec's ``encode_image`` / ``decode_image`` (intra-only
video, every frame a keyframe), so any image codec can code a video and be played; a codec with
inter-frame prediction (splatv) returns its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dappled.codec.container import KEYFRAME, PACKET_HEADER_SIZE, Packet, PacketType, StreamHeader
from dappled.errors import BitstreamError, OptionError

if TYPE_CHECKING:
    from dappled.codec.registry import Codec, EncodeParams


@dataclass
class FrameStats:
    """What an encoder did for one frame (codecs with more to say subclass it)."""

    frame: int
    type: int  # 0: intra, 1: predicted
    bytes: int  # the FRAME packet, header included
    budget: int  # the bytes the rate control aimed at (0: no rate target)


class StreamDecoder(Protocol):
    """Decodes the packets of one stream, in order, one at a time."""

    header: StreamHeader

    def decode(self, packet: Packet) -> np.ndarray | None:
        """The (H, W, 3) uint8 frame of a FRAME packet; None for other packets."""

    def reset(self) -> None:
        """Forget the references (before decoding from another keyframe, after a seek)."""

    def warm_up(self) -> None:
        """Load what the first frame would otherwise pay for (compiled code, weights)."""


class StreamEncoder(Protocol):
    """Encodes the frames of one stream, in order, one packet per frame."""

    stats: list[Any]
    recon: np.ndarray | None

    def encode(self, frame: np.ndarray, frames_left: int | None = None) -> Packet:
        """The FRAME packet of the next frame (its index counts from 0)."""

    def config(self) -> bytes | None:
        """The payload of the stream's CONFIG packet (None: no CONFIG packet)."""


def check_follows(last_frame: int | None, packet: Packet) -> None:
    """A predictive decoder's order rule: a predicted frame must follow the last frame decoded
    (BitstreamError otherwise); an intra frame may come anywhere, as after a seek."""
    if last_frame is not None and packet.frame != last_frame + 1 and not packet.keyframe:
        raise BitstreamError(f"predicted frame {packet.frame} does not follow frame {last_frame}")


def decode_last(dec: StreamDecoder, packets: list[Packet]) -> np.ndarray:
    """Feed every packet to a stream decoder and return the last frame it gives (what a video
    codec's decode_image returns); BitstreamError when it gives none."""
    out = None
    for p in packets:
        img = dec.decode(p)
        if img is not None:
            out = img
    if out is None:
        raise BitstreamError("stream holds no frame")
    return out


class IntraDecoder:
    """One frame per packet through the codec's ``decode_image`` (no state between frames)."""

    def __init__(self, codec: Codec, header: StreamHeader, device: str = "cpu") -> None:
        if header.codec_id != codec.codec_id:
            raise BitstreamError(f"stream of codec id {header.codec_id} given to the {codec.name} decoder")
        self.codec = codec
        self.header = header
        self.device = device

    def decode(self, packet: Packet) -> np.ndarray | None:
        if packet.type != PacketType.FRAME:
            return None
        self.codec.check_budget(self.header, [packet])  # the frame's decode budget (issue 18)
        img = self.codec.decode_image(self.header, [packet], self.device)
        if img.shape != (self.header.height, self.header.width, 3) or img.dtype != np.uint8:
            raise BitstreamError("decoder produced a frame of the wrong shape")
        return img

    def reset(self) -> None:
        """Nothing to forget: every frame stands alone."""

    def warm_up(self) -> None:
        """Nothing to load ahead for a plain image decoder."""


class IntraEncoder:
    """Each frame coded alone by the codec's ``encode_image``: at the bit rate as bits per pixel
    (codecs with --bpp), else at one --quality for every frame."""

    def __init__(self, codec: Codec, width: int, height: int, fps: float, params: EncodeParams,
                 kbps: float | None = None) -> None:
        from dataclasses import replace

        self.codec = codec
        self.width, self.height, self.fps = width, height, fps
        self.kbps = kbps
        if kbps is not None:
            if not (math.isfinite(kbps) and kbps > 0):
                raise OptionError(f"--kbps must be a positive number, got {kbps}")
            if not codec.supports_bpp:
                raise OptionError(f"codec {codec.name} has no rate control; give --quality for its video")
            if params.quality is not None:
                raise OptionError("give either --kbps or --quality, not both")
            bits = kbps * 1000 / fps - 8 * PACKET_HEADER_SIZE  # per frame, the packet header out
            params = replace(params, bpp=min(max(bits, 8.0) / (width * height), 24.0))
        codec.check_params(params)
        self.params = params
        self.stats: list[FrameStats] = []
        self.recon: np.ndarray | None = None
        self.index = 0

    def encode(self, frame: np.ndarray, frames_left: int | None = None) -> Packet:
        packets = self.codec.encode_image(np.ascontiguousarray(frame), self.params)
        frames = [p for p in packets if p.type == PacketType.FRAME]
        if len(frames) != 1:
            raise OptionError(f"codec {self.codec.name} made {len(frames)} frame packets for one image")
        packet = Packet(PacketType.FRAME, frames[0].payload, self.index, KEYFRAME)
        budget = 0 if self.params.bpp is None else int(self.params.bpp * self.width * self.height / 8)
        self.stats.append(FrameStats(self.index, 0, len(packet.payload) + PACKET_HEADER_SIZE, budget))
        self.index += 1
        return packet

    def config(self) -> bytes | None:
        return None

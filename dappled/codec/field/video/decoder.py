"""The field video decoder: torch-free and exact. An intra frame is a field image; a predicted
frame is the previous decoded frame moved by block motion (integer arithmetic) plus, unless
the frame has none, a residual field synthesised in exact arithmetic, so every decode of the
same bytes gives the same pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dappled.codec import residual_dct
from dappled.codec.chunks import require
from dappled.codec.container import Packet, PacketType, StreamHeader
from dappled.codec.field.format import MAX_PIXELS, parse_latents, unpack_payload
from dappled.codec.field.video.format import (
    CODEC_ID,
    FRAME_I,
    FRAME_P_DCT,
    FRAME_P_NET,
    FRAME_P_SKIP,
    frame_motion,
    parse_frame,
)
from dappled.codec.motion import compensate
from dappled.codec.prediction_filter import apply_filter
from dappled.codec.stream import check_follows
from dappled.errors import BitstreamError, LimitError
from dappled.models.field.integer import QuantNet, decode_latents
from dappled.models.field.layout import grids
from dappled.models.field.synthesis import synthesize


@dataclass
class FieldVideoState:
    """What the decoder holds between frames: the last frame and the group's networks."""

    frame: np.ndarray
    net: QuantNet | None  # None right after an intra frame (no predicted frame yet)


def apply_frame(payload: bytes, state: FieldVideoState | None, width: int, height: int,
                device: str = "cpu") -> FieldVideoState:
    """Decode one frame payload against the previous state; BitstreamError on anything
    inconsistent (a predicted frame with no reference or no networks, bad chunks)."""
    if width * height > MAX_PIXELS:
        raise LimitError(f"field streams are limited to {MAX_PIXELS} pixels, got {width}x{height}")
    parts = parse_frame(payload)
    version, ftype, n_esc, chunks = parts.version, parts.ftype, parts.n_esc, parts.chunks
    gs = grids(height, width)
    if ftype == FRAME_I:
        if n_esc:
            raise BitstreamError("escape count on an intra frame")
        p = unpack_payload(require(chunks, "FLD ")[0], width, height)
        latents = decode_latents(p.words, p.excess, gs, p.net)
        return FieldVideoState(synthesize(latents, gs, p.net, height, width, device), None)
    if state is None:
        raise BitstreamError("predicted frame without a preceding intra frame")
    motion = frame_motion(chunks, width, height, version)
    pred = compensate(state.frame, motion, filt=parts.interp)
    if parts.filter is not None:
        pred = apply_filter(pred, parts.filter)
    if ftype == FRAME_P_DCT:  # a transform residual; the group's networks stay
        return FieldVideoState(residual_dct.decode(require(chunks, "DCT ")[0], pred), state.net)
    if ftype == FRAME_P_SKIP:  # the prediction alone; the group's networks stay
        return FieldVideoState(pred, state.net)
    if ftype == FRAME_P_NET:
        if n_esc:
            raise BitstreamError("escape count outside the field payload")
        p = unpack_payload(require(chunks, "FLD ")[0], width, height)
        net, words, excess = p.net, p.words, p.excess
    else:
        if state.net is None:
            raise BitstreamError("predicted frame without its group's networks")
        net = state.net
        words, excess = parse_latents(chunks, sum(g.size for g in gs), n_esc)
    latents = decode_latents(words, excess, gs, net)
    return FieldVideoState(synthesize(latents, gs, net, height, width, device, base=pred), net)


class FieldVideoDecoder:
    """Decodes packets one at a time, as they arrive; a stream may start at any intra frame."""

    def __init__(self, header: StreamHeader, device: str = "cpu") -> None:
        if header.codec_id != CODEC_ID:
            raise BitstreamError(f"not a field video stream (codec id {header.codec_id})")
        self.header = header
        self.device = device
        self.state: FieldVideoState | None = None
        self.last_frame: int | None = None

    def reset(self) -> None:
        """Forget the reference and the group's networks (before decoding from another intra frame)."""
        self.state = None
        self.last_frame = None

    def warm_up(self) -> None:
        """Nothing to load ahead: numba's cache is loaded by the first frame."""

    def decode(self, packet: Packet) -> np.ndarray | None:
        """Decode one packet; the frame as (H, W, 3) uint8 for FRAME packets, else None."""
        if packet.type != PacketType.FRAME:
            return None
        check_follows(self.last_frame, packet)  # set and reset with the state
        self.state = apply_frame(packet.payload, None if packet.keyframe else self.state,
                                 self.header.width, self.header.height, self.device)
        self.last_frame = packet.frame
        return self.state.frame.copy()  # the reference stays the decoder's own

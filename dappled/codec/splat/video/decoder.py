"""The splat video decoder: one state (the quantized Gaussians) carried from frame to frame, each
frame payload applied to it and the result rasterized (numpy and numba on the CPU, never torch).

All arithmetic on the state is on the quantizer's integers, and the encoder takes its next
reference from decoding its own payload (:func:`apply_frame`), so the two never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dappled.codec import registry
from dappled.codec.chunks import require, unpack_chunks
from dappled.codec.container import Packet, PacketType, StreamHeader
from dappled.codec.motion import Motion
from dappled.codec.splat.decoder import render_quantized
from dappled.codec.splat.format import MAX_COLOR_SYMBOL, _decode_exact, max_gaussians, unpack_gaussians
from dappled.codec.splat.video.format import (
    CODEC_ID,
    COLOR,
    DROP,
    FRAME_I,
    KEEP,
    UPDATE,
    _parse_vhed,
    parse_motion,
)
from dappled.codec.stream import check_follows
from dappled.codec.threads import numba_threads
from dappled.errors import BitstreamError, LimitError
from dappled.models.splat.symbols import LOG_SCALE_MAX, LOG_SCALE_MIN, QuantConfig, QuantizedGaussians

# numba threads of the CPU decoder (0: $DAPPLED_THREADS, else 1): a frame is a few ms of work,
# where thread start-up and the tile pass's imbalance cost more than a second core gains
# (docs/results.md: at 640x272, 52.6 fps with 1 thread against 22.7 fps with 2)
DECODE_THREADS = 0


@dataclass
class VideoState:
    """What the decoder holds between frames: the quantized Gaussians and their quantizer."""

    q: QuantizedGaussians
    cfg: QuantConfig


def _concat(a: QuantizedGaussians, b: QuantizedGaussians) -> QuantizedGaussians:
    return QuantizedGaussians(*(np.concatenate([x, y]) for x, y in zip(
        (a.x, a.y, a.log_sx, a.log_sy, a.rho, a.color), (b.x, b.y, b.log_sx, b.log_sy, b.rho, b.color),
        strict=True)))



def _check_ranges(q: QuantizedGaussians, cfg: QuantConfig, w: int, h: int) -> None:
    """The same bounds unpack_gaussians enforces, for a state made by applying deltas."""
    if not len(q):
        return
    scale = 1 << cfg.pos_frac_bits
    if q.x.min() < 0 or q.y.min() < 0 or q.x.max() >= w * scale or q.y.max() >= h * scale:
        raise BitstreamError("Gaussian position outside the frame")
    lo, hi = np.floor(LOG_SCALE_MIN / cfg.log_scale_step), np.ceil(LOG_SCALE_MAX / cfg.log_scale_step)
    if min(q.log_sx.min(), q.log_sy.min()) < lo or max(q.log_sx.max(), q.log_sy.max()) > hi:
        raise BitstreamError("Gaussian scale out of range")
    if np.abs(q.rho).max() >= cfg.rho_levels:
        raise BitstreamError("Gaussian correlation out of range")
    if np.abs(q.color).max() > MAX_COLOR_SYMBOL:
        raise BitstreamError("Gaussian color out of range")


def apply_frame(payload: bytes, state: VideoState | None, width: int, height: int) -> VideoState:
    """Decode one frame payload against the previous state; returns the new state.

    BitstreamError on anything inconsistent (a predicted frame with no reference, counts that
    disagree, values out of range).
    """
    chunks = unpack_chunks(payload)
    (vhed,) = require(chunks, "VHED")
    ftype, nref = _parse_vhed(vhed)
    if ftype == FRAME_I:
        q, cfg = unpack_gaussians(chunks, width, height)
        return VideoState(q, cfg)
    if state is None:
        raise BitstreamError("predicted frame without a preceding intra frame")
    if nref != len(state.q):
        raise BitstreamError(f"predicted frame refers to {nref} Gaussians, the decoder holds {len(state.q)}")
    motn, flag_data, dpos, dshp, dcol, add = require(chunks, "MOTN", "FLAG", "DPOS", "DSHP", "DCOL", "ADD ")
    flags = _decode_exact(flag_data, nref, "update flags")
    if nref and (flags.min() < KEEP or flags.max() > COLOR):
        raise BitstreamError("bad update flag")
    motion = parse_motion(motn, state.cfg, width, height)
    upd = np.flatnonzero(flags == UPDATE)
    col = np.flatnonzero((flags == UPDATE) | (flags == COLOR))
    nu, nc = len(upd), len(col)
    dx, dy = (_decode_exact(c, nu, "position delta") for c in require(unpack_chunks(dpos), "DX  ", "DY  "))
    dsx, dsy, drho = (_decode_exact(c, nu, "shape delta")
                      for c in require(unpack_chunks(dshp), "DSX ", "DSY ", "DRHO"))
    dcol_arrays = [_decode_exact(c, nc, "color delta")
                   for c in require(unpack_chunks(dcol), "DCY ", "DCO ", "DCG ")]
    for d in (dx, dy, dsx, dsy, drho, *dcol_arrays):  # bounded before adding: no int64 overflow
        if len(d) and np.abs(d).max() > 4 * MAX_COLOR_SYMBOL:
            raise BitstreamError("update delta out of range")
    q = apply_motion(state.q, motion, state.cfg, width, height)
    x, y, lsx, lsy = q.x.copy(), q.y.copy(), q.log_sx.copy(), q.log_sy.copy()
    rho, color = q.rho.copy(), q.color.copy()
    x[upd] += dx
    y[upd] += dy
    lsx[upd] += dsx
    lsy[upd] += dsy
    rho[upd] += drho
    if nc:
        color[col] += np.stack(dcol_arrays, axis=1)
    keep = flags != DROP
    kept = QuantizedGaussians(x[keep], y[keep], lsx[keep], lsy[keep], rho[keep], color[keep])
    added, add_cfg = unpack_gaussians(unpack_chunks(add), width, height)
    if add_cfg != state.cfg:
        raise BitstreamError("added Gaussians use another quantizer than their group")
    new = _concat(kept, added)
    if len(new) > max_gaussians(width, height):
        raise LimitError(f"{len(new)} Gaussians for a {width}x{height} frame")
    _check_ranges(new, state.cfg, width, height)
    return VideoState(new, state.cfg)


def _block_vectors(q: QuantizedGaussians, m: Motion, scale: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = m.labels.shape
    by = np.clip(q.y // (scale * m.block), 0, rows - 1)
    bx = np.clip(q.x // (scale * m.block), 0, cols - 1)
    v = m.vectors[m.labels[by, bx]]
    return v[:, 0], v[:, 1]


def apply_motion(q: QuantizedGaussians, m: Motion, cfg: QuantConfig, width: int,
                 height: int) -> QuantizedGaussians:
    """Move every Gaussian by the vector of the block its center lies in, clamped to the frame."""
    if m.is_zero():
        return q
    scale = 1 << cfg.pos_frac_bits
    vx, vy = _block_vectors(q, m, scale)
    return replace(q, x=np.clip(q.x + vx, 0, width * scale - 1), y=np.clip(q.y + vy, 0, height * scale - 1))


def leaves_frame(q: QuantizedGaussians, m: Motion, cfg: QuantConfig, width: int, height: int) -> np.ndarray:
    """Which Gaussians the motion carries out of the frame (the encoder drops them)."""
    scale = 1 << cfg.pos_frac_bits
    vx, vy = _block_vectors(q, m, scale)
    x, y = q.x + vx, q.y + vy
    return (x < 0) | (x >= width * scale) | (y < 0) | (y >= height * scale)


def render_state(state: VideoState, width: int, height: int, device: str = "cpu") -> np.ndarray:
    """Rasterize a decoder state to an (H, W, 3) uint8 frame (numpy and numba on the CPU:
    no torch dispatch overhead on playback's hot path)."""
    return render_quantized(state.q, state.cfg, width, height, device)


class SplatVideoDecoder:
    """Decodes packets one at a time, as they arrive (from a file, a pipe, a socket).

    ``decode(packet)`` returns the frame a FRAME packet holds, None for other packets. A stream
    may start at any intra frame (after a seek); a predicted frame before one is an error.
    ``threads``: numba threads for the CPU renderer (0: numba_cpu.default_threads()).
    """

    def __init__(self, header: StreamHeader, device: str = "cpu",
                 threads: int = DECODE_THREADS) -> None:
        if header.codec_id != CODEC_ID:
            raise BitstreamError(f"not a splat video stream (codec id {header.codec_id})")
        self.header = header
        self.device = device
        self.threads = threads
        self.state: VideoState | None = None
        self.last_frame: int | None = None

    def reset(self) -> None:
        """Forget the reference (before decoding from another intra frame)."""
        self.state = None
        self.last_frame = None

    def warm_up(self) -> None:
        """Load the renderer's compiled code (numba's cache) by rendering one Gaussian, so that
        the first frame of a stream costs what any frame costs (a player calls this before it
        starts the clock, as a video player initialises its decoder)."""
        one = np.array([2], dtype=np.int64)
        zero = np.zeros(1, dtype=np.int64)
        state = VideoState(QuantizedGaussians(one, one, zero, zero, zero, np.zeros((1, 3), np.int64)),
                           QuantConfig())
        with numba_threads(self.device, self.threads):
            render_state(state, 4, 4, self.device)

    def decode(self, packet: Packet) -> np.ndarray | None:
        """Decode one packet; the frame as (H, W, 3) uint8 for FRAME packets, else None."""
        if packet.type != PacketType.FRAME:
            return None
        check_follows(self.last_frame, packet)  # set and reset with the state
        # the frame's share of the stream's decode budget, from its chunk headers (issue 18)
        registry.by_id(CODEC_ID).check_budget(self.header, [packet])
        state = apply_frame(packet.payload, self.state, self.header.width, self.header.height)
        self.state = state
        self.last_frame = packet.frame
        with numba_threads(self.device, self.threads):
            return render_state(state, self.header.width, self.header.height, self.device)

"""The field video payload (``fieldv``, spec in docs/format.md "Field video").

Frame payload = chunks, starting with ``VHED`` (version u8, frame type u8, escape count u32):

- type 0, intra: ``FLD `` a field image payload (:mod:`dappled.codec.field.format`). Starts a
  group: the decoder forgets the previous frame and the group's networks.
- type 1, first predicted frame of a group: ``MOTN`` block motion, ``FLD `` a field payload (its
  networks and latents) whose synthesis output is a residual added to the motion-compensated
  previous frame. Its networks become the group's.
- type 2, later predicted frame: ``MOTN``, ``LAT `` (and ``ESC `` when the escape count is
  non-zero): latents coded under the group's ARM, synthesised with the group's networks.

``MOTN``: block side u8, vector count K u8, K x (dx, dy) i16 in quarter pixels, then one label per
block (categorical, absent when K = 1). Prediction: :func:`dappled.codec.motion.compensate`.
A residual pixel is clip(prediction + round(255 * synthesis output), 0, 255), in exact
arithmetic (:func:`dappled.models.field.synthesis.synthesize` with ``base``).
"""

from __future__ import annotations

import struct

import numpy as np

from dappled.codec.chunks import FRAME_HEADER, parse_frame_header, require, unpack_chunks
from dappled.codec.motion import Motion, _grid
from dappled.entropy import decode_symbols, encode_symbols
from dappled.errors import BitstreamError

CODEC_ID = 6
PAYLOAD_VERSION = 1
FRAME_I, FRAME_P_NET, FRAME_P = 0, 1, 2
FRAC_BITS = 2  # motion vectors in quarter pixels
MAX_VECTORS = 64
MAX_GOP = 65535
_VHED = FRAME_HEADER
_MOTN = struct.Struct("<BB")
_VEC = struct.Struct("<hh")


def pack_vhed(ftype: int, n_esc: int = 0) -> bytes:
    """The VHED chunk."""
    return _VHED.pack(PAYLOAD_VERSION, ftype, n_esc)


def parse_vhed(vhed: bytes) -> tuple[int, int]:
    """(frame type, escape count) of a VHED chunk; BitstreamError if invalid."""
    return parse_frame_header(vhed, PAYLOAD_VERSION, (FRAME_I, FRAME_P_NET, FRAME_P), header="field video",
                              codec="field video")


def frame_type(payload: bytes) -> int:
    """The frame type of a frame payload."""
    (vhed,) = require(unpack_chunks(payload), "VHED")
    return parse_vhed(vhed)[0]


def pack_motion(m: Motion) -> bytes:
    """The MOTN chunk of a motion field."""
    if not 1 <= len(m.vectors) <= MAX_VECTORS or not 8 <= m.block <= 255:
        raise ValueError("motion field out of the format's range")
    out = _MOTN.pack(m.block, len(m.vectors)) + b"".join(_VEC.pack(int(x), int(y)) for x, y in m.vectors)
    if len(m.vectors) > 1:
        out += encode_symbols(m.labels.ravel())
    return out


def parse_motion(data: bytes, width: int, height: int) -> Motion:
    """Parse and check a MOTN chunk (vectors at most the frame's size, labels in range)."""
    if len(data) < _MOTN.size:
        raise BitstreamError("motion chunk too short")
    block, k = _MOTN.unpack_from(data)
    if block < 8 or not 1 <= k <= MAX_VECTORS or len(data) < _MOTN.size + k * _VEC.size:
        raise BitstreamError("bad motion chunk header")
    vecs = np.array([_VEC.unpack_from(data, _MOTN.size + i * _VEC.size) for i in range(k)], np.int64)
    one = 1 << FRAC_BITS
    if np.any(np.abs(vecs[:, 0]) > width * one) or np.any(np.abs(vecs[:, 1]) > height * one):
        raise BitstreamError("motion vector larger than the frame")
    rows, cols = _grid(width, height, block)
    rest = data[_MOTN.size + k * _VEC.size:]
    if k == 1:
        if rest:
            raise BitstreamError("motion labels with a single vector")
        return Motion(block, vecs, np.zeros((rows, cols), np.int64))
    labels = decode_symbols(rest, rows * cols).astype(np.int64)
    if labels.size != rows * cols:
        raise BitstreamError(f"motion labels: {labels.size} where {rows * cols} were declared")
    if labels.min() < 0 or labels.max() >= k:
        raise BitstreamError("motion label out of range")
    return Motion(block, vecs, labels.reshape(rows, cols))

"""The splat video payload (codec id 4, ``splatv``): intra frames fitted as images, predicted
frames coded as quantized updates of the decoder's previous Gaussians (spec in docs/format.md).

Frame payload = chunks. Every frame starts with ``VHED`` (version u8, frame type u8, reference
count u32). An intra frame (type 0) then carries the image splat chunks HEAD/POS/SHAP/COLR
(:mod:`dappled.codec.splat.format`) and resets the decoder's state. A predicted frame (type 1) codes,
against the state left by the previous frame:

    MOTN  block motion: a few motion vectors and, per block of the frame, which one moves the
          reference Gaussians whose centers lie in it (applied first, clamped to the frame)
    FLAG  one symbol per reference Gaussian: 0 kept as is, 1 updated, 2 dropped, 3 color updated
          (categorical)
    DPOS  chunks DX / DY: integer deltas of the fixed-point position of the updated (1) ones
    DSHP  chunks DSX / DSY / DRHO: deltas of the quantized log-scales and correlation (1 only)
    DCOL  chunks DCY / DCO / DCG: deltas of the quantized YCoCg color (flags 1 and 3)
    ADD   a complete image splat payload (HEAD/POS/SHAP/COLR) of new Gaussians, appended

All arithmetic on the state is on the quantizer's integers, and the encoder takes its next
reference from decoding its own payload, so encoder and decoder never drift apart.
"""

from __future__ import annotations

import struct

import numpy as np

from dappled.codec.chunks import FRAME_HEADER, parse_frame_header, require, unpack_chunks
from dappled.codec.motion import Motion, _grid
from dappled.codec.splat.format import _HEAD, _decode_exact, check_count, max_gaussians
from dappled.entropy import encode_symbols
from dappled.errors import BitstreamError
from dappled.models.splat.symbols import QuantConfig

CODEC_ID = 4
PAYLOAD_VERSION = 1
FRAME_I, FRAME_P = 0, 1
KEEP, UPDATE, DROP, COLOR = 0, 1, 2, 3
_VHED = FRAME_HEADER
_MOTN = struct.Struct("<BB")  # block size, vector count
_VEC = struct.Struct("<ii")
MAX_VECTORS = 16
_CONFIG = struct.Struct("<BHI")  # version, group length, target kbps (informative)
MAX_GOP = 65535


def frame_type(payload: bytes) -> int:
    """FRAME_I or FRAME_P of a frame payload (BitstreamError if it has no valid VHED)."""
    (vhed,) = require(unpack_chunks(payload), "VHED")
    return _parse_vhed(vhed)[0]


def _parse_vhed(vhed: bytes) -> tuple[int, int]:
    """(frame type, reference Gaussian count) of a VHED chunk; BitstreamError if invalid."""
    return parse_frame_header(vhed, PAYLOAD_VERSION, (FRAME_I, FRAME_P), header="video", codec="splat video")


def pack_motion(m: Motion) -> bytes:
    """MOTN chunk: block size u8, K u8, K x (dx i32, dy i32), then the block labels (categorical)."""
    vecs = b"".join(_VEC.pack(int(x), int(y)) for x, y in m.vectors)
    return _MOTN.pack(m.block, len(m.vectors)) + vecs + encode_symbols(m.labels.ravel())


def parse_motion(data: bytes, cfg: QuantConfig, width: int, height: int) -> Motion:
    """Parse and check a MOTN chunk."""
    if len(data) < _MOTN.size:
        raise BitstreamError("motion chunk too short")
    block, k = _MOTN.unpack_from(data)
    if block < 8 or not 1 <= k <= MAX_VECTORS or len(data) < _MOTN.size + k * _VEC.size:
        raise BitstreamError("bad motion chunk header")
    vecs = np.array([_VEC.unpack_from(data, _MOTN.size + i * _VEC.size) for i in range(k)], np.int64)
    scale = 1 << cfg.pos_frac_bits
    if np.any(np.abs(vecs[:, 0]) > width * scale) or np.any(np.abs(vecs[:, 1]) > height * scale):
        raise BitstreamError("motion vector larger than the frame")
    rows, cols = _grid(width, height, block)
    labels = _decode_exact(data[_MOTN.size + k * _VEC.size:], rows * cols, "motion labels")
    if labels.min() < 0 or labels.max() >= k:
        raise BitstreamError("motion label out of range")
    return Motion(block, vecs, labels.reshape(rows, cols))


def parse_config(payload: bytes) -> tuple[int, int]:
    """(group length, target kbps) from a CONFIG payload."""
    if len(payload) != _CONFIG.size:
        raise BitstreamError("video config has the wrong size")
    version, gop, kbps = _CONFIG.unpack(payload)
    if version != PAYLOAD_VERSION or gop == 0:
        raise BitstreamError("bad video config")
    return gop, kbps


def config_payload(gop: int, kbps: float) -> bytes:
    """The CONFIG packet payload: version, group length, target kbps."""
    return _CONFIG.pack(PAYLOAD_VERSION, gop, min(round(kbps), 2**32 - 1))


VIDEO_GAUSSIAN_BYTES = 384
"""Bytes per Gaussian of a predicted frame's decode: the state (64 bytes of int64 symbols), the
moved and updated copies, the kept ones and the new state (apply_frame), and the render's."""


def frame_gaussians(payload: bytes, width: int, height: int) -> int:
    """Most Gaussians a frame payload can leave in the decoder's state, from its chunk headers
    alone (nothing decoded): an intra frame's count (checked against its bytes), or a predicted
    frame's reference count plus its added count (checked against theirs), at most
    max_gaussians. The reference count must equal the state's (apply_frame checks it)."""
    chunks = unpack_chunks(payload)
    (vhed,) = require(chunks, "VHED")
    ftype, nref = _parse_vhed(vhed)
    head_of = chunks if ftype == FRAME_I else unpack_chunks(require(chunks, "ADD ")[0])
    head = require(head_of, "HEAD")[0]
    if len(head) < _HEAD.size:
        raise BitstreamError("splat header has the wrong size")
    n = _HEAD.unpack_from(head)[1]
    check_count(n, sum(len(c) for c in head_of.values()), width, height)
    return min(max_gaussians(width, height), n if ftype == FRAME_I else nref + n)


"""The field video payload (``fieldv``, spec in docs/format.md "Field video").

Payload version 3 (written): a compact frame layout. Byte 0 is ``0xF0 | type``; then, by type
(``varint``: unsigned LEB128, at most 4 bytes):

- 0, intra: the field image payload (``FLD ``), to the end.
- 1, first predicted frame with a residual: varint m, m bytes of motion (``MOTN``, none when
  m = 0: nothing moves), then the field payload with the group's networks (``FLD ``), to the end.
- 2, later predicted frame with a residual: varint m, m bytes of motion, varint escape count,
  varint n, n bytes of latent words (``LAT ``), then the escapes (``ESC ``), to the end.
- 3, predicted frame without a residual (new in version 3): the motion, to the end (empty:
  the frame repeats the previous one). The group's networks, if any, stay for later frames.

Version 4 (written) adds a prediction filter to the version 3 layout: in a predicted frame
(types 1-3), bit 0x08 of byte 0 says that 18 zigzag varints follow it (before the rest of the
frame): per channel R, G, B, five tap coefficients and a bias, each minus the identity's (taps
0, 0, 0, 0, 256, bias 0), for :func:`dappled.codec.prediction_filter.apply_filter`, applied to
the motion-compensated prediction before anything else. A frame without that bit is a version 3
frame, byte for byte.

Version 5 (written): bit 0x04 of byte 0 of a predicted frame says that its prediction
interpolates with the 8-tap "sharp8" filter of :func:`dappled.codec.motion.compensate` (taps at
-3 .. +4 pixels, :data:`dappled.codec.motion.SHARP8_TAPS`) instead of the cubic one; the layout
is that of version 4. The encoder sets it on the predicted frames that 8 taps predict better
(``-O sharp8``); an intra frame with it is refused.

Version 6 (written with ``-O dct=1``): a predicted frame with a transform residual
(:mod:`dappled.codec.residual_dct`: 8x8 integer DCT blocks of the prediction's error in YCoCg-R,
coded with adaptive binary contexts) instead of a residual field. Byte 0 is ``0xE0 | flags``
(the filter and sharp8 flags as in versions 4-5; bits 0-1 zero), then the prediction filter's
varints if flagged, varint m, m bytes of motion, then the transform residual, to the end. The
group's networks, if any, stay for later frames.

Version 3 predictions interpolate with the "cubic" filter of :func:`dappled.codec.motion.compensate`
(versions 1 and 2: bilinear). The chunks named here are those of versions 1 and 2 (read only):

Versions 1 and 2: frame payload = chunks, starting with ``VHED`` (version u8; frame type u8,
escape count u32):

- type 0, intra: ``FLD `` a field image payload (:mod:`dappled.codec.field.format`). Starts a
  group: the decoder forgets the previous frame and the group's networks.
- type 1, first predicted frame of a group: ``MOTN`` block motion (version 2: absent when
  nothing moves), ``FLD `` a field payload (its networks and latents) whose synthesis output is
  a residual added to the motion-compensated previous frame. Its networks become the group's.
- type 2, later predicted frame: ``MOTN`` (as type 1), ``LAT `` (and ``ESC `` when the escape count is
  non-zero): latents coded under the group's ARM, synthesised with the group's networks.

``MOTN``, payload version 2 (written; absent when no block moves): block side u8, then the
blocks' vectors in raster order as adaptive binary decisions (:mod:`dappled.entropy.binary`,
walked by :func:`_walk_motion`): a block takes a neighbour's vector (left, top, top-right,
top-left, distinct ones in that order: its index in truncated unary), or one already used
elsewhere in the frame (a flag, then its index uniform), or a new one, sent as its difference
from the median of its left, top and top-right neighbours (as H.264 predicts). Version 1 (read):
block side u8, vector count K u8, K x (dx, dy) i16 in quarter pixels, then one label per block
(categorical, absent when K = 1). Either way at most 64 distinct vectors, each within the frame.
Prediction: :func:`dappled.codec.motion.compensate`.
A residual pixel is clip(prediction + round(255 * synthesis output), 0, 255), in exact
arithmetic (:func:`dappled.models.field.synthesis.synthesize` with ``base``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from dappled.codec.chunks import FRAME_HEADER, parse_frame_header, require, unpack_chunks
from dappled.codec.motion import Motion, _grid, no_motion
from dappled.codec.prediction_filter import IDENTITY, N_COEFS, check_coefs
from dappled.entropy import decode_symbols, encode_symbols
from dappled.entropy.binary import BinaryDecoder, BinaryEncoder, Coder, code_signed
from dappled.errors import BitstreamError

CODEC_ID = 6
# 5: the 8-tap interpolation; 4: a prediction filter; 3: compact frame layout, frames without a
# residual, cubic interpolation; 2: motion vectors entropy-coded (1: raw vectors and coded labels)
PAYLOAD_VERSION = 5
READ_VERSIONS = (1, 2, 3, 4, 5, 6)
DCT_VERSION = 6  # a predicted frame with a transform residual (-O dct)
FILTER_FLAG = 0x08  # byte 0 of a version 4 predicted frame with a prediction filter
SHARP8_FLAG = 0x04  # byte 0 of a version 5 predicted frame: the "sharp8" interpolation
FRAME_I, FRAME_P_NET, FRAME_P, FRAME_P_SKIP, FRAME_P_DCT = 0, 1, 2, 3, 4
V3_MARK = 0xF0  # byte 0 of a version 3 frame: V3_MARK | type (versions 1-2: a chunk count, < 16)
DCT_MARK = 0xE0  # byte 0 of a version 6 frame with a transform residual: DCT_MARK | flags
FRAC_BITS = 2  # motion vectors in quarter pixels
MAX_VECTORS = 64
MAX_GOP = 65535
_VHED = FRAME_HEADER
_MOTN = struct.Struct("<BB")
_VEC = struct.Struct("<hh")


def pack_vhed(ftype: int, n_esc: int = 0, version: int = 2) -> bytes:
    """The VHED chunk of a version 1 or 2 frame (only to make old streams in tests)."""
    return _VHED.pack(version, ftype, n_esc)


def parse_vhed(vhed: bytes) -> tuple[int, int, int]:
    """(payload version, frame type, escape count) of a version 1 or 2 VHED chunk;
    BitstreamError if invalid."""
    ftype, n_esc = parse_frame_header(vhed, (1, 2), (FRAME_I, FRAME_P_NET, FRAME_P),
                                      header="field video", codec="field video")
    return vhed[0], ftype, n_esc


@dataclass
class FrameParts:
    """A frame payload, parsed: its version, type, escape count and named parts (the chunk names
    of versions 1-2: ``MOTN``, ``FLD ``, ``LAT ``, ``ESC ``; absent when empty)."""

    version: int
    ftype: int
    n_esc: int
    chunks: dict[str, bytes]
    filter: np.ndarray | None = None  # version 4: the prediction filter's coefficients (3, 6)
    filter_bytes: int = 0  # ... and the bytes they took
    interp: str = ""  # a predicted frame's interpolation (:func:`interpolation` of its version)


def _varint(n: int) -> bytes:
    if not 0 <= n < 1 << 28:
        raise ValueError("varint out of range")
    out = bytearray()
    while n >= 0x80:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at `pos`; at most 4 bytes."""
    n = 0
    for k in range(4):
        if pos + k >= len(data):
            raise BitstreamError("field video frame ends inside a length")
        b = data[pos + k]
        n |= (b & 0x7F) << (7 * k)
        if b < 0x80:
            return n, pos + k + 1
    raise BitstreamError("field video frame: length over 4 bytes")


def pack_filter(coefs: np.ndarray) -> bytes:
    """A prediction filter's coefficients (3, 6) as version 4 writes them."""
    out = bytearray()
    for v in (np.asarray(coefs, np.int64) - IDENTITY).ravel():
        v = int(v)
        out += _varint(2 * v if v >= 0 else -2 * v - 1)
    return bytes(out)


def _parse_filter(data: bytes, pos: int) -> tuple[np.ndarray, int]:
    vals = []
    for _ in range(3 * N_COEFS):
        z, pos = _read_varint(data, pos)
        vals.append(z >> 1 if not z & 1 else -((z + 1) >> 1))
    coefs = np.array(vals, np.int64).reshape(3, N_COEFS) + IDENTITY
    if not check_coefs(coefs):
        raise BitstreamError("field video prediction filter out of range")
    return coefs, pos


def pack_frame(ftype: int, *, motion: bytes = b"", field: bytes = b"", lat: bytes = b"",
               esc: bytes = b"", n_esc: int = 0, filt: bytes = b"", sharp8: bool = True,
               dct: bytes = b"") -> bytes:
    """A version 5 frame payload (layout in the module's docstring); ``filt``: a predicted frame's
    prediction filter (:func:`pack_filter`), none when empty; ``sharp8`` False: a predicted frame
    of version 4 (with a filter) or 3 (without), which predicts with the cubic interpolation.
    FRAME_P_DCT: a version 6 frame, ``dct`` its transform residual."""
    if filt and ftype == FRAME_I:
        raise ValueError("an intra frame has no prediction filter")
    flags = (FILTER_FLAG if filt else 0) | (SHARP8_FLAG if sharp8 and ftype != FRAME_I else 0)
    if ftype == FRAME_P_DCT:
        return bytes([DCT_MARK | flags]) + filt + _varint(len(motion)) + motion + dct
    head = bytes([V3_MARK | flags | ftype]) + filt
    if ftype == FRAME_I:
        return head + field
    if ftype == FRAME_P_NET:
        return head + _varint(len(motion)) + motion + field
    if ftype == FRAME_P:
        return head + _varint(len(motion)) + motion + _varint(n_esc) + _varint(len(lat)) + lat + esc
    if ftype == FRAME_P_SKIP:
        return head + motion
    raise ValueError(f"unknown frame type {ftype}")


def parse_frame(payload: bytes) -> FrameParts:
    """Parse a frame payload of any version read; BitstreamError on any defect."""
    if not payload:
        raise BitstreamError("empty field video frame")
    if DCT_MARK <= payload[0] < V3_MARK and payload[0] & 0x03:
        raise BitstreamError(f"unknown field video frame type 0x{payload[0]:02x}")
    if payload[0] < DCT_MARK:
        chunks = unpack_chunks(payload)
        (vhed,) = require(chunks, "VHED")
        version, ftype, n_esc = parse_vhed(vhed)
        return FrameParts(version, ftype, n_esc, {k: v for k, v in chunks.items() if k != "VHED"},
                          interp=interpolation(version))
    if payload[0] < V3_MARK:  # version 6: a transform residual
        pos, coefs = 1, None
        if payload[0] & FILTER_FLAG:
            coefs, pos = _parse_filter(payload, pos)
        n_filt = pos - 1
        m, pos = _read_varint(payload, pos)
        if pos + m > len(payload):
            raise BitstreamError("field video frame ends inside its motion")
        parts6 = {"MOTN": payload[pos:pos + m], "DCT ": payload[pos + m:]}
        if not parts6["DCT "]:
            raise BitstreamError("field video frame without its transform residual")
        return FrameParts(DCT_VERSION, FRAME_P_DCT, 0, {k: v for k, v in parts6.items() if v}, coefs, n_filt,
                          "sharp8" if payload[0] & SHARP8_FLAG else "cubic")
    ftype = payload[0] & 0x03
    sharp8 = bool(payload[0] & SHARP8_FLAG)
    if sharp8 and ftype == FRAME_I:
        raise BitstreamError(f"unknown field video frame type {payload[0] & 0x0F}")
    parts: dict[str, bytes] = {}
    pos, n_esc = 1, 0
    coefs = None
    if payload[0] & FILTER_FLAG:
        if ftype == FRAME_I:
            raise BitstreamError("prediction filter on an intra frame")
        coefs, pos = _parse_filter(payload, pos)
    n_filt = pos - 1
    if ftype in (FRAME_P_NET, FRAME_P):
        m, pos = _read_varint(payload, pos)
        if pos + m > len(payload):
            raise BitstreamError("field video frame ends inside its motion")
        parts["MOTN"], pos = payload[pos:pos + m], pos + m
    if ftype == FRAME_P:
        n_esc, pos = _read_varint(payload, pos)
        n, pos = _read_varint(payload, pos)
        if pos + n > len(payload):
            raise BitstreamError("field video frame ends inside its latents")
        parts["LAT "], pos = payload[pos:pos + n], pos + n
        parts["ESC "] = payload[pos:]
    elif ftype == FRAME_P_SKIP:
        parts["MOTN"] = payload[pos:]
    else:
        parts["FLD "] = payload[pos:]
    version = 5 if sharp8 else 3 if coefs is None else 4
    return FrameParts(version, ftype, n_esc, {k: v for k, v in parts.items() if v}, coefs, n_filt,
                      interpolation(version))


def frame_type(payload: bytes) -> int:
    """The frame type of a frame payload."""
    return parse_frame(payload).ftype


def interpolation(version: int) -> str:
    """The sub-pixel interpolation of a payload version's predictions."""
    return "sharp8" if version >= 5 else "cubic" if version >= 3 else "bilinear"


def pack_motion(m: Motion, width: int, height: int, version: int = PAYLOAD_VERSION) -> bytes:
    """The MOTN chunk of a motion field on a width x height frame (`version` 1 only to make old
    streams in tests)."""
    used = np.unique(m.vectors[np.unique(m.labels)], axis=0)
    one = 1 << FRAC_BITS
    if (not 1 <= len(m.vectors) <= MAX_VECTORS or not 8 <= m.block <= 255
            or m.labels.shape != _grid(width, height, m.block)
            or np.any(np.abs(used[:, 0]) > width * one) or np.any(np.abs(used[:, 1]) > height * one)):
        raise ValueError("motion field out of the format's range")
    if version == 1:
        out = _MOTN.pack(m.block, len(m.vectors)) + b"".join(_VEC.pack(int(x), int(y)) for x, y in m.vectors)
        if len(m.vectors) > 1:
            out += encode_symbols(m.labels.ravel())
        return out
    rows, cols = m.labels.shape
    vecs = [(int(x), int(y)) for x, y in m.vectors]
    grid = [[vecs[int(m.labels[r, c])] for c in range(cols)] for r in range(rows)]
    enc = BinaryEncoder(_N_CTX)
    _walk_motion(enc, grid, rows, cols, width, height)
    return bytes([m.block]) + enc.getvalue()


def motion_bytes(m: Motion, width: int, height: int) -> bytes:
    """A predicted frame's coded motion: empty when nothing moves (payload versions 2 and 3)."""
    return b"" if m.is_zero() else pack_motion(m, width, height)


def frame_motion(chunks: dict[str, bytes], width: int, height: int, version: int) -> Motion:
    """A predicted frame's motion: its MOTN chunk, parsed; in version 2 no chunk is no motion."""
    if version >= 2 and "MOTN" not in chunks:
        return no_motion(width, height)
    return parse_motion(require(chunks, "MOTN")[0], width, height, version)


def parse_motion(data: bytes, width: int, height: int, version: int = PAYLOAD_VERSION) -> Motion:
    """Parse and check a MOTN chunk of payload `version` (vectors at most the frame's size,
    at most MAX_VECTORS of them, labels in range)."""
    if version == 1:
        return _parse_motion_v1(data, width, height)
    if len(data) < 1 or data[0] < 8:
        raise BitstreamError("bad motion chunk header")
    block = data[0]
    rows, cols = _grid(width, height, block)
    dec = BinaryDecoder(data[1:], _N_CTX)
    grid, seen = _walk_motion(dec, None, rows, cols, width, height)
    dec.finish("motion vectors")
    index = {v: i for i, v in enumerate(seen)}
    labels = np.array([[index[v] for v in row] for row in grid], np.int64).reshape(rows, cols)
    return Motion(block, np.array(seen, np.int64).reshape(-1, 2), labels)


# contexts of the version 2 motion coder: candidate index (4 positions x 1-4 candidates), "new
# vector" flag, zero flags of a difference (x; y when x is 0; y when not), bit-length prefixes
_CTX_CAND, _CTX_NEW, _CTX_ZX, _CTX_ZY0, _CTX_ZY1 = 0, 16, 17, 18, 19
_CTX_PX, _CTX_PY, _PREFIX = 20, 26, 6
_N_CTX = 32


def _median(a: tuple[int, int], b: tuple[int, int], c: tuple[int, int]) -> tuple[int, int]:
    return (sorted((a[0], b[0], c[0]))[1], sorted((a[1], b[1], c[1]))[1])


def _walk_motion(coder: Coder, grid: list[list[tuple[int, int]]] | None, rows: int, cols: int,
                 width: int, height: int) -> tuple[list[list[tuple[int, int]]], list[tuple[int, int]]]:
    """Code (encoder, `grid` the blocks' vectors) or decode (`grid` None) the blocks' vectors of a
    version 2 MOTN chunk: (the blocks' vectors, the distinct vectors in order of first use).
    BitstreamError on a vector outside the frame, a new vector already used, or more than
    MAX_VECTORS."""
    one = 1 << FRAC_BITS
    lim_x, lim_y = width * one, height * one
    max_bits = (2 * max(lim_x, lim_y)).bit_length()  # |vector - prediction| <= 2 * limit
    out: list[list[tuple[int, int]]] = [[(0, 0)] * cols for _ in range(rows)]
    seen: list[tuple[int, int]] = []
    used: set[tuple[int, int]] = set()
    zero = (0, 0)
    for r in range(rows):
        above = out[r - 1] if r else None
        row = out[r]
        for c in range(cols):
            left = row[c - 1] if c else None
            top = above[c] if above is not None else None
            tr = above[c + 1] if above is not None and c + 1 < cols else None
            tl = above[c - 1] if above is not None and c else None
            cands: list[tuple[int, int]] = []
            for v in (left, top, tr, tl):
                if v is not None and v not in cands:
                    cands.append(v)
            cur = grid[r][c] if grid is not None else zero
            nc = len(cands)
            idx = cands.index(cur) if cur in cands else nc
            i = 0  # truncated unary: a 1 for every candidate passed
            while i < nc and coder.bit(_CTX_CAND + 4 * (nc - 1) + i, int(i != idx)):
                i += 1
            if i < nc:
                row[c] = cands[i]
                continue
            others = [v for v in seen if v not in cands]
            if others and not coder.bit(_CTX_NEW, int(cur not in used)):
                row[c] = others[coder.uniform(others.index(cur) if grid is not None else 0, len(others))]
                continue
            if len(seen) == MAX_VECTORS:
                raise BitstreamError(f"more than {MAX_VECTORS} motion vectors")
            if r == 0:
                pred = left if left is not None else zero
            else:
                assert top is not None
                pred = _median(left or zero, top, tr if tr is not None else tl or zero)
            dx = code_signed(coder, cur[0] - pred[0], _CTX_ZX, range(_CTX_PX, _CTX_PX + _PREFIX), max_bits)
            dy = code_signed(coder, cur[1] - pred[1], _CTX_ZY1 if dx else _CTX_ZY0,
                             range(_CTX_PY, _CTX_PY + _PREFIX), max_bits)
            v = (pred[0] + dx, pred[1] + dy)
            if abs(v[0]) > lim_x or abs(v[1]) > lim_y:
                raise BitstreamError("motion vector larger than the frame")
            if v in used:
                raise BitstreamError("motion vector sent twice")
            seen.append(v)
            used.add(v)
            row[c] = v
    return out, seen


def _parse_motion_v1(data: bytes, width: int, height: int) -> Motion:
    """A version 1 MOTN chunk: raw vectors, categorical labels."""
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

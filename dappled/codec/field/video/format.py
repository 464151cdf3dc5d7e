"""The field video payload (``fieldv``, spec in docs/format.md "Field video").

Frame payload = chunks, starting with ``VHED`` (version u8: 2, or 1 read only; frame type u8,
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

import numpy as np

from dappled.codec.chunks import FRAME_HEADER, parse_frame_header, require, unpack_chunks
from dappled.codec.motion import Motion, _grid, no_motion
from dappled.entropy import decode_symbols, encode_symbols
from dappled.entropy.binary import BinaryDecoder, BinaryEncoder, Coder, code_signed
from dappled.errors import BitstreamError

CODEC_ID = 6
PAYLOAD_VERSION = 2  # 2: motion vectors entropy-coded (1: raw vectors and coded labels)
READ_VERSIONS = (1, 2)
FRAME_I, FRAME_P_NET, FRAME_P = 0, 1, 2
FRAC_BITS = 2  # motion vectors in quarter pixels
MAX_VECTORS = 64
MAX_GOP = 65535
_VHED = FRAME_HEADER
_MOTN = struct.Struct("<BB")
_VEC = struct.Struct("<hh")


def pack_vhed(ftype: int, n_esc: int = 0, version: int = PAYLOAD_VERSION) -> bytes:
    """The VHED chunk (`version` 1 only to make old streams in tests)."""
    return _VHED.pack(version, ftype, n_esc)


def parse_vhed(vhed: bytes) -> tuple[int, int, int]:
    """(payload version, frame type, escape count) of a VHED chunk; BitstreamError if invalid."""
    ftype, n_esc = parse_frame_header(vhed, READ_VERSIONS, (FRAME_I, FRAME_P_NET, FRAME_P),
                                      header="field video", codec="field video")
    return vhed[0], ftype, n_esc


def frame_type(payload: bytes) -> int:
    """The frame type of a frame payload."""
    (vhed,) = require(unpack_chunks(payload), "VHED")
    return parse_vhed(vhed)[1]


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


def motion_chunks(m: Motion, width: int, height: int) -> dict[str, bytes]:
    """A predicted frame's motion chunk: none when nothing moves (payload version 2)."""
    return {} if m.is_zero() else {"MOTN": pack_motion(m, width, height)}


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

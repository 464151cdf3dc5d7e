"""The field payload (spec in docs/format.md, model in docs/models.md).

Frame payload = chunks:
    HEAD  version u8, architecture (5 x u8), escape count u32, one step exponent k per tensor
    NET   every network integer (ARM, then synthesis), zigzag + Exp-Golomb
    LAT   the latents' rANS words (CompressAI's Rans64 format)
    ESC   escaped latent excesses (categorical), present when the count is non-zero
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from dappled.codec.chunks import pack_chunks, require, unpack_chunks
from dappled.entropy import decode_symbols, encode_symbols
from dappled.entropy.golomb import decode_nonneg, encode_nonneg
from dappled.entropy.rans_flat import bytes_to_words, words_to_bytes
from dappled.errors import BitstreamError, EncodeError, LimitError
from dappled.models.field.integer import (
    KMAX,
    LATENTS_PER_BIT,
    QMAX,
    WMAX,
    QuantNet,
    QuantTensor,
    arm_layer_count,
    tensor_shapes,
    unzigzag,
    zigzag,
)
from dappled.models.field.layout import (
    MAX_MACS_PER_PIXEL,
    STEP_LADDERS,
    STEP_SHIFTS,
    Arch,
    arch_macs_per_pixel,
    grids,
)

PAYLOAD_VERSION = 2  # 2: the ARM's output bias is per grid
READ_VERSIONS = (1, 2)  # 1 (before 2026-11-30): one ARM output bias (2,) for all grids
_HEAD = struct.Struct("<B5BbBI")
MAX_PIXELS = 1 << 24  # 16 Mpixel: the field decoder's work is linear in this
MAX_ESCAPES_PER_BYTE = 64  # escapes a byte of the ESC chunk may code (categorical rANS: 1/8 bit each)


def pack_payload(net: QuantNet, words: np.ndarray, excess: np.ndarray) -> bytes:
    """The frame payload of a coded field."""
    a = net.arch
    head = _HEAD.pack(PAYLOAD_VERSION, a.ctx, a.arm_hidden, a.arm_layers, a.synth_hidden, a.res_hidden,
                      net.step_shift, net.step_ladder, len(excess))
    head += bytes(t.k for t in net.tensors())
    ints = np.concatenate([t.ints.ravel() for t in net.tensors()])
    if ints.size and int(np.abs(ints).max()) > WMAX:  # what the decoder would refuse
        raise EncodeError("field network weight out of range (the fit diverged); try a higher --bpp")
    chunks = {"HEAD": head, "NET ": encode_nonneg(zigzag(ints)), "LAT ": words_to_bytes(words)}
    if len(excess):
        chunks["ESC "] = encode_symbols(excess)
        if len(excess) > max_escapes(len(chunks["ESC "])):  # what the decoder would refuse
            raise EncodeError(f"{len(excess)} field escapes coded in {len(chunks['ESC '])} bytes; "
                              "try another --quality")
    return pack_chunks(chunks)


def max_escapes(esc_bytes: int) -> int:
    """Most escapes an ESC chunk of this size may declare: checked before any is decoded, so a
    few bytes cannot make the decoder allocate for millions (issue 18)."""
    return MAX_ESCAPES_PER_BYTE * (esc_bytes + 16)


@dataclass
class Head:
    """The payload's header fields and chunk sizes: what a decode budget is computed from."""

    version: int
    arch: Arch
    n_esc: int
    lat_bytes: int
    esc_bytes: int


def read_head(payload: bytes) -> Head:
    """The header of a frame payload, checked (version, architecture and its MAC/pixel cap);
    BitstreamError (LimitError) otherwise. Decodes nothing."""
    chunks = unpack_chunks(payload)
    head, _, lat = require(chunks, "HEAD", "NET ", "LAT ")
    if len(head) < _HEAD.size:
        raise BitstreamError("field header is too short")
    version, ctx, ah, al, sh, rh, shift, ladder, n_esc = _HEAD.unpack_from(head)
    if version not in READ_VERSIONS:
        raise BitstreamError(f"unsupported field payload version {version}")
    if shift not in STEP_SHIFTS or ladder not in STEP_LADDERS:
        raise BitstreamError(f"field step shift {shift} or ladder {ladder} out of range")
    arch = Arch(ctx, ah, al, sh, rh)
    try:
        arch.check()
    except ValueError as exc:
        raise BitstreamError(str(exc)) from None
    macs = arch_macs_per_pixel(arch)
    if macs > MAX_MACS_PER_PIXEL:
        raise LimitError(f"field architecture needs {macs} MAC/pixel, over the decoder's limit of "
                         f"{MAX_MACS_PER_PIXEL}")
    esc_bytes = len(chunks.get("ESC ", b""))
    if n_esc > max_escapes(esc_bytes):
        raise LimitError(f"{esc_bytes} bytes of escapes cannot code {n_esc} escapes")
    return Head(version, arch, n_esc, len(lat), esc_bytes)


@dataclass
class Parsed:
    """A frame payload, parsed and checked."""

    net: QuantNet
    words: np.ndarray
    excess: np.ndarray


def unpack_payload(payload: bytes, width: int, height: int) -> Parsed:
    """Parse a frame payload; BitstreamError (LimitError) on anything inconsistent or oversized."""
    if width * height > MAX_PIXELS:
        raise LimitError(f"field streams are limited to {MAX_PIXELS} pixels, got {width}x{height}")
    read_head(payload)  # the checks: version, steps, architecture and its MAC/pixel
    chunks = unpack_chunks(payload)
    head, net_bytes = require(chunks, "HEAD", "NET ", "LAT ")[:2]
    version, ctx, ah, al, sh, rh, shift, ladder, n_esc = _HEAD.unpack_from(head)
    arch = Arch(ctx, ah, al, sh, rh)
    gs = grids(height, width)
    shapes = tensor_shapes(arch, len(gs))
    n_arm = arm_layer_count(arch)
    if version == 1:  # one output bias row for every grid (the ARM's last tensor)
        shapes[n_arm - 1] = (2,)
    ks = head[_HEAD.size :]
    if len(ks) != len(shapes):
        raise BitstreamError("field header has the wrong number of weight steps")
    if max(ks) > KMAX:
        raise BitstreamError("weight step out of range")
    n_ints = sum(math.prod(s) for s in shapes)
    ints = unzigzag(decode_nonneg(net_bytes, n_ints))
    if ints.size != n_ints:
        raise BitstreamError(f"field network has {ints.size} weights where {n_ints} are needed")
    if np.abs(ints).max() > WMAX:
        raise BitstreamError("field weight out of range")
    tensors, pos = [], 0
    for s, k in zip(shapes, ks, strict=True):
        n = math.prod(s)
        tensors.append(QuantTensor(ints[pos : pos + n].reshape(s), int(k)))
        pos += n
    if version == 1:  # the shared row, as the per-grid table decoders read: the same pixels
        bo = tensors[n_arm - 1]
        tensors[n_arm - 1] = QuantTensor(np.tile(bo.ints, (len(gs), 1)), bo.k)
    net = QuantNet(arch, tensors[:n_arm], tensors[n_arm:], shift, ladder)
    words, excess = parse_latents(chunks, sum(g.size for g in gs), n_esc)
    return Parsed(net, words, excess)


def parse_latents(chunks: dict[str, bytes], n_lat: int, n_esc: int) -> tuple[np.ndarray, np.ndarray]:
    """The rANS words (LAT) and escape excesses (ESC) of `n_lat` latents with `n_esc` escapes,
    checked against what they can code (BitstreamError, LimitError)."""
    (lat,) = require(chunks, "LAT ")
    if n_lat > LATENTS_PER_BIT * (8 * len(lat) + 64):  # 64: the rANS state's slack
        raise LimitError(f"{len(lat)} bytes of latents cannot code {n_lat} latents")
    if len(lat) > 4 * (n_lat + 2):
        raise BitstreamError("latent stream is longer than its latents can need")
    if n_esc > n_lat:
        raise BitstreamError("more escapes than latents")
    if n_esc > max_escapes(len(chunks.get("ESC ", b""))):
        raise LimitError(f"{len(chunks.get('ESC ', b''))} bytes of escapes cannot code {n_esc} escapes")
    if n_esc:
        excess = decode_symbols(require(chunks, "ESC ")[0], n_esc)
        if excess.size != n_esc:
            raise BitstreamError(f"{excess.size} escape values where {n_esc} were declared")
        if np.any((excess == 0) | (np.abs(excess) > 2 * QMAX + 2)):
            raise BitstreamError("escape value out of range")
    else:
        if "ESC " in chunks:
            raise BitstreamError("escape values without escapes")
        excess = np.zeros(0, dtype=np.int64)
    return bytes_to_words(lat), excess

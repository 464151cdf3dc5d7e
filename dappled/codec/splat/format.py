"""The splat payload (spec in docs/format.md): the Gaussians' named sub-streams, packed and parsed.

Frame payload = chunks:
    HEAD  version u8, Gaussian count u32, quantizer config (7 bytes)
    POS   positions sorted in raster order, gaps Exp-Golomb coded (entropy-coded bucket + bits)
    SHAP  chunks SX / SY / RHO: quantized log sigma_x, log sigma_y, correlation (categorical rANS)
    COLR  chunks Y / CO / CG: quantized YCoCg colors (categorical rANS)
"""

from __future__ import annotations

import struct

import numpy as np

from dappled.codec.chunks import pack_chunks, require, unpack_chunks
from dappled.entropy import decode_symbols, encode_symbols
from dappled.entropy.golomb import decode_nonneg, encode_nonneg
from dappled.errors import BitstreamError, LimitError
from dappled.models.splat.symbols import (
    LOG_SCALE_MAX,
    LOG_SCALE_MIN,
    QuantConfig,
    QuantizedGaussians,
)

PAYLOAD_VERSION = 1
MAX_COLOR_SYMBOL = 1 << 20
_HEAD = struct.Struct("<BI")


# What a stream can justify. Real streams spend ~40 bits per Gaussian and their Gaussians cover
# each pixel ~10-15 times on average (kodim23 crops at 0.5 bpp); the caps below are far above
# that and keep the decoder's time and memory proportional to the stream and the image.
MAX_GAUSSIANS_PER_BYTE = 8  # at least one bit of payload per Gaussian
MAX_COVERAGE = 256  # mean number of Gaussian boxes over a pixel
COVERAGE_SLACK = 1 << 16  # pixel visits any stream may take (tiny images)


def max_gaussians(width: int, height: int) -> int:
    """Cap on the Gaussian count a stream may declare (more than one per pixel is absurd)."""
    return min(width * height, 1 << 22)


def check_count(n: int, payload_bytes: int, width: int, height: int) -> None:
    """LimitError unless `n` Gaussians fit the frame size and the bytes that code them."""
    if n > max_gaussians(width, height):
        raise LimitError(f"stream declares {n} Gaussians for a {width}x{height} image")
    if n > MAX_GAUSSIANS_PER_BYTE * payload_bytes:
        raise LimitError(f"stream declares {n} Gaussians in {payload_bytes} bytes "
                         f"(at most {MAX_GAUSSIANS_PER_BYTE} per byte)")


# ---------------------------------------------------------------- serialization


def pack_gaussians(q: QuantizedGaussians, cfg: QuantConfig, width: int, height: int) -> dict[str, bytes]:
    """Quantized Gaussians -> named entropy-coded sub-streams."""
    scale = 1 << cfg.pos_frac_bits
    keys = q.y * (width * scale) + q.x
    order = np.argsort(keys, kind="stable")
    q = q.take(order)
    keys = keys[order]
    gaps = np.diff(keys, prepend=0)
    shape = pack_chunks({
        "SX  ": encode_symbols(q.log_sx),
        "SY  ": encode_symbols(q.log_sy),
        "RHO ": encode_symbols(q.rho),
    })
    color = pack_chunks({
        "Y   ": encode_symbols(q.color[:, 0]),
        "CO  ": encode_symbols(q.color[:, 1]),
        "CG  ": encode_symbols(q.color[:, 2]),
    })
    head = _HEAD.pack(PAYLOAD_VERSION, len(q)) + cfg.to_bytes()
    return {"HEAD": head, "POS ": encode_nonneg(gaps), "SHAP": shape, "COLR": color}


def _decode_exact(data: bytes, n: int, what: str) -> np.ndarray:
    out = decode_symbols(data, n).astype(np.int64)
    if len(out) != n:
        raise BitstreamError(f"{what}: {len(out)} symbols where {n} were declared")
    return out


def unpack_gaussians(chunks: dict[str, bytes], width: int,
                     height: int) -> tuple[QuantizedGaussians, QuantConfig]:
    """Named sub-streams -> quantized Gaussians; BitstreamError on anything inconsistent."""
    head, pos, shape, color = require(chunks, "HEAD", "POS ", "SHAP", "COLR")
    if len(head) != _HEAD.size + 7:
        raise BitstreamError("splat header has the wrong size")
    version, n = _HEAD.unpack_from(head)
    if version != PAYLOAD_VERSION:
        raise BitstreamError(f"unsupported splat payload version {version}")
    check_count(n, sum(len(c) for c in (head, pos, shape, color)), width, height)
    cfg = QuantConfig.from_bytes(head[_HEAD.size :])
    scale = 1 << cfg.pos_frac_bits
    gaps = decode_nonneg(pos, n)
    if len(gaps) != n:
        raise BitstreamError("position stream has the wrong count")
    keys = np.cumsum(gaps)
    if n and keys[-1] >= width * scale * height * scale:
        raise BitstreamError("position outside the image")
    y, x = np.divmod(keys, width * scale)
    sx, sy, rho = require(unpack_chunks(shape), "SX  ", "SY  ", "RHO ")
    cy, co, cg = require(unpack_chunks(color), "Y   ", "CO  ", "CG  ")
    lsx = _decode_exact(sx, n, "sigma_x")
    lsy = _decode_exact(sy, n, "sigma_y")
    r = _decode_exact(rho, n, "rho")
    lo, hi = np.floor(LOG_SCALE_MIN / cfg.log_scale_step), np.ceil(LOG_SCALE_MAX / cfg.log_scale_step)
    if n and (min(lsx.min(), lsy.min()) < lo or max(lsx.max(), lsy.max()) > hi):
        raise BitstreamError("Gaussian scale out of range")
    if n and np.abs(r).max() >= cfg.rho_levels:
        raise BitstreamError("Gaussian correlation out of range")
    cols = np.stack([_decode_exact(c, n, "color") for c in (cy, co, cg)], axis=1)
    if n and np.abs(cols).max() > MAX_COLOR_SYMBOL:
        raise BitstreamError("Gaussian color out of range")
    return QuantizedGaussians(x, y, lsx, lsy, r, cols), cfg


def payload_size(chunks: dict[str, bytes]) -> int:
    """Bytes of the frame payload these chunks make."""
    return len(pack_chunks(chunks))


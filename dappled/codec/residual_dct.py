"""A transform residual for predicted frames: 8x8 integer DCT blocks of a prediction's error in
YCoCg-R, quantized and coded with adaptive binary contexts (the classical codecs' residual, for
frames where a fitted residual field costs too much for what it adds).

Decoding is exact integer arithmetic, so any machine makes the same pixels:

- the frame is cut into 8x8 blocks (the last row and column of blocks padded; the padding is
  decoded and dropped);
- per block and channel (Y, Co, Cg of YCoCg-R) the quantized levels, in zigzag order
  (:func:`walk_levels`, the coding below);
- a level ``l`` dequantizes to ``d = l * LEVEL_SCALE[qp % 6] << (qp // 6)`` (qp per channel,
  sent in the stream), and the block's residual is ``x = (((M^T d + 64) >> 7) M + 8192) >> 14``
  with M the 8x8 integer DCT basis :data:`M8` (64 sqrt(8) times the orthonormal one, rounded);
- the residual's three channels go back to R, G, B by the YCoCg-R lifting (integer) and are added
  to the prediction, clipped to 0..255.

A quantization step is ``LEVEL_SCALE[qp % 6] * 2 ** (qp // 6) / 64`` in orthonormal DCT units.

Coding (:mod:`dappled.entropy.binary` contexts): per block, in raster order, per channel: a
"coded" flag (context: channel and how many of the left and top blocks' same channel were coded);
then, for zigzag positions 0..62, a significance flag and, after a significant one, a "last"
flag (contexts: channel and position band); position 63 is significant when the walk reaches it;
then per significant level in zigzag order: "greater than 1" (context: channel and the levels of
1 seen so far, or any greater seen), the rest of the magnitude (:func:`_code_unsigned`) and the
sign (bypass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dappled.entropy.binary import BinaryEncoder, Coder
from dappled.errors import BitstreamError

N = 8
M8 = np.array([
    [64, 64, 64, 64, 64, 64, 64, 64],
    [89, 75, 50, 18, -18, -50, -75, -89],
    [83, 36, -36, -83, -83, -36, 36, 83],
    [75, -18, -89, -50, 50, 89, 18, -75],
    [64, -64, -64, 64, 64, -64, -64, 64],
    [50, -89, 18, 75, -75, -18, 89, -50],
    [36, -83, 83, -36, -36, 83, -83, 36],
    [18, -50, 75, -89, 89, -75, 50, -18],
], np.int64)
_D = M8 / (64.0 * np.sqrt(8.0))  # the (near-)orthonormal basis the encoder transforms with
LEVEL_SCALE = (40, 45, 51, 57, 64, 72)
MAX_QP = 60
MAX_BITS = 13  # |level| < 2**13
# zigzag order of an 8x8 block (row-major indices)
ZIGZAG = np.array(sorted(range(64), key=lambda k: (k // 8 + k % 8,
                                                   (k % 8) if (k // 8 + k % 8) % 2 == 0 else k // 8)),
                  np.int64)
_BAND = [min(i, 7) if i < 8 else 8 + (i - 8) // 8 for i in range(64)]
_NB = 15  # position bands
_CBF, _SIG, _LAST, _GT1, _REM = 0, 9, 9 + 3 * _NB, 9 + 6 * _NB, 9 + 6 * _NB + 15
_REM_PREFIX = 7
N_CONTEXTS = _REM + 3 * (1 + _REM_PREFIX)


def step(qp: int) -> float:
    """The quantization step of ``qp``, in orthonormal DCT units."""
    return LEVEL_SCALE[qp % 6] * 2.0 ** (qp // 6) / 64.0


def to_ycocg(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) integers -> (3, H, W) YCoCg-R (lossless lifting)."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    co = r - b
    t = b + (co >> 1)
    cg = g - t
    y = t + (cg >> 1)
    return np.stack([y, co, cg])


def from_ycocg(ycc: np.ndarray) -> np.ndarray:
    """(3, H, W) YCoCg-R -> (H, W, 3) R, G, B integers (the exact inverse of :func:`to_ycocg`)."""
    y, co, cg = ycc[0], ycc[1], ycc[2]
    t = y - (cg >> 1)
    g = cg + t
    b = t - (co >> 1)
    r = b + co
    return np.stack([r, g, b], axis=-1)


def inverse_blocks(levels: np.ndarray, qp: int) -> np.ndarray:
    """Levels (..., 8, 8) in natural order -> the residual blocks, exact integers."""
    d = levels.astype(np.int64) * (LEVEL_SCALE[qp % 6] << (qp // 6))
    t = (np.matmul(M8.T, d) + 64) >> 7
    return (np.matmul(t, M8) + 8192) >> 14


def _blocks(plane: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(H, W) -> (rows, cols, 8, 8), edges replicated into the padding."""
    h, w = plane.shape
    p = np.pad(plane, ((0, rows * N - h), (0, cols * N - w)), mode="edge")
    return p.reshape(rows, N, cols, N).transpose(0, 2, 1, 3)


def _unblock(blocks: np.ndarray, h: int, w: int) -> np.ndarray:
    rows, cols = blocks.shape[:2]
    return blocks.transpose(0, 2, 1, 3).reshape(rows * N, cols * N)[:h, :w]


@dataclass
class Residual:
    """A coded transform residual: its bytes and the picture it makes on its prediction."""

    data: bytes
    recon: np.ndarray  # (H, W, 3) uint8
    sse: float  # squared error of recon against the frame (sum over pixels and channels)


def _code_unsigned(coder: Coder, value: int, ctx: int) -> int:
    """A non-negative integer < 2**MAX_BITS: zero flag, bit length in truncated unary, the bits
    below the leading one (bypass)."""
    if not coder.bit(ctx, int(value != 0)):
        return 0
    b = value.bit_length()
    n = 1
    while n < MAX_BITS and coder.bit(ctx + min(n, _REM_PREFIX), int(n < b)):
        n += 1
    return (1 << (n - 1)) | coder.bits(value & ((1 << (n - 1)) - 1), n - 1)


def walk_levels(coder: Coder, levels: list[list[list[list[int]]]] | None, rows: int, cols: int,
                ) -> np.ndarray:
    """Code (``levels[ch][r][c]``: 64 zigzag-ordered ints) or decode (``levels`` None) the levels
    of a rows x cols grid of blocks, three channels; returns them as (3, rows, cols, 64) int64.
    Decoding here is the slow reference that :func:`decode_levels` (numba) is tested against."""
    out = np.zeros((3, rows, cols, 64), np.int64)
    coded = np.zeros((3, rows, cols), np.int64)
    enc = levels is not None
    for r in range(rows):
        for c in range(cols):
            for ch in range(3):
                blk = levels[ch][r][c] if enc else None  # type: ignore[index]
                around = (coded[ch, r, c - 1] if c else 0) + (coded[ch, r - 1, c] if r else 0)
                if not coder.bit(_CBF + 3 * ch + int(around), int(any(blk)) if enc else 0):
                    continue
                coded[ch, r, c] = 1
                last = max(i for i, v in enumerate(blk) if v) if enc else 0  # type: ignore[arg-type]
                pos = []
                for i in range(63):
                    if coder.bit(_SIG + _NB * ch + _BAND[i], int(blk[i] != 0) if enc else 0):  # type: ignore[index]
                        pos.append(i)
                        if coder.bit(_LAST + _NB * ch + _BAND[i], int(i == last) if enc else 0):
                            break
                else:
                    pos.append(63)
                ones = greater = 0
                row = out[ch, r, c]
                for i in pos:
                    a = abs(blk[i]) if enc else 0  # type: ignore[index]
                    if coder.bit(_GT1 + 5 * ch + (4 if greater else min(ones, 3)), int(a > 1)):
                        greater += 1
                        a = 2 + _code_unsigned(coder, a - 2, _REM + (1 + _REM_PREFIX) * ch)
                    else:
                        a = 1
                        ones += 1
                    neg = coder.bits(int(blk[i] < 0) if enc else 0, 1)  # type: ignore[index]
                    row[i] = -a if neg else a
    return out


def grid_of(width: int, height: int) -> tuple[int, int]:
    """(rows, cols) of 8x8 blocks over a frame."""
    return -(-height // N), -(-width // N)


def reconstruct(pred: np.ndarray, zz_levels: np.ndarray, qps: tuple[int, int, int]) -> np.ndarray:
    """The picture: prediction (H, W, 3) uint8 plus the residual of zigzag levels (3, rows, cols, 64)."""
    h, w = pred.shape[:2]
    nat = np.zeros_like(zz_levels)
    nat[..., ZIGZAG] = zz_levels
    rows, cols = zz_levels.shape[1:3]
    planes = []
    for ch in range(3):
        blocks = inverse_blocks(nat[ch].reshape(rows, cols, N, N), qps[ch])
        planes.append(_unblock(blocks, h, w))
    res = from_ycocg(np.stack(planes))
    return np.clip(pred.astype(np.int64) + res, 0, 255).astype(np.uint8)


def pack(qps: tuple[int, int, int], zz_levels: np.ndarray) -> bytes:
    """The coded residual: three qp bytes, then the levels' binary stream."""
    rows, cols = zz_levels.shape[1:3]
    enc = BinaryEncoder(N_CONTEXTS)
    walk_levels(enc, zz_levels.tolist(), rows, cols)
    return bytes(qps) + enc.getvalue()


def decode(data: bytes, pred: np.ndarray) -> np.ndarray:
    """The picture a coded residual makes on ``pred`` (H, W, 3) uint8; BitstreamError if damaged."""
    if len(data) < 3:
        raise BitstreamError("transform residual too short")
    qps = (data[0], data[1], data[2])
    if max(qps) > MAX_QP:
        raise BitstreamError("transform residual qp out of range")
    h, w = pred.shape[:2]
    rows, cols = grid_of(w, h)
    return reconstruct(pred, decode_levels(data[3:], rows, cols), qps)


def decode_levels(data: bytes, rows: int, cols: int) -> np.ndarray:
    """The levels (3, rows, cols, 64) of a coded residual's binary stream (numba: the same
    decisions as :func:`walk_levels` with a :class:`BinaryDecoder`); BitstreamError if damaged."""
    from dappled.codec.residual_dct_kernel import decode_levels as kernel
    from dappled.entropy.rans_flat import RANS_L, bytes_to_words

    if data and data[-1] == 0:
        raise BitstreamError("binary stream ends with a zero byte")
    words = bytes_to_words(data)
    levels, x, pos = kernel(words, rows, cols, np.array(_BAND, np.int64), N_CONTEXTS, _CBF, _SIG, _LAST,
                            _GT1, _REM, _NB, _REM_PREFIX, MAX_BITS)
    if x != RANS_L or pos < -(-len(data) // 4):
        raise BitstreamError("transform residual: damaged or truncated")
    return levels


# chroma qp offsets for RGB squared error: an error e in Y moves R, G and B by e (3 e^2), in Co
# R and B by e / 2 (e^2 / 2), in Cg all three by e / 2 (3 e^2 / 4): steps as 1 / sqrt(weight)
CHROMA_QP = (0, 8, 6)
# dead-zone rounding offset of the levels (before the blocks' rate check); carphone, 60 frames at
# 152 kbps: 0.1 34.17 dB, 0.15 34.15, 0.2 34.28, 0.32 34.17, 0.45 33.82
ROUNDING = 0.2


def _quantize(coefs: np.ndarray, qp: int, rounding: float) -> np.ndarray:
    s = step(qp)
    q = np.floor(np.abs(coefs) / s + rounding)
    q = np.minimum(q, (1 << MAX_BITS) - 1)
    return (np.sign(coefs) * q).astype(np.int64)


def encode(frame: np.ndarray, pred: np.ndarray, lam_sse: float, qp: int | None = None,
           rounding: float = ROUNDING) -> Residual:
    """The transform residual of ``frame`` on ``pred`` minimising squared error + ``lam_sse`` x
    bits (squared error in levels^2 summed over pixels and channels): luma qp from lam_sse (or
    ``qp``) and its neighbours tried, blocks whose levels cost more than they take off zeroed."""
    h, w = frame.shape[:2]
    rows, cols = grid_of(w, h)
    ycc = to_ycocg(frame.astype(np.int64) - pred.astype(np.int64))
    coefs = np.stack([_D @ _blocks(ycc[ch].astype(np.float64), rows, cols) @ _D.T for ch in range(3)])
    coefs = coefs.reshape(3, rows, cols, 64)[..., ZIGZAG]
    weights = np.array([3.0, 0.5, 0.75])[:, None, None, None]  # RGB squared error per unit (CHROMA_QP)
    if qp is None:
        # high-rate uniform quantizer: dD/dR = -(ln 2 / 6) step^2 per coefficient and bit
        base = round(6 * np.log2(max(np.sqrt(lam_sse / (3.0 * 0.1155)), 0.7) * 64 / 40))
        candidates = [base - 3, base, base + 3]
    else:
        candidates = [qp]
    best: Residual | None = None
    best_cost = np.inf
    for q0 in candidates:
        q0 = int(min(max(q0, 0), MAX_QP - max(CHROMA_QP)))
        qps = (q0 + CHROMA_QP[0], q0 + CHROMA_QP[1], q0 + CHROMA_QP[2])
        levels = np.stack([_quantize(coefs[ch], qps[ch], rounding) for ch in range(3)])
        # per block and channel: zeroed when its error drop is worth less than its rough bits
        deq = np.stack([levels[ch] * step(qps[ch]) for ch in range(3)])
        drop = weights * ((coefs ** 2) - (coefs - deq) ** 2)
        nz = levels != 0
        bits = (nz * (3.0 + 2.0 * np.log2(1 + np.abs(levels)))).sum(-1) + 2.0
        keep = drop.sum(-1) > lam_sse * bits
        levels = levels * keep[..., None]
        recon = reconstruct(pred, levels, qps)
        data = pack(qps, levels)
        sse = float(((recon.astype(np.int64) - frame.astype(np.int64)) ** 2).sum())
        cost = sse + lam_sse * 8 * len(data)
        if cost < best_cost:
            best, best_cost = Residual(data, recon, sse), cost
    assert best is not None
    return best

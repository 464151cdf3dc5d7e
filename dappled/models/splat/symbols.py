"""The integer symbols of quantized 2D Gaussians and their exact mapping back to floats, in numpy
only: what the decoder needs (the torch-side quantizer of the encoder is :mod:`quantize`)."""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import numpy as np

from dappled.entropy.detmath import det_exp
from dappled.errors import BitstreamError

# Defaults chosen on kodim23 at 0.5 bpp (docs/results.md): with colors re-solved after the
# geometry is quantized, finer scale and color steps buy more PSNR per byte than more Gaussians.

LOG_SCALE_MIN = -4.0  # sigma below exp(-4) px is pointless: COV_EPS dominates it
LOG_SCALE_MAX = 7.0


@dataclass(frozen=True)
class QuantConfig:
    """Step sizes of the attribute quantizers (stored in the stream header)."""

    pos_frac_bits: int = 2
    log_scale_step: float = 0.09
    rho_levels: int = 16
    color_step: float = 1.0 / 64
    chroma_factor: float = 1.0

    _STRUCT = struct.Struct("<BHBHB")

    def to_bytes(self) -> bytes:
        """Serialize to 7 bytes (steps as fixed-point integers)."""
        return self._STRUCT.pack(
            self.pos_frac_bits,
            round(self.log_scale_step * 4096),
            self.rho_levels,
            round(self.color_step * 65536),
            round(self.chroma_factor * 16),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantConfig:
        """Parse and validate what :meth:`to_bytes` wrote."""
        if len(data) != cls._STRUCT.size:
            raise BitstreamError("bad quantizer header size")
        fb, ls, rl, cs, cf = cls._STRUCT.unpack(data)
        if fb > 8 or ls == 0 or rl == 0 or cs == 0 or cf == 0:
            raise BitstreamError("invalid quantizer parameters in stream")
        return cls(fb, ls / 4096, rl, cs / 65536, cf / 16)

    def canonical(self) -> QuantConfig:
        """The config as the decoder will see it (steps rounded to their stored precision)."""
        return QuantConfig.from_bytes(self.to_bytes())


@dataclass
class QuantizedGaussians:
    """Integer symbols of N Gaussians, one array per attribute (all int64, length N)."""

    x: np.ndarray
    y: np.ndarray
    log_sx: np.ndarray
    log_sy: np.ndarray
    rho: np.ndarray
    color: np.ndarray  # (N, 3) YCoCg

    def __len__(self) -> int:
        return len(self.x)

    def take(self, order: np.ndarray) -> QuantizedGaussians:
        """The same Gaussians in another order (or a subset)."""
        return QuantizedGaussians(self.x[order], self.y[order], self.log_sx[order],
                                  self.log_sy[order], self.rho[order], self.color[order])


@functools.lru_cache(maxsize=64)
def _exp_table(step: float, lo: int, hi: int) -> np.ndarray:
    """exp(k * step) for integer k in [lo, hi] in float64, with :func:`det_exp`: libm's, numpy's and
    torch's exp differ in the last bit for about half of the steps a stream may declare, and the
    decoded pixels must not depend on the machine or the library."""
    k = np.arange(lo, hi + 1, dtype=np.float64)
    return det_exp(k * step)


def dequantize_numpy(q: QuantizedGaussians, cfg: QuantConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`dequantize` as float32 numpy arrays, bit-identical to it, for the decoder's hot path.

    Every operation but exp is exact or correctly rounded IEEE arithmetic, identical in numpy and
    torch: positions and colors are integers times powers of two (the YCoCg inverse is the integer
    matrix [[1, 1, -1], [1, 0, 1], [1, -1, -1]]), sqrt is correctly rounded. The log-scales are
    integers in a small range, so exp comes from a table that torch computes once per quantizer.
    At 1,500 Gaussians this takes ~0.3 ms where the torch version spends ~10-20 ms in per-call
    overhead.
    """
    n = len(q)
    if n == 0:
        z = np.zeros((0, 2), np.float32)
        return z, np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
    scale = float(1 << cfg.pos_frac_bits)
    means = np.empty((n, 2), np.float32)
    means[:, 0] = q.x / scale
    means[:, 1] = q.y / scale
    lo = int(min(q.log_sx.min(), q.log_sy.min()))
    hi = int(max(q.log_sx.max(), q.log_sy.max()))
    table = _exp_table(cfg.log_scale_step, lo, hi)
    sx = table[q.log_sx - lo]
    sy = table[q.log_sy - lo]
    rho = np.clip(q.rho.astype(np.float64) / cfg.rho_levels, -1.0, 1.0)
    chol = np.empty((n, 3), np.float32)
    chol[:, 0] = sx
    chol[:, 1] = rho * sy
    chol[:, 2] = sy * np.sqrt(np.maximum(1.0 - rho * rho, 0.0))
    s = cfg.color_step
    c = q.color.astype(np.float64).reshape(-1, 3)
    y, co, cg = c[:, 0] * s, c[:, 1] * (s * cfg.chroma_factor), c[:, 2] * (s * cfg.chroma_factor)
    colors = np.empty((n, 3), np.float32)
    colors[:, 0] = y + co - cg
    colors[:, 1] = y + cg
    colors[:, 2] = y - co - cg
    return means, chol, colors

"""Attribute-wise quantization of 2D Gaussians, shared by the encoder (with straight-through
rounding for quantization-aware fine-tuning) and the decoder (exact integer -> float mapping).

Each attribute gets the representation and step that suit it:
- position: fixed-point with `pos_frac_bits` fractional bits, clamped to the image;
- shape: the covariance as (log sigma_x, log sigma_y, rho) with a log step for the scales
  (relative precision is what matters for a scale) and a uniform step for the correlation;
- color: YCoCg with a finer step for luma than for the two chroma channels (as JPEG does).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import numpy as np
import torch

from dappled.errors import BitstreamError

# Defaults chosen on kodim23 at 0.5 bpp (docs/results.md): with colors re-solved after the
# geometry is quantized, finer scale and color steps buy more PSNR per byte than more Gaussians.

# RGB <-> YCoCg (exact inverse pair in floating point).
_RGB_TO_YCOCG = torch.tensor(
    [[0.25, 0.5, 0.25], [0.5, 0.0, -0.5], [-0.25, 0.5, -0.25]], dtype=torch.float64
)
_YCOCG_TO_RGB = torch.linalg.inv(_RGB_TO_YCOCG)

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


def chol_to_shape(chol: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(l11, l21, l22) -> (log sigma_x, log sigma_y, rho) of the covariance L L^T."""
    a, b, c = chol.unbind(-1)
    sx = a.abs().clamp_min(1e-6)
    sy = torch.sqrt(b * b + c * c).clamp_min(1e-6)
    rho = torch.sign(a) * b / sy
    return torch.log(sx), torch.log(sy), rho


def shape_to_chol(log_sx: torch.Tensor, log_sy: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`chol_to_shape` with l11 >= 0 and l22 >= 0."""
    sx = torch.exp(log_sx)
    sy = torch.exp(log_sy)
    rho = rho.clamp(-1.0, 1.0)
    return torch.stack([sx, rho * sy, sy * torch.sqrt((1.0 - rho * rho).clamp_min(0.0))], dim=-1)


def rgb_to_ycocg(rgb: torch.Tensor) -> torch.Tensor:
    """Linear RGB -> YCoCg on the last axis."""
    return rgb @ _RGB_TO_YCOCG.to(rgb).T


def ycocg_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """Linear YCoCg -> RGB on the last axis."""
    return ycc @ _YCOCG_TO_RGB.to(ycc).T


def _color_steps(cfg: QuantConfig) -> torch.Tensor:
    s = cfg.color_step
    return torch.tensor([s, s * cfg.chroma_factor, s * cfg.chroma_factor], dtype=torch.float64)


def quantize(means: torch.Tensor, chol: torch.Tensor, colors: torch.Tensor, cfg: QuantConfig,
             width: int, height: int) -> QuantizedGaussians:
    """Float parameters -> integer symbols."""
    scale = float(1 << cfg.pos_frac_bits)
    with torch.no_grad():
        m = means.detach().double()
        x = torch.round(m[:, 0] * scale).clamp(0, width * scale - 1)
        y = torch.round(m[:, 1] * scale).clamp(0, height * scale - 1)
        lsx, lsy, rho = chol_to_shape(chol.detach().double())
        lo, hi = LOG_SCALE_MIN / cfg.log_scale_step, LOG_SCALE_MAX / cfg.log_scale_step
        qsx = torch.round(lsx / cfg.log_scale_step).clamp(lo, hi)
        qsy = torch.round(lsy / cfg.log_scale_step).clamp(lo, hi)
        qr = torch.round(rho * cfg.rho_levels).clamp(-cfg.rho_levels + 1, cfg.rho_levels - 1)
        qc = torch.round(rgb_to_ycocg(colors.detach().double()) / _color_steps(cfg))
    as_np = [t.to(torch.int64).numpy() for t in (x, y, qsx, qsy, qr, qc)]
    return QuantizedGaussians(*as_np)


def dequantize(q: QuantizedGaussians, cfg: QuantConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer symbols -> float32 (means, chol, colors), exactly as the decoder renders them."""
    scale = float(1 << cfg.pos_frac_bits)
    x = torch.from_numpy(q.x).double() / scale
    y = torch.from_numpy(q.y).double() / scale
    means = torch.stack([x, y], dim=-1)
    lsx = torch.from_numpy(q.log_sx).double() * cfg.log_scale_step
    lsy = torch.from_numpy(q.log_sy).double() * cfg.log_scale_step
    rho = torch.from_numpy(q.rho).double() / cfg.rho_levels
    chol = shape_to_chol(lsx, lsy, rho)
    colors = ycocg_to_rgb(torch.from_numpy(q.color).double().reshape(-1, 3) * _color_steps(cfg))
    return means.float(), chol.float(), colors.float()


@functools.lru_cache(maxsize=64)
def _exp_table(step: float, lo: int, hi: int) -> np.ndarray:
    """exp(k * step) for integer k in [lo, hi], computed by torch exactly as :func:`dequantize`
    computes it (float64), so that a table lookup gives the same bits."""
    k = torch.arange(lo, hi + 1, dtype=torch.float64)
    return torch.exp(k * step).numpy()


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


def snap_colors(colors: torch.Tensor, cfg: QuantConfig) -> torch.Tensor:
    """Round RGB colors to the nearest level of the YCoCg color quantizer (float out)."""
    steps = _color_steps(cfg)
    ycc = torch.round(rgb_to_ycocg(colors.detach().double()) / steps) * steps
    return ycocg_to_rgb(ycc).to(colors.dtype)


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return x + (q - x).detach()


def fake_quantize(means: torch.Tensor, chol: torch.Tensor, colors: torch.Tensor, cfg: QuantConfig,
                  width: int, height: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize-dequantize with straight-through gradients, for quantization-aware fine-tuning."""
    scale = float(1 << cfg.pos_frac_bits)
    lim = torch.tensor([width - 1.0 / scale, height - 1.0 / scale], dtype=means.dtype)
    mq = _ste(means, (torch.round(means * scale) / scale).clamp(torch.zeros_like(lim), lim))
    lsx, lsy, rho = chol_to_shape(chol)
    st = cfg.log_scale_step
    lsx = _ste(lsx, torch.round(lsx / st).clamp(LOG_SCALE_MIN / st, LOG_SCALE_MAX / st) * st)
    lsy = _ste(lsy, torch.round(lsy / st).clamp(LOG_SCALE_MIN / st, LOG_SCALE_MAX / st) * st)
    rl = cfg.rho_levels
    rho = _ste(rho, torch.round(rho * rl).clamp(-rl + 1, rl - 1) / rl)
    cq = shape_to_chol(lsx, lsy, rho)
    steps = _color_steps(cfg).to(colors)
    ycc = rgb_to_ycocg(colors)
    ycc = _ste(ycc, torch.round(ycc / steps) * steps)
    return mq, cq, ycocg_to_rgb(ycc)

"""Attribute-wise quantization of 2D Gaussians, shared by the encoder (with straight-through
rounding for quantization-aware fine-tuning) and the decoder (exact integer -> float mapping).

Each attribute gets the representation and step that suit it:
- position: fixed-point with `pos_frac_bits` fractional bits, clamped to the image;
- shape: the covariance as (log sigma_x, log sigma_y, rho) with a log step for the scales
  (relative precision is what matters for a scale) and a uniform step for the correlation;
- color: YCoCg with a finer step for luma than for the two chroma channels (as JPEG does).
"""

from __future__ import annotations

import torch

from dappled.models.splat.symbols import (
    LOG_SCALE_MAX,
    LOG_SCALE_MIN,
    QuantConfig,
    QuantizedGaussians,
    dequantize_numpy,
)

__all__ = [
    "LOG_SCALE_MAX",
    "LOG_SCALE_MIN",
    "QuantConfig",
    "QuantizedGaussians",
    "dequantize",
    "dequantize_numpy",
    "fake_quantize",
    "quantize",
    "snap_colors",
]

# RGB <-> YCoCg (exact inverse pair in floating point).
_RGB_TO_YCOCG = torch.tensor(
    [[0.25, 0.5, 0.25], [0.5, 0.0, -0.5], [-0.25, 0.5, -0.25]], dtype=torch.float64
)
_YCOCG_TO_RGB = torch.linalg.inv(_RGB_TO_YCOCG)


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
    """Integer symbols -> float32 (means, chol, colors), exactly as the decoder renders them
    (:func:`dequantize_numpy` as tensors: one definition, so encoder and decoder agree bit for bit)."""
    return tuple(torch.from_numpy(a) for a in dequantize_numpy(q, cfg))  # type: ignore[return-value]


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

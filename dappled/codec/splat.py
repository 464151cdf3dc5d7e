"""The splat codec: an image as 2D Gaussians, fitted per image, quantized, entropy coded, and
decoded by rasterization (spec of the payload in docs/format.md).

Frame payload = chunks:
    HEAD  version u8, Gaussian count u32, quantizer config (7 bytes)
    POS   positions sorted in raster order, gaps Exp-Golomb coded (entropy-coded bucket + bits)
    SHAP  chunks SX / SY / RHO: quantized log sigma_x, log sigma_y, correlation (categorical rANS)
    COLR  chunks Y / CO / CG: quantized YCoCg colors (categorical rANS)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dappled.codec.chunks import pack_chunks, require, unpack_chunks
from dappled.codec.container import (
    KEYFRAME,
    Packet,
    PacketType,
    StreamHeader,
)
from dappled.codec.defaults import DEFAULT_QUALITY, IMAGE_CONTAINER_BYTES, image_payload_budget
from dappled.codec.registry import Codec, EncodeParams
from dappled.entropy import decode_symbols, encode_symbols
from dappled.entropy.golomb import decode_nonneg, encode_nonneg
from dappled.errors import BitstreamError, LimitError, OptionError
from dappled.models.splat.numba_cpu import cpu_threads
from dappled.models.splat.symbols import (
    LOG_SCALE_MAX,
    LOG_SCALE_MIN,
    QuantConfig,
    QuantizedGaussians,
    dequantize_numpy,
)
from dappled.threads import parse_threads

PAYLOAD_VERSION = 1
# quality preset -> target bits per pixel
PRESETS: dict[int, float] = {1: 0.15, 2: 0.25, 3: 0.35, 4: 0.5, 5: 0.72, 6: 1.0, 7: 1.4, 8: 2.0}
BITS_PER_GAUSSIAN_GUESS = 40.0
MAX_COLOR_SYMBOL = 1 << 20
CONTAINER_OVERHEAD = IMAGE_CONTAINER_BYTES
# An image too small for its rate target to hold a few Gaussians (a 3x5 icon at 0.5 bpp) gets
# this many payload bytes: the target is exceeded, but the image still codes.
MIN_PAYLOAD_BYTES = 384  # ~100 go to chunk headers, ~100 to the symbol tables
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


def check_render_work(means: np.ndarray, chol: np.ndarray, width: int, height: int) -> None:
    """LimitError when the Gaussians would cover the image more than MAX_COVERAGE times on
    average (the render's time and its row table's memory grow with that)."""
    from dappled.models.splat.numba_cpu import footprint

    pixels, rows = footprint(means, chol, height, width)
    limit = MAX_COVERAGE * width * height + COVERAGE_SLACK
    if pixels > limit or rows > limit:
        raise LimitError(f"the Gaussians cover the {width}x{height} image {pixels / (width * height):.0f} "
                         f"times over (at most {MAX_COVERAGE})")


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


# ---------------------------------------------------------------- rendering


def render_quantized(q: QuantizedGaussians, cfg: QuantConfig, width: int, height: int,
                     device: str = "cpu") -> np.ndarray:
    """Rasterize quantized Gaussians to an (H, W, 3) uint8 image.

    On the CPU this stays in numpy and numba (:func:`dequantize_numpy` is bit-identical to the
    torch :func:`dequantize`), so a decode never imports torch; CUDA renders with torch.
    """
    means_np, chol_np, colors_np = dequantize_numpy(q, cfg)
    check_render_work(means_np, chol_np, width, height)
    if device == "cuda":
        import torch

        from dappled.models.splat import render

        means, chol, colors = (torch.from_numpy(a) for a in (means_np, chol_np, colors_np))
        with torch.no_grad():
            out = render(means.cuda(), chol.cuda(), colors.cuda(), height, width).cpu().numpy()
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    from dappled.models.splat.numba_cpu import render_numba_forward, to_uint8

    return to_uint8(render_numba_forward(means_np, chol_np, colors_np, height, width))


# ---------------------------------------------------------------- encoder


@dataclass
class RateResult:
    """What the rate control settled on."""

    chunks: dict[str, bytes]
    n_gaussians: int
    quant: QuantConfig


def _serialize(g: Any, cfg: QuantConfig, w: int, h: int) -> dict[str, bytes]:
    from dappled.models.splat.quantize import quantize

    return pack_gaussians(quantize(g.means, g.chol, g.colors, cfg, w, h), cfg, w, h)


def quantize_geometry(image: np.ndarray, g: Any, cfg: QuantConfig, solve_iters: int = 25) -> Any:
    """Snap positions and shapes to the quantizer grid, then re-solve the colors for that grid.

    Rendering is linear in the colors, so least squares undoes most of the damage the geometry
    quantization did (measured: +2 dB over quantizing everything at once).
    """
    from dappled.models.splat.fit import Gaussians, image_to_tensor, solve_colors
    from dappled.models.splat.quantize import dequantize, quantize

    h, w = image.shape[:2]
    means, chol, _ = dequantize(quantize(g.means, g.chol, g.colors, cfg, w, h), cfg)
    colors = solve_colors(means, chol, image_to_tensor(image), init=g.colors, iters=solve_iters)
    return Gaussians(means, chol, colors)


def tune_color_step(g: Any, cfg: QuantConfig, w: int, h: int, budget: int,
                    low_share: float = 0.97) -> tuple[QuantConfig, dict[str, bytes]] | None:
    """Pick the color step (the finest rate knob) so the payload lands in [low_share, 1] x budget.

    Searches steps from cfg.color_step / 4 to x 4; returns the largest payload within the budget,
    or None when even the coarsest step does not fit.
    """
    best: tuple[QuantConfig, dict[str, bytes]] | None = None
    lo, hi = cfg.color_step / 4, cfg.color_step * 4
    for trial_step in (cfg.color_step, hi):
        trial = replace(cfg, color_step=trial_step).canonical()
        c = _serialize(g, trial, w, h)
        if payload_size(c) <= budget:
            best = (trial, c)
            break
    if best is None:
        return None
    if payload_size(best[1]) >= low_share * budget:
        return best
    hi = best[0].color_step
    for _ in range(16):  # log-space bisection: a smaller step costs more bytes
        mid = float(np.sqrt(lo * hi))
        trial = replace(cfg, color_step=mid).canonical()
        c = _serialize(g, trial, w, h)
        s = payload_size(c)
        if s <= budget:
            if s > payload_size(best[1]):
                best = (trial, c)
            if s >= low_share * budget:
                break
            hi = mid
        else:
            lo = mid
    return best


def fit_to_budget(image: np.ndarray, g: Any, cfg: QuantConfig, budget: int,
                  feedback_groups: int = 4) -> tuple[QuantConfig, dict[str, bytes]]:
    """Rate control after the fit: quantize the geometry, re-solve colors, tune the color step,
    then quantize the colors with error feedback; if the payload does not fit, drop the least
    important Gaussians and repeat."""
    from dappled.models.splat.fit import prune

    h, w = image.shape[:2]
    for _ in range(8):
        gq = quantize_geometry(image, g, cfg)
        found = tune_color_step(gq, cfg, w, h, budget)
        if found is None:
            size = payload_size(_serialize(gq, replace(cfg, color_step=cfg.color_step * 4), w, h))
            g = prune(g, max(1, int(len(g) * min(0.97, 0.98 * budget / size))))
            continue
        if feedback_groups > 1:
            return _with_feedback(image, gq, found, budget, feedback_groups)
        return found
    raise OptionError(f"could not fit the image into {budget} bytes")


def _with_feedback(image: np.ndarray, gq: Any, found: tuple[QuantConfig, dict[str, bytes]], budget: int,
                   groups: int) -> tuple[QuantConfig, dict[str, bytes]]:
    """Re-quantize the colors with error feedback at the chosen step; the rate barely moves, but
    if it crosses the budget, step up slightly and retry, else keep the plain result."""
    from dappled.models.splat.fit import Gaussians, image_to_tensor, quantize_colors_with_feedback
    from dappled.models.splat.quantize import snap_colors

    h, w = image.shape[:2]
    target = image_to_tensor(image)
    cfg = found[0]
    for _ in range(3):
        colors = quantize_colors_with_feedback(gq, target, lambda c, q=cfg: snap_colors(c, q), groups)
        chunks = _serialize(Gaussians(gq.means, gq.chol, colors), cfg, w, h)
        if payload_size(chunks) <= budget:
            return cfg, chunks
        cfg = replace(cfg, color_step=cfg.color_step * 1.01).canonical()
    return found


class SplatCodec(Codec):
    """2D Gaussian splatting image codec (GaussianImage-style rendering, Image-GS-style init)."""

    name = "splat"
    codec_id = 1
    description = "2D Gaussians fitted per image, rANS-coded, decoded by rasterization"
    quality_range = (1, 8)
    default_quality = DEFAULT_QUALITY
    supports_bpp = True

    def test_encode_kwargs(self) -> dict[str, Any]:
        """A short fit: enough for a real stream, a second or so at test sizes."""
        return {"iterations": 30}

    def target_bpp(self, params: EncodeParams) -> float:
        """The bpp this encode aims at (from --bpp or the quality preset)."""
        if params.bpp is not None:
            return float(params.bpp)
        return PRESETS[params.quality if params.quality is not None else self.default_quality]

    def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
        """Fit, quantize, entropy code to the rate target; one FRAME packet."""
        from dappled.models.splat.fit import FitConfig, fit

        h, w = image.shape[:2]
        opts = dict(params.options)
        bpp = self.target_bpp(params)
        budget = max(image_payload_budget(bpp, w, h), MIN_PAYLOAD_BYTES)
        try:
            iterations = int(opts.pop("iterations", 0))
            over = float(opts.pop("overprovision", 1.0))
            # numba threads; 0: numba_cpu.default_threads()
            n_threads = parse_threads(opts.pop("threads", 0), "splat option threads", allow_zero=True)
        except ValueError as exc:
            raise OptionError(f"bad splat option: {exc}") from None
        if iterations < 0:
            raise OptionError(f"splat option iterations must be >= 0 (0: default), got {iterations}")
        if not (math.isfinite(over) and 0 < over <= 100):
            raise OptionError(f"splat option overprovision must be in (0, 100], got {over}")
        iterations = iterations or default_iterations(bpp, w, h)
        if opts:
            raise OptionError(f"unknown splat option(s): {', '.join(opts)}")
        quant = QuantConfig().canonical()
        n_est = max(8, int(budget * 8 / BITS_PER_GAUSSIAN_GUESS * over))
        n_est = min(n_est, max_gaussians(w, h))
        cfg = FitConfig(n_gaussians=n_est, iterations=iterations, seed=params.seed)
        with cpu_threads(params.device, n_threads), _Progress(params.progress, "fit") as bar:
            g = fit(image, cfg, progress=bar.update)
            quant, chunks = fit_to_budget(image, g, quant, budget)
        return [Packet(PacketType.FRAME, pack_chunks(chunks), 0, KEYFRAME)]

    def decode_image(self, header: StreamHeader, packets: list[Packet], device: str = "cpu") -> np.ndarray:
        """Entropy-decode and rasterize the one FRAME packet."""
        frames = [p for p in packets if p.type == PacketType.FRAME]
        if len(frames) != 1:
            raise BitstreamError("splat image stream needs exactly one frame packet")
        q, cfg = unpack_gaussians(unpack_chunks(frames[0].payload), header.width, header.height)
        with cpu_threads(device):
            return render_quantized(q, cfg, header.width, header.height, device)


def default_iterations(bpp: float, width: int, height: int) -> int:
    """Fit length: more Gaussians need more steps, but the encode time stays bounded."""
    base = 600  # 400 until 2026-11-23: 600 buys +0.2-0.4 dB, affordable with one numba thread
    return int(base * min(1.5, max(0.7, (bpp / 0.5) ** 0.3)))


class _Progress:
    """A tqdm bar fed by the fitter's (step, total, psnr) callback; silent when disabled."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.label = label
        self.bar: Any = None

    def __enter__(self) -> _Progress:
        return self

    def update(self, step: int, total: int, psnr: float) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit="it", leave=False)
        self.bar.update(step - self.bar.n)
        if step % 25 == 0 or step == total:
            self.bar.set_postfix_str(f"{psnr:.2f} dB")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

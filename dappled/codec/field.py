"""The field codec: a tiny neural field fitted per image (Cool-chic / C3 family).

The stream carries integer latent grids (rANS-coded under an integer autoregressive model),
that model's weights, and a small synthesis network; the decoder runs the ARM symbol by symbol
(numba) and then the exact-arithmetic synthesis (numpy, or torch on CUDA). Spec in
docs/format.md, model in docs/models.md.

Frame payload = chunks:
    HEAD  version u8, architecture (5 x u8), escape count u32, one step exponent k per tensor
    NET   every network integer (ARM, then synthesis), zigzag + Exp-Golomb
    LAT   the latents' rANS words (CompressAI's Rans64 format)
    ESC   escaped latent excesses (categorical), present when the count is non-zero
"""

from __future__ import annotations

import contextlib
import math
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from dappled.codec.chunks import pack_chunks, require, unpack_chunks
from dappled.codec.container import KEYFRAME, Packet, PacketType, StreamHeader
from dappled.codec.defaults import IMAGE_CONTAINER_BYTES
from dappled.codec.registry import Codec, EncodeParams
from dappled.entropy import decode_symbols, encode_symbols
from dappled.entropy.golomb import decode_nonneg, encode_nonneg
from dappled.entropy.rans_flat import bytes_to_words, words_to_bytes
from dappled.errors import BitstreamError, EncodeError, LimitError, OptionError
from dappled.models.field.integer import (
    KMAX,
    LATENTS_PER_BIT,
    QMAX,
    WMAX,
    QuantNet,
    QuantTensor,
    arm_layer_count,
    decode_latents,
    encode_latents,
    tensor_shapes,
    unzigzag,
    zigzag,
)
from dappled.models.field.layout import (
    PRESETS,
    STEP_LADDERS,
    STEP_SHIFTS,
    Arch,
    grids,
    macs_per_pixel,
    steps_for,
)
from dappled.models.field.synthesis import synthesize
from dappled.threads import parse_threads

PAYLOAD_VERSION = 2  # 2: the ARM's output bias is per grid
READ_VERSIONS = (1, 2)  # 1 (before 2026-11-30): one ARM output bias (2,) for all grids
_HEAD = struct.Struct("<B5BbBI")
MAX_PIXELS = 1 << 24  # 16 Mpixel: the field decoder's work is linear in this
# quality preset -> lambda (weight of bits per pixel against RGB MSE on [0, 1])
LAMBDAS: dict[int, float] = {q: 0.064 / 2.0 ** (q - 1) for q in range(1, 9)}
DEFAULT_COMPLEXITY = "low"


def lambda_for_bpp(bpp: float) -> float:
    """Starting lambda for a bpp target (bpp falls roughly as lambda**-0.5 on Kodak)."""
    return 0.002 * (0.6 / bpp) ** 2


@contextlib.contextmanager
def torch_threads(device: str, n: int) -> Iterator[None]:
    """Run a fit with n torch threads (one by default: fits scale out by images, not threads)."""
    import torch

    if device != "cpu":
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------- serialization


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
    return pack_chunks(chunks)


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
    chunks = unpack_chunks(payload)
    head, net_bytes, lat = require(chunks, "HEAD", "NET ", "LAT ")
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
    n_lat = sum(g.size for g in gs)
    if n_lat > LATENTS_PER_BIT * (8 * len(lat) + 64):  # 64: the rANS state's slack
        raise LimitError(f"{len(lat)} bytes of latents cannot code {n_lat} latents")
    if len(lat) > 4 * (n_lat + 2):
        raise BitstreamError("latent stream is longer than its latents can need")
    if n_esc > n_lat:
        raise BitstreamError("more escapes than latents")
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
    return Parsed(net, bytes_to_words(lat), excess)


def decode_payload(payload: bytes, width: int, height: int, device: str = "cpu") -> np.ndarray:
    """A frame payload -> (H, W, 3) uint8 image."""
    p = unpack_payload(payload, width, height)
    gs = grids(height, width)
    latents = decode_latents(p.words, p.excess, gs, p.net)
    return synthesize(latents, gs, p.net, height, width, device)


# ---------------------------------------------------------------- encoder


@dataclass
class FieldEncoding:
    """An encoded image and the figures of its encode."""

    payload: bytes
    net: QuantNet
    lam: float
    seconds: float
    history: list[tuple[int, float, float]]


def _options(opts: dict[str, Any]) -> tuple[str, str, int | None, int, float | None]:
    from dappled.models.field.fit import EFFORTS

    opts = dict(opts)
    try:
        effort = str(opts.pop("effort", "default"))
        complexity = str(opts.pop("complexity", DEFAULT_COMPLEXITY))
        it = opts.pop("iterations", None)
        iterations = None if it is None else int(it)
        threads = parse_threads(opts.pop("threads", 1), "field option threads")
        lam = opts.pop("lambda", None)
        lam_v = None if lam is None else float(lam)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"bad field option: {exc}") from None
    if opts:
        raise OptionError(f"unknown field option(s): {', '.join(opts)}")
    if effort not in EFFORTS:
        raise OptionError(f"effort must be one of {', '.join(EFFORTS)}, got {effort!r}")
    if complexity not in PRESETS:
        raise OptionError(f"complexity must be one of {', '.join(PRESETS)}, got {complexity!r}")
    if iterations is not None and not 1 <= iterations <= 1_000_000:
        raise OptionError(f"iterations must be in 1..1000000, got {iterations}")
    if lam_v is not None and not (math.isfinite(lam_v) and 0 < lam_v < 10):
        raise OptionError(f"lambda must be in (0, 10), got {lam_v}")
    return effort, complexity, iterations, threads, lam_v


def iterations_for(effort: str, height: int, width: int) -> int:
    """Iterations of an effort: the 768x512 count, more for small images (they are cheap)."""
    from dappled.models.field.fit import EFFORTS

    base = EFFORTS[effort]
    scale = min(2.0, max(1.0, math.sqrt(768 * 512 / max(1, height * width))))
    return int(base * scale)


def encode_field(image: np.ndarray, params: EncodeParams, lam: float | None = None,
                 target_bpp: float | None = None, progress: Any = None) -> FieldEncoding:
    """Fit, quantize and code one image; with target_bpp, steer lambda to land near that rate."""

    from dappled.models.field.fit import FitConfig, fit, image_tensor, rate_cap_for
    from dappled.models.field.quantize import quantize_network

    effort, complexity, iterations, threads, lam_opt = _options(params.options)
    h, w = image.shape[:2]
    if h * w > MAX_PIXELS:
        raise OptionError(f"the field codec takes at most {MAX_PIXELS} pixels, got {w}x{h}")
    n_it = iterations or iterations_for(effort, h, w)
    lam0 = lam_opt or lam or (lambda_for_bpp(target_bpp) if target_bpp else LAMBDAS[4])
    arch = PRESETS[complexity]
    t0 = time.perf_counter()
    gs = grids(h, w)
    with torch_threads(params.device, threads):
        cfg = FitConfig(iterations=n_it, lam=lam0, target_bpp=target_bpp, seed=params.seed,
                        step_shift=steps_for(lam0)[0], step_ladder=steps_for(lam0)[1],
                        rate_cap=rate_cap_for(lam0))
        res = fit(image, arch, cfg, params.device, progress)
        model, lam_used, history = res.model, res.lam, res.history
        target = image_tensor(image, params.device)
        best: tuple[float, bytes, QuantNet, float] | None = None
        for attempt in range(4):
            bad = _non_finite(model)
            if bad and best is not None:  # a continued fit diverged: keep the closest earlier attempt
                break
            if bad:
                raise EncodeError(f"the field fit diverged (non-finite {bad}) at lambda {lam_used:.3g}; "
                                  "try a higher --bpp or --quality")
            net = quantize_network(model, target, lam_used)
            latents = [np.clip(q, -QMAX, QMAX) for q in model.hard_latents()]
            coded = encode_latents(latents, gs, net)
            payload = pack_payload(net, coded.words, coded.excess)
            if target_bpp is None:
                break
            # the rate of the whole file, as the user counts it (container included)
            bpp = 8 * (len(payload) + IMAGE_CONTAINER_BYTES) / (h * w)
            err = math.log(bpp / target_bpp)
            if best is None or abs(err) < abs(best[0]):
                best = (err, payload, net, lam_used)
            if abs(err) < 0.05 or attempt == 3:
                break
            # too far off: a short continued fit with lambda moved by the measured error
            lam_used *= math.exp(1.5 * err)
            more = FitConfig(iterations=max(30, n_it // 4), lam=lam_used, target_bpp=target_bpp,
                             rate_cap=model.rate_cap,
                             lr_latent=0.05, lr_net=0.005, warmup=0.0, t_start=0.1, t_end=0.05,
                             seed=params.seed + attempt + 1)
            again = fit(image, arch, more, params.device, progress, model=model)
            history += again.history
            lam_used = again.lam
        if best is not None:  # the closest of the attempts
            _, payload, net, lam_used = best
    return FieldEncoding(payload, net, lam_used, time.perf_counter() - t0, history)


def _non_finite(model: Any) -> str | None:
    """The name of the first fitted tensor holding a NaN or an infinity (None when all are
    finite): such a fit must never reach the quantizer and the entropy coder."""
    import torch

    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return name
    return None


class FieldCodec(Codec):
    """Per-image fitted neural field: latent grids + integer ARM + tiny synthesis."""

    name = "field"
    codec_id = 5
    description = "a tiny neural field fitted per image (latent grids, autoregressive entropy model)"
    quality_range = (1, 8)
    default_quality = 4
    supports_bpp = True

    def test_encode_kwargs(self) -> dict[str, Any]:
        """A real fit, cut to a few iterations."""
        return {"iterations": 8}

    def rd_points(self, n: int) -> list[dict[str, Any]]:
        """Quality presets spread over 1..8 (lambda halves per step: ~0.15 to ~2 bpp on Kodak)."""
        return super().rd_points(n) if n > 8 else [
            {"quality": q} for q in sorted({round(1 + 7 * i / max(1, n - 1)) for i in range(n)})]

    def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
        """Fit and code one image; one FRAME packet."""
        lam = None if params.bpp is not None else LAMBDAS[params.quality or self.default_quality]
        with _Progress(params.progress) as bar:
            enc = encode_field(image, params, lam=lam, target_bpp=params.bpp, progress=bar.update)
        return [Packet(PacketType.FRAME, enc.payload, 0, KEYFRAME)]

    def decode_image(self, header: StreamHeader, packets: list[Packet], device: str = "cpu") -> np.ndarray:
        """Decode the one FRAME packet."""
        frames = [p for p in packets if p.type == PacketType.FRAME]
        if len(frames) != 1:
            raise BitstreamError(f"field image stream needs exactly one frame packet, found {len(frames)}")
        return decode_payload(frames[0].payload, header.width, header.height, device)

    def describe(self, header: StreamHeader, packets: list[Packet]) -> dict[str, Any]:
        """Grid sizes, MAC/pixel and architecture, for `dappled info`."""
        frames = [p for p in packets if p.type == PacketType.FRAME]
        p = unpack_payload(frames[0].payload, header.width, header.height)
        gs = grids(header.height, header.width)
        a = p.net.arch
        n_weights = sum(t.ints.size for t in p.net.tensors())
        return {
            "decoder": (f"ARM {a.ctx} context, {a.arm_layers}x{a.arm_hidden} hidden; synthesis "
                        f"{len(gs)}->{a.synth_hidden}->3, 3x3 residual {a.res_hidden}; {n_weights} weights"),
            "MAC/px": macs_per_pixel(a, header.height, header.width),
            "grids": " ".join(f"{'YUV'[g.channel]}{g.level}:{g.width}x{g.height}" for g in gs),
            "latents": f"{sum(g.size for g in gs)} ({int(p.excess.size)} escaped)",
        }


class _Progress:
    """A tqdm bar with PSNR and estimated bpp, fed by the fit; silent when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self) -> _Progress:
        return self

    def update(self, step: int, total: int, psnr: float, bpp: float) -> None:
        if not self.enabled:
            return
        if self.bar is None or self.bar.total != total:
            from tqdm import tqdm

            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=total, desc="fit", unit="it", leave=False)
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix_str(f"{psnr:.2f} dB {bpp:.3f} bpp")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

"""The splat video encoder: intra frames fitted as images (warm-started from the previous fit),
predicted frames as block motion plus quantized updates of the decoder's Gaussians, with rate
control over each group of frames (torch and dappled.models.splat)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from dappled.codec.chunks import pack_chunks, unpack_chunks
from dappled.codec.container import KEYFRAME, PACKET_HEADER_SIZE, Packet, PacketType
from dappled.codec.motion import Motion, estimate_motion, no_motion
from dappled.codec.splat.encoder import fit_to_budget
from dappled.codec.splat.format import max_gaussians, pack_gaussians
from dappled.codec.splat.video.decoder import (
    VideoState,
    apply_frame,
    apply_motion,
    leaves_frame,
    render_state,
)
from dappled.codec.splat.video.format import (
    _VHED,
    COLOR,
    DROP,
    FRAME_I,
    FRAME_P,
    KEEP,
    MAX_GOP,
    PAYLOAD_VERSION,
    UPDATE,
    _parse_vhed,
    config_payload,
    pack_motion,
)
from dappled.codec.stream import FrameStats as BaseFrameStats
from dappled.codec.threads import numba_threads
from dappled.entropy import decode_symbols, encode_symbols
from dappled.errors import OptionError
from dappled.models.splat.symbols import QuantConfig, QuantizedGaussians
from dappled.quality import psnr
from dappled.threads import parse_threads

if TYPE_CHECKING:
    import torch

# quality preset -> mean bits per pixel per frame of the whole stream
VIDEO_PRESETS: dict[int, float] = {1: 0.03, 2: 0.05, 3: 0.08, 4: 0.12, 5: 0.18, 6: 0.27, 7: 0.4, 8: 0.6}
BITS_PER_GAUSSIAN_GUESS = 40.0


@dataclass
class VideoEncodeOptions:
    """Knobs of the video encoder (``-O key=value`` on the command line)."""

    i_iterations: int = 120  # fit of the first intra frame
    i_refit_iterations: int = 40  # later intra frames: warm start from the previous frame's fit
    p_iterations: int = 10  # Adam steps of a predicted frame from the decoder's state
    p_solve_iters: int = 4  # color least-squares steps of a predicted frame
    add_fraction: float = 0.02  # new Gaussians per predicted frame, share of the count
    add_share: float = 1.0  # most of a predicted frame's budget new Gaussians may take
    i_weight: float = 3.0  # an intra frame's budget in units of a predicted frame's
    # scene cuts: when a predicted frame comes out this many dB below the previous (predicted) frame, an
    # intra frame is tried in its place and kept if it is at least `cut_gain_db` better (0: off)
    cut_drop_db: float = 6.0
    cut_gain_db: float = 1.0
    # numba threads of the encoder's renders (0: $DAPPLED_THREADS or 1, see numba_cpu.default_threads);
    # the fits render small frames thousands of times, and on the 2-core machine one thread
    # encoded bikes 3x faster than two (benchmarks/video_bench.py, docs/results.md)
    threads: int = 0
    lr_means: float = 0.5
    lr_chol: float = 0.1
    lr_colors: float = 0.02
    seed: int = 0

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> VideoEncodeOptions:
        """Parse string options; OptionError on unknown keys or bad values."""
        out = cls()
        for k, v in options.items():
            if k not in cls.__dataclass_fields__:
                raise OptionError(f"unknown splat video option {k!r} "
                                  f"(known: {', '.join(cls.__dataclass_fields__)})")
            typ = type(getattr(out, k))
            try:
                out = replace(out, **{k: typ(v)})
            except ValueError:
                raise OptionError(f"bad value for splat video option {k}: {v!r}") from None
        if "threads" in options:  # numba threads: at most the cores (0: the default)
            parse_threads(options["threads"], "splat video option threads", allow_zero=True)
        if "threads" in options:  # numba threads: at most the cores (0: the default)
            parse_threads(options["threads"], "splat video option threads", allow_zero=True)
        out.check()
        return out

    def check(self) -> None:
        """OptionError on a value the encoder cannot work with (negative counts, NaN ...)."""
        for k in self.__dataclass_fields__:
            v = getattr(self, k)
            if isinstance(v, float) and not math.isfinite(v):
                raise OptionError(f"splat video option {k} must be a finite number, got {v}")
            if v < 0:
                raise OptionError(f"splat video option {k} must be >= 0, got {v}")
        for k in ("i_iterations", "i_weight", "lr_means", "lr_chol", "lr_colors"):
            if getattr(self, k) <= 0:
                raise OptionError(f"splat video option {k} must be > 0, got {getattr(self, k)}")
        if self.seed >= 1 << 32:
            raise OptionError(f"splat video option seed must be below 2**32, got {self.seed}")


@dataclass
class FrameStats(BaseFrameStats):
    """What the splat video encoder did for one frame (beyond what every stream encoder says)."""

    gaussians: int
    updated: int = 0
    added: int = 0
    dropped: int = 0
    seconds: float = 0.0


@dataclass
class _Gop:
    budget: float
    left: int
    spent: int = 0


def frame_budget_bytes(kbps: float, fps: float) -> float:
    """Bytes per frame (whole packets) of a bit rate."""
    return kbps * 1000.0 / 8.0 / fps


def _importance(means: torch.Tensor, chol: torch.Tensor, colors: torch.Tensor) -> np.ndarray:
    a, c = chol[:, 0], chol[:, 2]
    area = (a * c).abs() + 0.1
    return ((colors**2).sum(-1) * area).numpy()


class SplatVideoEncoder:
    """Encodes frames one by one into FRAME packets, with rate control over each group.

    The first frame of every group of ``gop`` frames is intra; the others are predicted from
    the decoder's state. The target is ``kbps`` for the whole stream; each group gets its share
    (plus what the previous group left unspent), its intra frame ``i_weight`` predicted frames'
    worth, and each predicted frame what is left divided by the frames left.
    """

    def __init__(self, width: int, height: int, fps: float, kbps: float, gop: int,
                 options: VideoEncodeOptions | None = None, device: str = "cpu") -> None:
        if not 1 <= gop <= MAX_GOP:
            raise OptionError(f"--gop must be in 1..{MAX_GOP}, got {gop}")
        if not kbps > 0 or not math.isfinite(kbps):
            raise OptionError(f"--kbps must be positive, got {kbps}")
        if not fps > 0:
            raise OptionError(f"frame rate must be positive, got {fps}")
        self.w, self.h, self.fps, self.kbps, self.gop = width, height, fps, kbps, gop
        self.opts = options or VideoEncodeOptions()
        self.device = device
        self.state: VideoState | None = None
        self.float_g: Any = None  # the encoder's own last fit (warm start of intra refits)
        self.index = 0
        self.carry = 0.0
        self.group: _Gop | None = None
        self.rng = np.random.default_rng(self.opts.seed)
        self.stats: list[FrameStats] = []
        self.recon: np.ndarray | None = None  # the decoder's picture of the last frame
        self.last_psnr: float | None = None  # PSNR of that picture if it was a predicted frame
        self.config_kbps: float | None = None  # the rate the CONFIG packet states (default: kbps)

    # -- rate control

    def _start_group(self, frames_left: int) -> None:
        n = min(self.gop, max(frames_left, 1))
        per = frame_budget_bytes(self.kbps, self.fps)
        carry = float(np.clip(self.carry, -0.5 * per * n, 0.5 * per * n))
        self.group = _Gop(per * n + carry, n)

    def _end_frame(self, nbytes: int) -> None:
        assert self.group is not None
        self.group.spent += nbytes
        self.group.left -= 1
        if self.group.left == 0:
            self.carry = self.group.budget - self.group.spent
            self.group = None

    # -- encoding

    def config(self) -> bytes:
        """The CONFIG packet's payload: group length and the stream's target rate."""
        return config_payload(self.gop, self.config_kbps if self.config_kbps is not None else self.kbps)

    def encode(self, frame: np.ndarray, frames_left: int | None = None,
               progress: Callable[[int, int, float], None] | None = None) -> Packet:
        """Encode the next frame; returns its FRAME packet. ``frames_left`` (this one included)
        lets the last group be shorter than ``gop``."""
        with numba_threads(self.device, self.opts.threads):
            return self._encode(frame, frames_left, progress)

    def _encode(self, frame: np.ndarray, frames_left: int | None,
                progress: Callable[[int, int, float], None] | None) -> Packet:
        import time

        t0 = time.perf_counter()
        if frame.shape != (self.h, self.w, 3) or frame.dtype != np.uint8:
            raise OptionError(f"frame {self.index} is {frame.shape} {frame.dtype}, "
                              f"expected ({self.h}, {self.w}, 3) uint8")
        if self.group is None:
            self._start_group(frames_left if frames_left is not None else self.gop)
        assert self.group is not None
        g = self.group
        if self.index % self.gop == 0 or self.state is None:
            weight = self.opts.i_weight if g.left > 1 else 1.0
            budget = g.budget * weight / (weight + g.left - 1)
            payload, st = self._encode_intra(frame, int(budget) - PACKET_HEADER_SIZE, progress)
            flags = KEYFRAME
            self.last_psnr = None
        else:
            budget = (g.budget - g.spent) / g.left
            before = (self.state, self.recon, self.float_g)
            payload, st = self._encode_predicted(frame, max(64, int(budget) - PACKET_HEADER_SIZE))
            flags = 0
            assert self.recon is not None
            quality = psnr(self.recon, frame)
            # measured against the last predicted frame (intra frames get a larger budget, so
            # the first predicted frame after one always drops), as x264's min-keyint does
            if (self.opts.cut_drop_db > 0 and g.left > 1 and self.last_psnr is not None
                    and quality < self.last_psnr - self.opts.cut_drop_db):
                payload, st, flags, budget = self._try_cut(frame, before, (payload, st, budget), quality)
            self.last_psnr = quality if flags == 0 else None
        packet = Packet(PacketType.FRAME, payload, self.index, flags)
        st.frame, st.budget, st.bytes = self.index, int(budget), len(payload) + PACKET_HEADER_SIZE
        st.seconds = time.perf_counter() - t0
        self.stats.append(st)
        self._end_frame(st.bytes)
        self.index += 1
        return packet

    def _try_cut(self, frame: np.ndarray, before: tuple[Any, Any, Any],
                 predicted: tuple[bytes, FrameStats, float],
                 quality: float) -> tuple[bytes, FrameStats, int, float]:
        """A predicted frame fell far below the last one (new content, a scene cut): code the
        frame as intra (a fresh fit, on an intra frame's share of what the group has left, at most
        ``i_weight`` predicted frames' worth) instead, if that is at least ``cut_gain_db`` better;
        otherwise keep the predicted frame."""
        assert self.group is not None
        g = self.group
        after = (self.state, self.recon, self.float_g)
        self.state, self.recon, _ = before
        self.float_g = None  # the old content is no help to a fit of the new one
        weight = self.opts.i_weight
        budget = min((g.budget - g.spent) * weight / (weight + g.left - 1), weight * predicted[2])
        try:
            payload, st = self._encode_intra(frame, int(budget) - PACKET_HEADER_SIZE, None)
        except OptionError:  # the budget has no room for an intra frame
            payload = b""
        if payload and psnr(self.recon, frame) >= quality + self.opts.cut_gain_db:
            return payload, st, KEYFRAME, budget
        self.state, self.recon, self.float_g = after
        return predicted[0], predicted[1], 0, predicted[2]

    def _accept(self, payload: bytes) -> VideoState:
        """Take the next reference from our own payload, exactly as the decoder will."""
        self.state = apply_frame(payload, self.state, self.w, self.h)
        self.recon = render_state(self.state, self.w, self.h, self.device)
        return self.state

    def _encode_intra(self, frame: np.ndarray, budget: int,
                      progress: Callable[[int, int, float], None] | None) -> tuple[bytes, FrameStats]:
        from dappled.models.splat.fit import FitConfig, add_by_error, finetune, fit, image_to_tensor, prune

        vhed_bytes = _VHED.size + 9 + 1  # VHED chunk inside the payload
        budget -= vhed_bytes
        if budget < 64:
            raise OptionError(f"--kbps {self.kbps} leaves no room for an intra frame at {self.w}x{self.h}")
        n_est = min(max(8, int(budget * 8 / BITS_PER_GAUSSIAN_GUESS)), max_gaussians(self.w, self.h))
        cfg = FitConfig(n_gaussians=n_est, iterations=self.opts.i_iterations, seed=self.opts.seed)
        if self.float_g is None:
            g = fit(frame, cfg, progress=progress)
        else:  # encoder-side warm start; the frame itself is coded without reference
            g = self.float_g
            if len(g) > n_est:
                g = prune(g, n_est)
            elif len(g) < n_est:
                target = image_to_tensor(frame)
                rendered = _render_t(g, self.w, self.h)
                g = add_by_error(g, target, rendered, n_est - len(g), self.rng)
            g = finetune(frame, g, cfg, self.opts.i_refit_iterations, None, progress)
        _quant, chunks = fit_to_budget(frame, g, QuantConfig().canonical(), budget)
        payload = pack_chunks({"VHED": _VHED.pack(PAYLOAD_VERSION, FRAME_I, 0), **chunks})
        st = self._accept(payload)
        self.float_g = _as_gaussians(st)
        return payload, FrameStats(self.index, FRAME_I, 0, 0, len(st.q))

    def _encode_predicted(self, frame: np.ndarray, budget: int) -> tuple[bytes, FrameStats]:
        import torch

        from dappled.models.splat.fit import FitConfig, add_by_error, finetune, image_to_tensor, solve_colors
        from dappled.models.splat.quantize import dequantize, quantize

        assert self.state is not None
        st = self.state
        cfg = st.cfg
        w, h = self.w, self.h
        n_ref = len(st.q)
        target = image_to_tensor(frame)
        assert self.recon is not None
        rq = st.q
        rendered = torch.from_numpy(self.recon.astype(np.float32) / 255.0)
        # block motion: Gaussians follow the vector of their block, kept when it lowers the error
        scale = 1 << cfg.pos_frac_bits
        motion = estimate_motion(self.recon, frame, scale)
        gone = np.zeros(n_ref, dtype=bool)
        if not motion.is_zero():
            out = leaves_frame(rq, motion, cfg, w, h)  # dropped: not rendered, not coded
            moved = apply_motion(rq, motion, cfg, w, h)
            gs = _as_gaussians(VideoState(moved, cfg))
            gs.colors[torch.from_numpy(out)] = 0.0
            rs = _render_t(gs, w, h)
            # compare away from the edges: the strips the motion uncovers are filled by new
            # Gaussians either way, and the opposite edges lose the tails of the dropped ones
            vmax = np.abs(motion.vectors).max(axis=0) // scale + 2
            my_, mx_ = int(vmax[1]), int(vmax[0])
            win = (slice(min(my_, h // 2 - 1), max(h - my_, h // 2)),
                   slice(min(mx_, w // 2 - 1), max(w - mx_, w // 2)))
            if float(((rs - target)[win] ** 2).mean()) < float(((rendered - target)[win] ** 2).mean()):
                rq, rendered, gone = moved, rs, out
            else:
                motion = no_motion(w, h)
        ref = _as_gaussians(VideoState(rq, cfg))
        ref.colors[torch.from_numpy(gone)] = 0.0
        n_add = round(max(n_ref * self.opts.add_fraction, 1.2 * gone.sum()))
        n_add = min(n_add, max_gaussians(w, h) - n_ref)
        g = ref
        if n_add > 0:
            g = add_by_error(ref, target, rendered, n_add, self.rng)
            # new Gaussians overlap: solve all colors jointly rather than trust each one's residual
            g.colors = solve_colors(g.means, g.chol, target, init=g.colors,
                                    iters=max(2, self.opts.p_solve_iters))
        fcfg = FitConfig(n_gaussians=len(g), lr_means=self.opts.lr_means, lr_chol=self.opts.lr_chol,
                         lr_colors=self.opts.lr_colors, seed=self.opts.seed)
        g = finetune(frame, g, fcfg, self.opts.p_iterations, None)
        if self.opts.p_solve_iters > 0:
            g.colors = solve_colors(g.means, g.chol, target, init=g.colors, iters=self.opts.p_solve_iters)
        self.float_g = g
        cand = quantize(g.means, g.chol, g.colors, cfg, w, h)
        old = cand.take(np.arange(n_ref))
        new = cand.take(np.arange(n_ref, len(cand)))

        # which old Gaussians to drop: the least important, as many as were added
        imp = _importance(g.means[:n_ref], g.chol[:n_ref], g.colors[:n_ref])
        n_drop = min(len(new), n_ref // 2)
        drop = gone.copy()
        n_drop = max(0, n_drop - int(gone.sum()))
        if n_drop:
            cut = np.argsort(imp, kind="stable")[:n_drop]
            drop[cut[imp[cut] < 0.25 * np.median(imp)]] = True

        # which updates to keep: ranked by the change they make to the picture
        geom = ((old.x != rq.x) | (old.y != rq.y) | (old.log_sx != rq.log_sx)
                | (old.log_sy != rq.log_sy) | (old.rho != rq.rho))
        changed = ~drop & (geom | (old.color != rq.color).any(1))
        rm, rc, rcol = dequantize(rq, cfg)
        cm, cc, ccol = dequantize(old, cfg)
        area = (rc[:, 0] * rc[:, 2]).abs() + 0.1
        dpos = ((cm - rm) ** 2).sum(-1) / area
        dshape = ((cc - rc) ** 2).sum(-1) / area
        dcolor = ((ccol - rcol) ** 2).sum(-1)
        score = (area * (dcolor + (rcol**2).sum(-1) * torch.clamp(dpos + dshape, max=1.0))).numpy()
        cand_idx = np.flatnonzero(changed)
        cand_idx = cand_idx[np.argsort(-score[cand_idx], kind="stable")]
        new_order = np.argsort(-_importance(*[t[n_ref:] for t in (g.means, g.chol, g.colors)]), kind="stable")

        def build(k: int, n_new: int) -> bytes:
            flags = np.where(drop, DROP, KEEP)
            flags[cand_idx[:k]] = np.where(geom[cand_idx[:k]], UPDATE, COLOR)
            added = new.take(np.sort(new_order[:n_new]))
            return self._predicted_payload(flags, rq, old, added, cfg, motion)

        n_new = len(new)
        payload = build(0, n_new)
        n_motion = int(gone.sum())  # new Gaussians that fill what the motion uncovered
        while len(payload) > self.opts.add_share * budget and n_new > n_motion:
            n_new = max(n_motion, int(n_new * 0.7))
            payload = build(0, n_new)
        while len(payload) > budget and n_new > 0:
            n_new //= 2
            payload = build(0, n_new)
        if len(payload) <= budget and len(cand_idx):
            lo, hi = 0, len(cand_idx)
            best = payload
            full = build(hi, n_new)
            if len(full) <= budget:
                best = full
            else:  # bisection on the number of updates (payload size grows with it)
                for _ in range(8):
                    mid = (lo + hi + 1) // 2
                    trial = build(mid, n_new)
                    if len(trial) <= budget:
                        lo, best = mid, trial
                    else:
                        hi = mid - 1
                    if hi - lo <= max(2, len(cand_idx) // 100):
                        break
            payload = best
        flags_n = _count_flags(payload)
        self._accept(payload)
        return payload, FrameStats(self.index, FRAME_P, 0, 0, len(self.state.q),
                                   flags_n[UPDATE] + flags_n[COLOR],
                                   len(self.state.q) - (n_ref - flags_n[DROP]), flags_n[DROP])

    def _predicted_payload(self, flags: np.ndarray, rq: QuantizedGaussians, cand: QuantizedGaussians,
                           added: QuantizedGaussians, cfg: QuantConfig, motion: Motion) -> bytes:
        upd = np.flatnonzero(flags == UPDATE)
        col = np.flatnonzero((flags == UPDATE) | (flags == COLOR))

        def d(a: np.ndarray, b: np.ndarray, idx: np.ndarray = upd) -> bytes:
            return encode_symbols(a[idx] - b[idx])

        chunks = {
            "VHED": _VHED.pack(PAYLOAD_VERSION, FRAME_P, len(rq)),
            "MOTN": pack_motion(motion),
            "FLAG": encode_symbols(flags),
            "DPOS": pack_chunks({"DX  ": d(cand.x, rq.x), "DY  ": d(cand.y, rq.y)}),
            "DSHP": pack_chunks({"DSX ": d(cand.log_sx, rq.log_sx), "DSY ": d(cand.log_sy, rq.log_sy),
                                 "DRHO": d(cand.rho, rq.rho)}),
            "DCOL": pack_chunks({"DCY ": d(cand.color[:, 0], rq.color[:, 0], col),
                                 "DCO ": d(cand.color[:, 1], rq.color[:, 1], col),
                                 "DCG ": d(cand.color[:, 2], rq.color[:, 2], col)}),
            "ADD ": pack_chunks(pack_gaussians(added, cfg, self.w, self.h)),
        }
        return pack_chunks(chunks)


def _count_flags(payload: bytes) -> dict[int, int]:
    chunks = unpack_chunks(payload)
    _, nref = _parse_vhed(chunks["VHED"])
    flags = decode_symbols(chunks["FLAG"], nref)
    return {k: int((flags == k).sum()) for k in (KEEP, UPDATE, DROP, COLOR)}


def _as_gaussians(state: VideoState) -> Any:
    from dappled.models.splat.fit import Gaussians
    from dappled.models.splat.quantize import dequantize

    return Gaussians(*dequantize(state.q, state.cfg))


def _render_t(g: Any, w: int, h: int) -> torch.Tensor:
    import torch

    from dappled.models.splat import render_numba_forward

    out = render_numba_forward(g.means.numpy(), g.chol.numpy(), g.colors.numpy(), h, w)
    return torch.from_numpy(out)

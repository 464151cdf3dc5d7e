"""The field video encoder: low-delay P groups. The first frame of a group is a field image; each
later frame is block motion from the previous decoded frame (a rate-aware per-block search,
:func:`dappled.codec.motion.search_motion`), its prediction sharpened by a fitted 3x3 filter where
that pays (:mod:`dappled.codec.prediction_filter`), plus a residual field (fitted with
torch, dappled.models.field). The group's networks (ARM and synthesis) are fitted on its first
predicted frame and sent once; later predicted frames fit their latents alone. Groups are coded
independently of each other, and the encoder takes every reference from decoding its own payload
(:func:`apply_frame`), so encoder and decoder never drift apart."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dappled.codec import residual_dct
from dappled.codec.container import KEYFRAME, PACKET_HEADER_SIZE, Packet, PacketType
from dappled.codec.defaults import IMAGE_CONTAINER_BYTES
from dappled.codec.field.encoder import LAMBDAS, _options, encode_field, iterations_for
from dappled.codec.field.format import pack_payload
from dappled.codec.field.video.decoder import FieldVideoState, apply_frame
from dappled.codec.field.video.format import (
    FRAC_BITS,
    FRAME_I,
    FRAME_P,
    FRAME_P_DCT,
    FRAME_P_NET,
    FRAME_P_SKIP,
    MAX_GOP,
    MAX_VECTORS,
    motion_bytes,
    pack_filter,
    pack_frame,
)
from dappled.codec.motion import compensate, estimate_motion, search_motion
from dappled.codec.prediction_filter import apply_filter, fit_filter
from dappled.codec.progress import FitProgress
from dappled.codec.registry import EncodeParams
from dappled.codec.stream import FrameStats as BaseFrameStats
from dappled.codec.threads import torch_threads
from dappled.entropy import encode_symbols
from dappled.entropy.rans_flat import words_to_bytes
from dappled.errors import EncodeError, OptionError
from dappled.models.field.integer import QMAX, QuantNet, encode_latents, tensor_shapes
from dappled.models.field.layout import AUTO, PRESETS, grids, residual_steps_for, steps_for
from dappled.models.field.rate import LAMBDA_RANGE, RATE_POWER
from dappled.quality import mse, psnr

# options of the video form (-O key=value), on top of the image encoder's
_VIDEO_DEFAULTS: dict[str, float] = {
    "p_lambda": 1.4,  # a predicted frame's lambda, in intra lambdas (docs/results.md, the ablation)
    "p_iterations": 1.0,  # first predicted frame of a group: iterations, share of an intra fit's
    "p_refit": 0.5,  # later predicted frames (latents only): share of an intra fit's iterations
    "block": 16,  # motion block side (pixels; with transform residuals, bikes at 217.6 kbps: 8 lost 5.5 dB)
    "search": 7,  # per-block motion search radius (pixels; 0: global translations only, as v0)
    "mv_cost": 0.5,  # a motion bit's worth in squared luma error, in predicted-frame lambdas
    "subpel": 2,  # motion search refinement: 0 whole, 1 half, 2 quarter pixels
    "i_iterations": 1.0,  # an intra frame's iterations, in the effort's (it starts the group's chain)
    "warm": 1,  # later predicted frames start from: 1 the previous frame's latents, 0 the residual's
    # pyramid, 2 zero latents (the prediction alone)
    # --kbps: an intra frame's share of its group's budget, in predicted frames. 20: what an intra
    # frame costs against a predicted one at a fixed quality once predicted frames may go without
    # a residual (carphone, fast effort, qualities 2-6: 19-23; with a residual on every one: ~10)
    "i_weight": 20.0,
    "skip": 1,  # 1: a predicted frame whose residual does not pay for its bytes is sent without one
    # scene cuts: a frame whose motion-compensated prediction comes out cut_db below the group's
    # last intra frame's picture and below the last predicted frame's prediction is also coded as
    # an intra frame, and the cheaper of the two (at the predicted frames' lambda) kept (0: never)
    "cut_db": 8.0,
    # intra refresh: a frame whose prediction fell refresh_db below the group's last intra frame's
    # picture is also coded as an intra frame, the cheaper kept as at a cut (0: never)
    "refresh_db": 0.0,
    # 1: a predicted frame's prediction gets a fitted 3x3 filter when it pays for its bytes (payload
    # 4; carphone, 19 predicted frames at 152 kbps: +0.40 dB a frame before any residual); 2: only
    # a frame sent without a residual (BD-rate vs x264, fast effort: carphone 60 frames +134.7 ->
    # +131.5 %, bikes 30 frames +276.1 -> +275.8 %); 0: never
    "pfilter": 2,
    # networks: 0 fitted once a group (with its first residual), frozen for the later frames; K > 0:
    # fitted again (and sent again) with a later residual whose share of the group's bytes (without
    # --kbps: the last predicted frame's bytes) is at least K times the networks' (bikes, 30
    # frames, fast effort, K=3: +3.6 dB at 435 kbps, +2.6 dB at 1,741 kbps with 20 % fewer bytes;
    # carphone, 60 frames, K=1 against 3: +0.39 dB at 76 kbps, +0.23 dB at 152 kbps)
    "renet": 1,
    "renet_warm": 0,  # 1: such a refit starts from the group's networks and the last latents
    # 1: a residual with networks fitted again that does not pay for its bytes is fitted once more
    # with the group's networks frozen before the frame goes without one
    "renet_fallback": 1,
    # the interpolation of predicted frames: 1 the 8-tap "sharp8" filter (payload 5), 0 the cubic one
    # (payload 4), 2 per frame whichever predicts it better, each with the vectors searched for it
    # (fieldv_frames, fast effort, against 0: carphone 60 frames at 152 kbps +0.53 dB (1: +0.54),
    # bikes 30 frames at 435 kbps +0.05 dB at +0.9 % rate (1: -0.41 dB: 8 taps carry a noisy
    # reference's noise on, the cubic filter smooths it))
    "sharp8": 2,
    # temporal weighting of predicted frames (low delay): a frame's squared error counts
    # 1 + rho + rho**2 + ... over the frames left in its group (each later frame predicts from it
    # and inherits about rho of its error), so its lambda is the group's divided by that weight
    # and, with --kbps, its share of the bytes grows as the weight ** P_RATE_POWER (0: every
    # predicted frame alike)
    "rho": 0.0,
    # 1: rho measured along the group (at most the option's): the share of a prediction's squared
    # error that its reference's own error accounts for, averaged over the frames so far (a
    # chain of well predicted frames inherits most of its reference's error; new content little)
    "rho_adapt": 0,
    # 1: a residual past what the group has left (--kbps, near the group's end) is fitted once
    # more at a lambda that fits, rather than the frame going without one
    "fit_left": 0,
    # 1: residual fits take the image fit's steps and rounding (layout.steps_for,
    # fit.IMAGE_TEMPERATURES; session 11) instead of those the video codec was tuned with
    "residual_recipe": 0,
    # 1: predicted frames take a transform residual (payload 6, dappled.codec.residual_dct: 8x8
    # integer DCT blocks, coded with adaptive binary contexts) instead of a residual field, when
    # it pays for its bytes at the frame's lambda (fast effort, BD-rate vs x264 medium: carphone
    # 60 frames +75.6 -> +12.8 %, bikes 30 frames +33 -> -50.6 %; a carphone frame ~0.4 CPU s
    # instead of ~9); 0: residual fields
    "dct": 1,
    # --kbps: the share of the correction lambda makes from one predicted frame to the next (1: all
    # of it, as far as P_LAMBDA_STEP allows)
    "lam_damp": 1.0,
}
# The options that pick one of a few modes, and their values
_VIDEO_CHOICES: dict[str, tuple[int, ...]] = {
    **{k: (0, 1) for k in ("residual_recipe", "fit_left", "rho_adapt", "skip", "renet_warm",
                           "renet_fallback", "dct")},
    **{k: (0, 1, 2) for k in ("subpel", "sharp8", "warm", "pfilter")},
}
# A predicted frame's fit ends at SKIP_PROBE of its iterations when at most one latent in
# SKIP_LATENTS (per pixel) is non-zero: its residual is heading for nothing (payload 3 sends the
# frame without one; on carphone at quality 4 every predicted frame's fit ended so).
SKIP_PROBE = 0.3
SKIP_LATENTS = 1000
# A prediction filter must take at least this much squared error (levels^2, a pixel's mean) off
# its frame: its output is rounded to integers once more, which adds ~1/12 level^2 of noise that
# every later frame of the group inherits (bikes at ~40 dB, where the gains are of that order:
# -0.45 dB at 435 kbps with filters that paid for their bytes on their own frames)
FILTER_MIN_GAIN = 4.0 / 12.0

# A frame's iterations per effort at 768x512 (iterations_for scales them): the counts the video
# figures and --kbps were measured at. The image's fast effort went to 300 iterations when the
# fit got 2.4x faster (session 4); video keeps 200 until its rate control is re-measured.
VIDEO_EFFORTS = {"fast": 200, "default": 1000, "slow": 4000}
# --kbps: d log(bytes) / d log(lambda) of a predicted frame's latents (the image fit's), and the
# largest factor lambda moves by between two predicted frames
P_RATE_POWER = 1.5  # carphone, fast effort, 40-150 kbps: a predicted frame's bytes ~ lambda**-1.5
DCT_RATE_POWER = 0.7  # ... with a transform residual (carphone frame 1, lambda 1e-4 .. 3e-3)
P_LAMBDA_STEP = 2.0
I_WEIGHT_KNEE = 0.2  # bits per pixel and frame where the intra frame's weight starts to fall
I_WEIGHT_POWER = 1.7  # ... as (knee / rate) ** power: 20 -> 8 at 0.34 bpp (carphone, intra_weight)
P_OVER = 2.0  # --kbps: a predicted frame over this many times its share is fitted again
I_RETRY = 0.1  # an intra frame that misses its bytes by more than this share is fitted again
NET_BYTES_PER_WEIGHT = 0.65  # a group's networks, coded (carphone, "low": ~290 bytes for 442 weights)
# an intra frame's bytes but its field
_I_OVERHEAD = len(pack_frame(FRAME_I))


@dataclass
class FrameStats(BaseFrameStats):
    """What the field video encoder did for one frame."""

    psnr: float = 0.0
    seconds: float = 0.0
    vectors: int = 0
    prediction_psnr: float = 0.0  # a predicted frame's motion-compensated prediction, alone
    interpolation: str = ""  # ... and its interpolation
    lam: float = 0.0  # the lambda the frame was coded at (a predicted frame's: its residual's)
    weight: float = 1.0  # a predicted frame's temporal weight (option rho)


def video_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Split -O options into the image encoder's (checked by it) and the video form's."""
    image = dict(options)
    video = dict(_VIDEO_DEFAULTS)
    for k in _VIDEO_DEFAULTS:
        if k in image:
            try:
                video[k] = float(image.pop(k))
            except (TypeError, ValueError):
                raise OptionError(f"bad field video option {k}: {options[k]!r}") from None
            if not math.isfinite(video[k]) or video[k] < 0:
                raise OptionError(f"field video option {k} must be a non-negative number")
    for k, choices in _VIDEO_CHOICES.items():
        if video[k] not in choices:
            listed = ", ".join(map(str, choices[:-1]))
            raise OptionError(f"field video option {k} must be {listed} or {choices[-1]}")
    if not 0 < video["lam_damp"] <= 1:
        raise OptionError("field video option lam_damp must be in (0, 1]")
    if not 0 < video["p_lambda"] <= 100:
        raise OptionError("field video option p_lambda must be in (0, 100]")
    if not 8 <= video["block"] <= 255:
        raise OptionError("field video option block must be in 8..255")
    if not video["search"] <= 32:
        raise OptionError("field video option search must be in 0..32")
    if not 0 < video["i_iterations"] <= 10:
        raise OptionError("field video option i_iterations must be in (0, 10]")
    if not video["rho"] < 1:
        raise OptionError("field video option rho must be in [0, 1)")
    if not video["cut_db"] <= 100 or not video["refresh_db"] <= 100:
        raise OptionError("field video options cut_db and refresh_db must be in 0..100")
    if not 1 <= video["i_weight"] <= 1000:
        raise OptionError("field video option i_weight must be in 1..1000")
    if not video["renet"] <= 1000:
        raise OptionError("field video option renet must be in 0..1000")
    if not 0 < video["p_iterations"] <= 10 or not 0 < video["p_refit"] <= 10:
        raise OptionError("field video options p_iterations and p_refit must be in (0, 10]")
    image.pop("seed", None)
    _options(image)  # the image encoder's own check
    return image, video


@dataclass
class GroupBudget:
    """--kbps: the bytes of one group of pictures (its frames' packets) and what it has spent."""

    budget: float
    frames: int
    spent: int = 0
    left: int = 0

    def per_frame(self) -> float:
        """What each frame still to code may spend."""
        return (self.budget - self.spent) / max(1, self.left)

    def share(self, rho: float) -> float:
        """What the next frame may spend when each frame's share grows as its
        :func:`chain_weight` ** P_RATE_POWER (rho 0: :meth:`per_frame`)."""
        if rho <= 0:
            return self.per_frame()
        s = [chain_weight(rho, n) ** P_RATE_POWER for n in range(1, max(1, self.left) + 1)]
        return (self.budget - self.spent) * s[-1] / sum(s)


def chain_weight(rho: float, n_left: int) -> float:
    """A predicted frame's weight with ``n_left`` frames left in its group (itself included):
    its own error plus rho of it in each later frame, 1 + rho + ... + rho ** (n_left - 1)."""
    if rho <= 0:
        return 1.0
    return (1.0 - rho ** max(1, n_left)) / (1.0 - rho)


def intra_weight(i_weight: float, group: GroupBudget, pixels: int) -> float:
    """An intra frame's weight in predicted frames at the group's rate: ``i_weight`` up to
    I_WEIGHT_KNEE bits per pixel and frame, then falling as (knee / rate) ** I_WEIGHT_POWER: at
    high rates a residual pays on most predicted frames and they cost far more against the intra
    frame (carphone, fast effort, fixed qualities, payload 3: 19-25 predicted frames' worth at
    0.07-0.18 bpp a frame, 7.5 at 0.34)."""
    rate = 8.0 * group.budget / max(1, group.frames * pixels)
    return i_weight * min(1.0, (I_WEIGHT_KNEE / max(rate, 1e-9)) ** I_WEIGHT_POWER)


def intra_target_bytes(group: GroupBudget, i_weight: float, net_bytes: float) -> float:
    """An intra frame's bytes: its share of the group, weighing ``i_weight`` predicted frames,
    once the networks its first predicted frame sends (``net_bytes``) are set aside. (Setting
    aside a floor per predicted frame as well starved the intra frame at low rates: 17.7 dB at
    38 kbps on carphone, docs/results.md.)"""
    if group.frames == 1:
        return group.budget
    rest = max(group.budget - net_bytes, 0.5 * group.budget)
    return rest * i_weight / (i_weight + group.frames - 1)


def rescaled_lambda(lam: float, over: float, power: float) -> float:
    """The lambda at which a frame that came out ``over`` times its bytes would have hit them
    (bytes ~ lambda ** -power), within LAMBDA_RANGE."""
    return min(max(lam * over ** (1.0 / power), LAMBDA_RANGE[0]), LAMBDA_RANGE[1])


def next_p_lambda(lam: float, last_bytes: float, target: float, power: float = P_RATE_POWER,
                  damp: float = 1.0) -> float:
    """The lambda of the next predicted frame: the last one's, moved (by at most P_LAMBDA_STEP)
    so that a frame like the last one would cost `target` bytes (bytes ~ lambda ** -power), or
    ``damp`` of the way there (in log lambda)."""
    factor = (max(last_bytes, 1.0) / max(target, 1.0)) ** (damp / power)
    factor = min(max(factor, 1.0 / P_LAMBDA_STEP), P_LAMBDA_STEP)
    return min(max(lam * factor, LAMBDA_RANGE[0]), LAMBDA_RANGE[1])


class FieldVideoEncoder:
    """Encodes frames one by one into FRAME packets (low-delay P groups of ``gop`` frames), at a
    fixed quality or, with ``kbps``, at a rate: each group gets its frames' share of the rate,
    the intra frame ``i_weight`` predicted frames' worth of it (lambda predicted before its fit and
    nudged early, as the image codec's --bpp; fitted once more at a corrected lambda when it misses
    by over ``I_RETRY``); predicted frames start at ``p_lambda`` times the
    intra lambda, and each later one moves lambda (by a bounded factor) from what the last one
    cost against what the group has left. Nothing carries from one group to the next."""

    def __init__(self, width: int, height: int, fps: float, params: EncodeParams, quality: int,
                 gop: int, kbps: float | None = None) -> None:
        if not 1 <= gop <= MAX_GOP:
            raise OptionError(f"--gop must be in 1..{MAX_GOP}, got {gop}")
        if kbps is not None and not (math.isfinite(kbps) and kbps > 0):
            raise OptionError(f"--kbps must be a positive number, got {kbps}")
        self.w, self.h, self.fps, self.gop, self.kbps = width, height, fps, gop, kbps
        image_opts, self.vopts = video_options(params.options)
        # the interpolations a predicted frame tries (-O sharp8), and the one of the frame being coded
        self.interps = {0: ("cubic",), 1: ("sharp8",), 2: ("sharp8", "cubic")}[int(self.vopts["sharp8"])]
        self.rate_power = DCT_RATE_POWER if self.vopts["dct"] else P_RATE_POWER
        self.frame_interp = self.interps[0]
        self._prediction = (0.0, "")  # the last predicted frame's prediction: PSNR, interpolation
        self.effort, complexity, iterations, self.threads, lam_opt = _options(image_opts)
        if complexity == AUTO:  # the video codec was measured with the low preset at every rate
            complexity = "low"
        self.iterations = iterations or iterations_for(self.effort, height, width, VIDEO_EFFORTS)
        i_opts = {**image_opts, "complexity": complexity,
                  "iterations": max(1, round(self.iterations * self.vopts["i_iterations"]))}
        self.image_params = replace(params, options=i_opts, progress=False)
        if kbps is not None and lam_opt is not None:
            raise OptionError("give --kbps or -O lambda, not both")
        self.arch = PRESETS[complexity]
        self.lam = lam_opt or LAMBDAS[quality]
        self.p_lam = self.lam * self.vopts["p_lambda"]  # the next predicted frame's lambda
        # ... divided by the frame's temporal weight (option rho): the lambda it is coded at
        self.frame_w = 1.0
        self.rho = self.vopts["rho"]  # the temporal weights' rho now (rho_adapt: measured)
        self._orig: np.ndarray | None = None  # the last frame, as it came in
        self.n_weights = sum(math.prod(s) for s in tensor_shapes(self.arch, len(grids(height, width))))
        self.device = params.device
        self.seed = params.seed
        self.progress = params.progress
        self.index = 0
        self.state: FieldVideoState | None = None
        self.model: Any = None  # the group's fitted residual field (torch), None before its first P
        self.net: QuantNet | None = None
        self.group: GroupBudget | None = None
        self.last_p_bytes = 0.0  # what the last predicted frame's latents and motion cost
        self.last_pred_psnr: float | None = None  # the last predicted frame's prediction, in dB
        self.intra_psnr = 0.0  # the group's last intra frame's picture, in dB
        self._decoded: tuple[bytes, FieldVideoState] | None = None  # a payload already decoded
        self.stats: list[FrameStats] = []
        self.recon: np.ndarray | None = None

    def _pack(self, ftype: int, **parts: Any) -> bytes:
        """A predicted frame's payload, flagged with the interpolation this encoder predicts with."""
        return pack_frame(ftype, sharp8=self.frame_interp == "sharp8", **parts)

    def config(self) -> bytes | None:
        """No CONFIG packet: every group carries what it needs."""
        return None

    def encode(self, frame: np.ndarray, frames_left: int | None = None) -> Packet:
        """Encode the next frame; returns its FRAME packet. ``frames_left`` (this one included)
        sizes the last group's budget when it is shorter than ``gop``."""
        if frame.shape != (self.h, self.w, 3) or frame.dtype != np.uint8:
            raise OptionError(f"frame {self.index} is {frame.shape}, expected ({self.h}, {self.w}, 3) uint8")
        t0 = time.perf_counter()
        intra = self.index % self.gop == 0 or self.state is None
        nvec = 0
        budget = 0.0
        coded = None
        if not intra:
            n_left = self.group.left if self.group is not None else self.gop - self.index % self.gop
            rho = self.rho
            last_w, self.frame_w = self.frame_w, chain_weight(rho, n_left)
            if self.stats and self.stats[-1].type == 0:  # the first after an intra frame: p_lambda
                # intra lambdas at this frame's weight (its own lambda p_lambda times the intra's)
                self.p_lam *= self.frame_w
            if self.group is not None:
                budget = self.group.share(rho)
                if self.stats and self.stats[-1].type == 1:  # a later predicted frame: steer from
                    # the last one (with or without a residual; payload 2 always had one), as it
                    # would have cost at this frame's weight
                    like_last = self.last_p_bytes * (self.frame_w / last_w) ** self.rate_power
                    self.p_lam = next_p_lambda(self.p_lam, like_last, budget, self.rate_power,
                                               self.vopts["lam_damp"])
            coded = self._encode_p(frame, n_left, budget)
            if coded is None:  # a scene cut? an intra frame in the group, if it beats the residual
                if self.group is not None:
                    g = self.group
                    w = intra_weight(self.vopts["i_weight"], g, self.w * self.h)
                    budget = (g.budget - g.spent) * w / (w + g.left - 1)
                coded, intra = self._cut(frame, n_left, budget)
            ftype = 0 if intra else 1
            payload, nvec = coded
        else:
            n = min(self.gop, max(1, frames_left if frames_left is not None else self.gop))
            if self.kbps is not None:
                self.group = GroupBudget(self.kbps * 125.0 * n / self.fps, n, 0, n)
                # networks go out only with a residual that pays for them when frames may skip
                # theirs (most do at low rates): nothing is set aside for them then
                nets = 0.0 if self.vopts["skip"] else NET_BYTES_PER_WEIGHT * self.n_weights
                weight = intra_weight(self.vopts["i_weight"], self.group, self.w * self.h)
                budget = intra_target_bytes(self.group, weight, nets)
            payload = self._encode_i(frame, budget)
            self._start_predicting()
            ftype = 0
        # the next reference is what the decoder makes of this payload (decoded once: a choice
        # between codings may have decoded it already)
        if self._decoded is not None and self._decoded[0] is payload:
            self.state = self._decoded[1]
        else:
            self.state = apply_frame(payload, None if intra else self.state, self.w, self.h)
        self._decoded = None
        self.recon = self.state.frame
        self._orig = frame
        packet = Packet(PacketType.FRAME, payload, self.index, KEYFRAME if intra else 0)
        nbytes = len(payload) + PACKET_HEADER_SIZE
        if self.group is not None:
            self.group.spent += nbytes
            self.group.left -= 1
        pred_psnr, interp = self._prediction if ftype else (0.0, "")
        self.stats.append(FrameStats(self.index, ftype, nbytes, round(budget), psnr(frame, self.recon),
                                     time.perf_counter() - t0, nvec, pred_psnr, interp,
                                     self.p_lam / self.frame_w if ftype else self.lam,
                                     self.frame_w if ftype else 1.0))
        if intra:
            self.intra_psnr = self.stats[-1].psnr
        self.index += 1
        return packet

    def _cut(self, frame: np.ndarray, n_left: int, budget: float) -> tuple[tuple[bytes, int], bool]:
        """At a suspected scene cut: the frame coded as a predicted frame and as an intra one, the
        one with the lower cost at the predicted frames' lambda kept ((payload, vectors), intra).
        (New content over part of a frame can look like a cut and still be cheaper as a residual.)
        The predicted frame goes without a prediction filter here: one fitted across a cut pulls
        the old picture towards the new one's mean and blur, which wins this one frame's
        comparison and leaves the frames after it predicting from a poor picture (a 6-frame test
        clip: 744 bytes at 25 dB after the cut, against 1,065 bytes at 27 dB with the intra frame)."""
        before = (self.model, self.net, self.lam, self.last_p_bytes, self.last_pred_psnr)
        share = self.group.share(self.rho) if self.group is not None else 0.0
        predicted = self._encode_p(frame, n_left, share, cuts=False, pfilter=False)
        assert predicted is not None
        after = (self.model, self.net, self.lam, self.last_p_bytes, self.last_pred_psnr)
        self.model, self.net, self.lam, self.last_p_bytes, self.last_pred_psnr = before
        lam = self.p_lam / self.frame_w
        intra = self._encode_i(frame, budget)
        n_pix = self.h * self.w
        as_p = apply_frame(predicted[0], self.state, self.w, self.h)
        as_i = apply_frame(intra, None, self.w, self.h)
        cost_p = mse(as_p.frame, frame) / 255.0**2 + lam * 8.0 * len(predicted[0]) / n_pix
        cost_i = mse(as_i.frame, frame) / 255.0**2 + lam * 8.0 * len(intra) / n_pix
        if cost_p <= cost_i:
            self.model, self.net, self.lam, self.last_p_bytes, self.last_pred_psnr = after
            self._decoded = (predicted[0], as_p)
            return predicted, False
        self._start_predicting()
        self._decoded = (intra, as_i)
        return (intra, 0), True

    def _start_predicting(self) -> None:
        """After an intra frame: no residual networks yet, lambda from the intra frame's."""
        self.model, self.net = None, None
        self.p_lam = self.lam * self.vopts["p_lambda"]
        self.frame_w = 1.0
        self.rho = self.vopts["rho"]
        self.last_pred_psnr = None

    def _is_cut(self, pred: np.ndarray, frame: np.ndarray) -> bool:
        """Whether the frame may be coded intra instead: a scene cut (its prediction fell ``cut_db``
        below the group's last intra frame's picture and below the last prediction; then
        :meth:`_cut` decides) or an intra refresh (``refresh_db`` below that intra frame's
        picture)."""
        cut = self.vopts["cut_db"]
        if cut <= 0 and self.vopts["refresh_db"] <= 0:
            return False
        q = psnr(frame, pred)
        last = self.last_pred_psnr
        self.last_pred_psnr = q
        if self.vopts["refresh_db"] > 0 and q < self.intra_psnr - self.vopts["refresh_db"]:
            return True
        if cut <= 0 or q >= self.intra_psnr - cut:
            return False
        return last is None or q < last - cut

    def _encode_i(self, frame: np.ndarray, budget: float) -> bytes:
        """An intra frame's payload: at the quality's lambda, or (budget > 0) at a rate."""
        if budget <= 0:
            with FitProgress(self.progress, f"frame {self.index} I") as bar:
                enc = encode_field(frame, self.image_params, lam=self.lam, progress=bar.update)
        else:
            n_pix = self.h * self.w
            payload_bytes = max(budget - PACKET_HEADER_SIZE - _I_OVERHEAD, 16.0)
            # the image encoder aims at the payload less an image container's bytes: add them back
            bpp = 8.0 * (payload_bytes + IMAGE_CONTAINER_BYTES) / n_pix
            with FitProgress(self.progress, f"frame {self.index} I") as bar:
                enc = encode_field(frame, self.image_params, target_bpp=bpp, progress=bar.update)
            miss = (len(enc.payload) + _I_OVERHEAD + PACKET_HEADER_SIZE) / budget
            if abs(math.log(miss)) > math.log(1 + I_RETRY):  # a second fit at the corrected lambda
                lam = min(max(enc.lam * miss ** (1 / RATE_POWER), LAMBDA_RANGE[0]), LAMBDA_RANGE[1])
                with FitProgress(self.progress, f"frame {self.index} I refit") as bar:
                    again = encode_field(frame, self.image_params, lam=lam, progress=bar.update)
                aim = budget - _I_OVERHEAD - PACKET_HEADER_SIZE  # the nearer of the two fits
                if abs(len(again.payload) - aim) < abs(len(enc.payload) - aim):
                    enc = again
            self.lam = enc.lam
        return pack_frame(FRAME_I, field=enc.payload)

    def _motion(self, prev: np.ndarray, frame: np.ndarray, interp: str) -> Any:
        """The block motion from prev to frame, its vectors priced with this interpolation."""
        block = int(self.vopts["block"])
        if self.vopts["search"] > 0:
            return search_motion(prev, frame, block, self.vopts["mv_cost"] * self.p_lam / self.frame_w,
                                 search=int(self.vopts["search"]), frac_bits=FRAC_BITS,
                                 max_vectors=MAX_VECTORS, subpel=int(self.vopts["subpel"]), filt=interp)
        return estimate_motion(prev, frame, 1 << FRAC_BITS, block)

    def _encode_p(self, frame: np.ndarray, n_left: int, budget: float = 0.0,
                  cuts: bool = True, pfilter: bool = True) -> tuple[bytes, int] | None:
        """A predicted frame's payload (and its motion vector count); None at a suspected scene
        cut (:meth:`_is_cut`; ``cuts`` False: never). Sent without a residual when the residual's
        bytes are worth more (at the frame's lambda) than what it adds; a first residual's
        networks count for the ``n_left`` frames (this one included) that may use them; ``pfilter``
        False: no prediction filter. With
        ``budget`` (--kbps, its share of the group) a residual over P_OVER times it is fitted again
        at a corrected lambda."""
        assert self.state is not None
        prev = self.state.frame
        best: tuple[float, Any, np.ndarray, str] | None = None
        for interp in self.interps:  # each with the vectors searched for it: the better prediction
            motion = self._motion(prev, frame, interp)
            pred = compensate(prev, motion, filt=interp)
            err = mse(pred, frame)
            if best is None or err < best[0]:
                best = (err, motion, pred, interp)
        assert best is not None
        err, motion, pred, self.frame_interp = best
        if self.vopts["rho_adapt"] and self._orig is not None:
            inherited = mse(prev, self._orig) / max(err, 1e-9)  # the reference's error, in this one's
            self.rho = 0.5 * self.rho + 0.5 * min(inherited, self.vopts["rho"])
        self._prediction = (psnr(frame, pred), self.frame_interp)
        if cuts and self._is_cut(pred, frame):
            return None
        mv = motion_bytes(motion, self.w, self.h)
        filt, skip_pred = b"", pred  # the prediction filter; the frame without a residual
        mode = int(self.vopts["pfilter"]) if pfilter else 0
        if mode:
            filt, skip_pred = self._prediction_filter(pred, frame)
        skip_payload = self._pack(FRAME_P_SKIP, motion=mv, filt=filt)
        nvec = len(motion.vectors)
        if self.vopts["dct"]:
            return self._transform_residual(frame, skip_pred, mv, filt, skip_payload, budget, n_left), nvec
        if mode == 1:  # the residual on the filtered prediction too
            pred = skip_pred
        else:
            filt = b""
        first = self.model is None or self._renet(budget)
        lam = self.p_lam
        coded = self._residual(frame, pred, skip_pred, mv, filt, skip_payload, first, budget, n_left)
        if coded is None and first and self.model is not None and self.vopts["renet_fallback"]:
            # networks fitted again did not pay for themselves: the group's networks, frozen, at
            # the lambda before that fit (which a refit's networks may have pushed up)
            self.p_lam = lam
            coded = self._residual(frame, pred, skip_pred, mv, filt, skip_payload, False, budget, n_left)
        if coded is None:
            self.last_p_bytes = len(skip_payload) + PACKET_HEADER_SIZE
            return skip_payload, nvec
        return coded, nvec

    def _transform_residual(self, frame: np.ndarray, pred: np.ndarray, mv: bytes, filt: bytes,
                            skip_payload: bytes, budget: float, n_left: int) -> bytes:
        """A predicted frame with a transform residual on ``pred`` (option dct), or
        ``skip_payload`` when the residual is not worth its bytes at the frame's lambda or (with
        --kbps) past what the group has left; over P_OVER times its share, coded once more at
        the lambda that would have hit it."""
        lam = self.p_lam / self.frame_w
        for attempt in range(2):
            res = residual_dct.encode(frame, pred, 3.0 * lam * 255.0**2)
            payload = self._pack(FRAME_P_DCT, motion=mv, filt=filt, dct=res.data)
            over = (len(payload) + PACKET_HEADER_SIZE) / max(budget, 1.0)
            if attempt == 0 and budget > 0 and over > P_OVER:
                lam = rescaled_lambda(lam, over, self.rate_power)
                self.p_lam = lam * self.frame_w
                continue
            break
        room = self._room(n_left, skip_payload)
        gain = float(((pred.astype(np.int64) - frame) ** 2).sum()) - res.sse  # squared error, levels^2
        worth = gain > 3.0 * lam * 255.0**2 * 8.0 * (len(payload) - len(skip_payload))
        if self.vopts["skip"] and (not worth or len(payload) > room):
            self.last_p_bytes = len(skip_payload) + PACKET_HEADER_SIZE
            return skip_payload
        self.last_p_bytes = len(payload) + PACKET_HEADER_SIZE
        return payload

    def _room(self, n_left: int, skip_payload: bytes) -> float:
        """--kbps: what the group has left for this frame once its other frames (``n_left`` with
        it) go without a residual (``skip_payload`` each); without --kbps no limit."""
        if self.group is None:
            return math.inf
        return (self.group.budget - self.group.spent - (n_left - 1) * (len(skip_payload) + PACKET_HEADER_SIZE)
                - PACKET_HEADER_SIZE)

    def _residual(self, frame: np.ndarray, pred: np.ndarray, skip_pred: np.ndarray, mv: bytes,
                  filt: bytes, skip_payload: bytes, first: bool, budget: float,
                  n_left: int) -> bytes | None:
        """A predicted frame's payload with a residual (fitted on ``pred``; ``first``: with
        networks of its own), or None when the frame is better sent without one
        (``skip_payload``, predicting ``skip_pred``): a fit heading for no residual, a residual
        whose squared error gain is not worth its bytes at the frame's lambda, or one past what
        the group has left."""
        refit = first and self.model is not None  # networks sent again: they serve this frame
        warm = None if first else [y.detach().clone() for y in self.model.latents]
        lam = self.p_lam / self.frame_w
        room = self._room(n_left, skip_payload)
        tries = 3 if self.vopts["fit_left"] else 2
        for attempt in range(tries):
            fitted = self._fit_residual(frame, pred, lam, first, warm)
            if fitted is None:  # heading for no residual: sent without one
                return None
            model, net, coded = fitted
            lat = words_to_bytes(coded.words)
            esc = encode_symbols(coded.excess) if len(coded.excess) else b""
            latents_only = len(self._pack(FRAME_P, motion=mv, lat=lat, esc=esc, n_esc=len(coded.excess),
                                          filt=filt))
            # the frame as sent: with networks of its own (first), or its latents alone
            payload = (self._pack(FRAME_P_NET, motion=mv, field=pack_payload(net, coded.words, coded.excess),
                                  filt=filt) if first
                       else self._pack(FRAME_P, motion=mv, lat=lat, esc=esc, n_esc=len(coded.excess),
                                       filt=filt))
            # what --kbps steers by: a group's first networks are shared by its frames, a refit's
            # are this frame's
            counted = len(payload) if refit else latents_only
            over = (counted + PACKET_HEADER_SIZE) / max(budget, 1.0)
            if attempt == 0 and budget > 0 and over > P_OVER:
                # --kbps: far over its share (lambda still on its way to the group's rate): fitted
                # again at the lambda that would have hit it, which later frames start from
                lam = rescaled_lambda(lam, over, P_RATE_POWER)
                self.p_lam = lam * self.frame_w
                continue
            if self.vopts["fit_left"] and attempt < tries - 1 and 0 < room < len(payload):
                # fit_left: past what the group has left (near its end): fitted again at the
                # lambda that would leave a margin, for this frame alone, not sent without one
                lam = min(max(lam * (len(payload) / (0.85 * room)) ** (1.0 / P_RATE_POWER),
                              LAMBDA_RANGE[0]), LAMBDA_RANGE[1])
                continue
            break
        if self.vopts["skip"]:  # the residual against none, at this lambda (squared error, [0, 1])
            decoded = apply_frame(payload, self.state, self.w, self.h)
            recon = decoded.frame
            n_pix = self.h * self.w
            # a first residual's networks serve the frames left (with renet, those until the next
            # refit: this one alone at the rates where every residual refits them)
            serve = 1 if self._renet(budget) else max(1, n_left)
            extra = latents_only + (len(payload) - latents_only) / serve - len(skip_payload)
            gain = (mse(skip_pred, frame) / 255.0**2 - mse(recon, frame) / 255.0**2) * 3 * n_pix
            # --kbps: never past what the group has left (room)
            if gain <= lam * 8.0 * extra * 3 or len(payload) > room:
                return None
            self._decoded = (payload, decoded)
        if first:
            self.net, self.model = net, model
        self.last_p_bytes = counted + PACKET_HEADER_SIZE
        return payload

    def _renet(self, budget: float) -> bool:
        """Whether a later residual fits (and sends) the networks again (option renet)."""
        k = self.vopts["renet"]
        if not k:
            return False
        spend = budget if budget > 0 else self.last_p_bytes
        return spend >= k * NET_BYTES_PER_WEIGHT * self.n_weights

    def _prediction_filter(self, pred: np.ndarray, frame: np.ndarray) -> tuple[bytes, np.ndarray]:
        """(the coded filter, the filtered prediction) when a fitted prediction filter's squared
        error gain is worth its bytes at the predicted frames' lambda; else (b"", pred)."""
        coefs = fit_filter(pred, frame)
        if coefs is None:
            return b"", pred
        out = apply_filter(pred, coefs)
        filt = pack_filter(coefs)
        drop = mse(pred, frame) - mse(out, frame)
        gain = drop / 255.0**2 * 3 * self.h * self.w
        if gain <= self.p_lam / self.frame_w * 8.0 * len(filt) * 3 or drop < FILTER_MIN_GAIN:
            return b"", pred
        return filt, out

    def _fit_residual(self, frame: np.ndarray, pred: np.ndarray, lam: float, first: bool,
                      warm: list[Any] | None) -> tuple[Any, QuantNet, Any] | None:
        """A predicted frame's residual field fitted at ``lam``: (model, networks, coded latents),
        or None when its fit ended early heading for no residual. The group's first fits the
        networks too; a later one starts from ``warm`` (the last frame's latents) with them frozen."""
        import torch

        from dappled.models.field.fit import IMAGE_TEMPERATURES, FitConfig, fit, image_tensor, rate_cap_for
        from dappled.models.field.model import FieldModel
        from dappled.models.field.quantize import quantize_network

        gs = grids(self.h, self.w)
        image_recipe = bool(self.vopts["residual_recipe"])
        steps_of = steps_for if image_recipe else residual_steps_for
        rounding = ({"t_start": IMAGE_TEMPERATURES[0], "t_end": IMAGE_TEMPERATURES[1]} if image_recipe
                    else {})

        def config(n_it: int, shift: int, ladder: int, **kw: Any) -> FitConfig:
            return FitConfig(iterations=n_it, lam=lam, seed=self.seed, step_shift=shift, step_ladder=ladder,
                             rate_cap=rate_cap_for(lam), **rounding, **kw)

        with torch_threads(self.device, self.threads):
            target = image_tensor(frame, self.device)
            base = image_tensor(pred, self.device)
            if first and self.model is not None and self.vopts["renet_warm"]:
                import copy

                model = copy.deepcopy(self.model)  # the group's networks, the last frame's latents
                model.base = base
                n_it = max(1, round(self.iterations * self.vopts["p_refit"]))
                cfg = config(n_it, model.step_shift, model.step_ladder)
            elif first:
                shift, ladder = steps_of(lam)
                model = FieldModel(self.h, self.w, self.arch, self.device, self.seed, shift, ladder)
                model.residual_start()
                model.base = base
                model.init_from_image(target - base + 0.5)
                n_it = max(1, round(self.iterations * self.vopts["p_iterations"]))
                cfg = config(n_it, shift, ladder)
            else:
                model = self.model
                model.base = base
                assert warm is not None
                for y, w0 in zip(model.latents, warm, strict=True):
                    y.data.copy_(w0)
                if self.vopts["warm"] == 0:
                    model.init_from_image(target - base + 0.5, arm_scales=False)
                elif self.vopts["warm"] == 2:  # from no residual at all: the prediction alone
                    for y in model.latents:
                        y.data.zero_()
                n_it = max(1, round(self.iterations * self.vopts["p_refit"]))
                cfg = config(n_it, model.step_shift, model.step_ladder, freeze_net=True)
            stop = None
            if self.vopts["skip"]:
                cfg.probes = (SKIP_PROBE,)
                limit = max(1, self.h * self.w // SKIP_LATENTS)

                def stop(frac: float, m: FieldModel) -> bool:
                    return sum(int(torch.count_nonzero(torch.round(y))) for y in m.latents) <= limit

            with FitProgress(self.progress, f"frame {self.index} P") as bar:
                result = fit(frame, self.arch, cfg, self.device, bar.update, model=model, stop=stop)
            bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
            if bad:
                raise EncodeError(f"the field video fit diverged (non-finite {bad[0]}); try another quality")
            if result.stopped:
                return None
            net = quantize_network(model, target, lam) if first else self.net
            assert net is not None
            latents = [np.clip(q, -QMAX, QMAX) for q in model.hard_latents()]
            return model, net, encode_latents(latents, gs, net)

"""The field video encoder: low-delay P groups. The first frame of a group is a field image; each
later frame is block motion from the previous decoded frame plus a residual field (fitted with
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

from dappled.codec.chunks import pack_chunks
from dappled.codec.container import KEYFRAME, PACKET_HEADER_SIZE, Packet, PacketType
from dappled.codec.field.encoder import LAMBDAS, _options, encode_field, iterations_for
from dappled.codec.field.format import pack_payload
from dappled.codec.field.video.decoder import FieldVideoState, apply_frame
from dappled.codec.field.video.format import (
    FRAME_I,
    FRAME_P,
    FRAME_P_NET,
    MAX_GOP,
    pack_motion,
    pack_vhed,
)
from dappled.codec.motion import compensate, estimate_motion
from dappled.codec.registry import EncodeParams
from dappled.codec.stream import FrameStats as BaseFrameStats
from dappled.codec.threads import torch_threads
from dappled.entropy import encode_symbols
from dappled.entropy.rans_flat import words_to_bytes
from dappled.errors import EncodeError, OptionError
from dappled.models.field.integer import QMAX, QuantNet, encode_latents
from dappled.models.field.layout import PRESETS, grids, steps_for
from dappled.quality import psnr

# options of the video form (-O key=value), on top of the image encoder's
_VIDEO_DEFAULTS: dict[str, float] = {
    "p_lambda": 2.0,  # a predicted frame's lambda, in intra lambdas (1: no better, docs/results.md)
    "p_iterations": 1.0,  # first predicted frame of a group: iterations, share of an intra fit's
    "p_refit": 0.5,  # later predicted frames (latents only): share of an intra fit's iterations
    "block": 16,  # motion block side (pixels)
    "warm": 1,  # 1: later predicted frames start from the previous frame's latents, 0: from the residual
}


@dataclass
class FrameStats(BaseFrameStats):
    """What the field video encoder did for one frame."""

    psnr: float = 0.0
    seconds: float = 0.0
    vectors: int = 0


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
    if not 0 < video["p_lambda"] <= 100:
        raise OptionError("field video option p_lambda must be in (0, 100]")
    if not 8 <= video["block"] <= 255:
        raise OptionError("field video option block must be in 8..255")
    if not 0 < video["p_iterations"] <= 10 or not 0 < video["p_refit"] <= 10:
        raise OptionError("field video options p_iterations and p_refit must be in (0, 10]")
    image.pop("seed", None)
    _options(image)  # the image encoder's own check
    return image, video


class FieldVideoEncoder:
    """Encodes frames one by one into FRAME packets (low-delay P groups of ``gop`` frames)."""

    def __init__(self, width: int, height: int, fps: float, params: EncodeParams, quality: int,
                 gop: int) -> None:
        if not 1 <= gop <= MAX_GOP:
            raise OptionError(f"--gop must be in 1..{MAX_GOP}, got {gop}")
        self.w, self.h, self.fps, self.gop = width, height, fps, gop
        image_opts, self.vopts = video_options(params.options)
        self.image_params = replace(params, options=image_opts, progress=False)
        self.effort, complexity, iterations, self.threads, lam_opt = _options(image_opts)
        self.arch = PRESETS[complexity]
        self.lam = lam_opt or LAMBDAS[quality]
        self.iterations = iterations or iterations_for(self.effort, height, width)
        self.device = params.device
        self.seed = params.seed
        self.index = 0
        self.state: FieldVideoState | None = None
        self.model: Any = None  # the group's fitted residual field (torch), None before its first P
        self.net: QuantNet | None = None
        self.stats: list[FrameStats] = []
        self.recon: np.ndarray | None = None

    def config(self) -> bytes | None:
        """No CONFIG packet: every group carries what it needs."""
        return None

    def encode(self, frame: np.ndarray, frames_left: int | None = None) -> Packet:
        """Encode the next frame; returns its FRAME packet."""
        if frame.shape != (self.h, self.w, 3) or frame.dtype != np.uint8:
            raise OptionError(f"frame {self.index} is {frame.shape}, expected ({self.h}, {self.w}, 3) uint8")
        t0 = time.perf_counter()
        intra = self.index % self.gop == 0 or self.state is None
        nvec = 0
        if intra:
            enc = encode_field(frame, self.image_params, lam=self.lam)
            payload = pack_chunks({"VHED": pack_vhed(FRAME_I), "FLD ": enc.payload})
            self.model, self.net = None, None
            ftype = 0
        else:
            payload, nvec = self._encode_p(frame)
            ftype = 1
        # the next reference is what the decoder makes of this payload
        self.state = apply_frame(payload, None if intra else self.state, self.w, self.h)
        self.recon = self.state.frame
        packet = Packet(PacketType.FRAME, payload, self.index, KEYFRAME if intra else 0)
        self.stats.append(FrameStats(self.index, ftype, len(payload) + PACKET_HEADER_SIZE, 0,
                                     psnr(frame, self.recon), time.perf_counter() - t0, nvec))
        self.index += 1
        return packet

    def _encode_p(self, frame: np.ndarray) -> tuple[bytes, int]:
        """A predicted frame's payload (and its motion vector count)."""
        import torch

        from dappled.models.field.fit import FitConfig, fit, image_tensor, rate_cap_for
        from dappled.models.field.model import FieldModel
        from dappled.models.field.quantize import quantize_network

        assert self.state is not None
        prev = self.state.frame
        motion = estimate_motion(prev, frame, 4, int(self.vopts["block"]))
        pred = compensate(prev, motion)
        lam = self.lam * self.vopts["p_lambda"]
        gs = grids(self.h, self.w)
        first = self.model is None
        with torch_threads(self.device, self.threads):
            target = image_tensor(frame, self.device)
            base = image_tensor(pred, self.device)
            if first:
                shift, ladder = steps_for(lam)
                model = FieldModel(self.h, self.w, self.arch, self.device, self.seed, shift, ladder)
                model.residual_start()
                model.base = base
                model.init_from_image(target - base + 0.5)
                n_it = max(1, round(self.iterations * self.vopts["p_iterations"]))
                cfg = FitConfig(iterations=n_it, lam=lam, seed=self.seed, step_shift=shift,
                                step_ladder=ladder, rate_cap=rate_cap_for(lam))
            else:
                model = self.model
                model.base = base
                if not self.vopts["warm"]:
                    model.init_from_image(target - base + 0.5, arm_scales=False)
                n_it = max(1, round(self.iterations * self.vopts["p_refit"]))
                cfg = FitConfig(iterations=n_it, lam=lam, seed=self.seed, step_shift=model.step_shift,
                                step_ladder=model.step_ladder, rate_cap=rate_cap_for(lam), freeze_net=True)
            fit(frame, self.arch, cfg, self.device, model=model)
            bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
            if bad:
                raise EncodeError(f"the field video fit diverged (non-finite {bad[0]}); try another quality")
            if first:
                self.net = quantize_network(model, target, lam)
                self.model = model
            assert self.net is not None
            latents = [np.clip(q, -QMAX, QMAX) for q in model.hard_latents()]
            coded = encode_latents(latents, gs, self.net)
        chunks = {"VHED": pack_vhed(FRAME_P_NET if first else FRAME_P, 0 if first else len(coded.excess)),
                  "MOTN": pack_motion(motion)}
        if first:
            chunks["FLD "] = pack_payload(self.net, coded.words, coded.excess)
        else:
            chunks["LAT "] = words_to_bytes(coded.words)
            if len(coded.excess):
                chunks["ESC "] = encode_symbols(coded.excess)
        return pack_chunks(chunks), len(motion.vectors)

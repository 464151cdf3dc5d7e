"""Training of the rat model on BSDS500 crops (resumable, CPU or CUDA).

Two stages:

* ``main``: the whole model end to end, loss = lambda_q * 255^2 * MSE + bpp with the rate
  point q drawn per crop (one variable-rate model for all qualities). Region maps: the human
  segmentations of BSDS500 (privileged information), or, for a share ``grid_prob`` of the
  crops, the grid of square cells the codec uses at inference, so the transforms work with
  both.
* ``shallow``: the shallow synthesis alone, against the frozen encoder and entropy model of a
  ``main`` checkpoint, on exactly the rounded latents the real decoder sees; loss = mean over
  crops of log10(MSE), which weighs every rate point the same in dB.

Every ``ckpt_every`` steps (and at the end) ``OUT/last.pt`` holds the model, optimizers, step
and random states; running again with the same OUT resumes. ``OUT/log.csv`` records loss, bpp
and PSNR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dappled.errors import InputError, OptionError
from dappled.models.rat.model import RatConfig, RatModel, rate_distortion
from dappled.models.rat.regions import grid_labels
from dappled.models.training import TrainerBase, learning_rate

STAGES = ("main", "shallow")
LOG_FIELDS = ("step", "loss", "bpp", "psnr", "aux", "lr", "seconds")


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in its checkpoints)."""

    out_dir: str
    stage: str = "main"
    steps: int = 3000
    batch: int = 8
    crop: int = 128
    lr: float = 1e-3
    lr_final_ratio: float = 0.05
    warmup: int = 100
    clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # 0: torch's default
    model: dict[str, Any] = field(default_factory=lambda: RatConfig().to_dict())
    init: str | None = None  # checkpoint to start from (the main model, for the shallow stage)
    grid_prob: float = 0.5
    grid_cells: tuple[int, ...] = (32, 64)
    data_root: str | None = None
    scale: int = 2
    limit: int | None = None  # first K BSDS500 images only (tests)
    log_every: int = 25
    ckpt_every: int = 200
    max_minutes: float = 0.0  # stop (with a checkpoint) after this wall time; 0: no limit


def make_labels(human: np.ndarray, rng: np.random.Generator, cfg: TrainConfig) -> torch.Tensor:
    """Per crop: the human segmentation, or (with probability grid_prob) a grid of random cell size."""
    b, h, w = human.shape
    out = torch.from_numpy(human.copy())
    for i in range(b):
        if rng.random() < cfg.grid_prob:
            out[i] = grid_labels(h, w, int(rng.choice(cfg.grid_cells)))
    return out


def _main_params(model: RatModel) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    net = [p for n, p in model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return net, aux


class Trainer(TrainerBase):
    """One training run (see module doc); ``run()`` trains to ``cfg.steps`` and returns the model."""

    log_fields = LOG_FIELDS

    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        if cfg.stage not in STAGES:
            raise OptionError(f"stage must be one of {', '.join(STAGES)}, got {cfg.stage!r}")
        if cfg.stage == "shallow" and not cfg.init:
            raise OptionError("the shallow stage needs --init, a checkpoint of the main model")
        if cfg.crop % 64:
            raise OptionError(f"crop must be a multiple of 64, got {cfg.crop}")
        self.setup(cfg, progress)
        mcfg = RatConfig.from_dict(cfg.model)
        if cfg.stage == "shallow" and not mcfg.shallow_channels:
            raise OptionError("the shallow stage needs a model config with shallow_channels > 0")
        self.model = RatModel(mcfg)
        if cfg.init:
            self._load_init(cfg.init)
        if cfg.stage == "shallow":
            for n, p in self.model.named_parameters():
                p.requires_grad_(n.startswith("shallow."))
        self.model.to(self.device)
        net, aux = _main_params(self.model)
        self.opt = torch.optim.Adam(net, lr=cfg.lr)
        self.aux_opt = torch.optim.Adam(aux, lr=1e-3) if cfg.stage == "main" else None
        self.lambdas = torch.tensor(mcfg.lambdas, device=self.device)

    def _load_init(self, path: str) -> None:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        state = ck["model"] if "model" in ck else ck["state_dict"]
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith("shallow.")] + list(unexpected)
        if bad:
            raise InputError(f"{path}: does not fit this model ({', '.join(bad[:5])} ...)")
        if self.model.shallow is not None and any(k.startswith("shallow.") for k in missing):
            with torch.no_grad():
                self.model.shallow.inv_gain.copy_(self.model.inv_gain)

    # ---------------------------------------------------------------- checkpoints

    def extra_state(self) -> dict[str, Any]:
        return {"aux_opt": self.aux_opt.state_dict() if self.aux_opt else {}}

    def load_extra_state(self, ck: dict[str, Any]) -> None:
        if self.aux_opt and ck["aux_opt"]:
            self.aux_opt.load_state_dict(ck["aux_opt"])

    # ---------------------------------------------------------------- steps

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        imgs, human = self.data.sample(self.cfg.batch, self.cfg.crop, self.rng)
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(255.0)
        labels = make_labels(human, self.rng, self.cfg)
        q = torch.from_numpy(self.rng.integers(0, self.model.config.n_rates, self.cfg.batch))
        return x.to(self.device), q.to(self.device), labels.to(self.device)

    def train_step(self) -> dict[str, float]:
        """One optimizer step; returns the logged figures."""
        cfg = self.cfg
        lr = learning_rate(cfg, self.step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        x, q, labels = self.batch()
        self.model.train()
        if cfg.stage == "main":
            out = self.model(x, q, labels)
            rd = rate_distortion(out, x, self.lambdas[q])
            loss = rd["loss"]
        else:
            with torch.no_grad():
                y_hat = self.exact_latent(x, q, labels)
            x_hat = self.model.synthesis(y_hat, q, labels, "shallow")
            mse = ((x_hat - x) ** 2).flatten(1).mean(1)
            loss = torch.log10(mse).mean()
            rd = {"bpp": torch.tensor(float("nan")), "psnr": (-10 * torch.log10(mse)).mean()}
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], cfg.clip)
        self.opt.step()
        aux = 0.0
        if self.aux_opt is not None:
            aux_loss = self.model.aux_loss()
            self.aux_opt.zero_grad(set_to_none=True)
            aux_loss.backward()
            self.aux_opt.step()
            aux = aux_loss.item()
        self.step += 1
        return {"loss": loss.item(), "bpp": rd["bpp"].item(), "psnr": rd["psnr"].item(), "aux": aux, "lr": lr}

    def exact_latent(self, x: torch.Tensor, q: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The latent the real decoder gets: hard rounding of z and of y around the predicted means."""
        m = self.model
        y = m.analysis(x, q, labels)
        z = m.h_a(y)
        med = m.entropy_bottleneck._get_medians().view(1, -1, 1, 1)
        z_hat = torch.round(z - med) + med
        _, means = m.entropy_params(z_hat)
        return torch.round(y - means) + means

    def description(self) -> str:
        return f"train rat ({self.cfg.stage})"

    def postfix(self, row: dict[str, Any]) -> str:
        return f"loss {row['loss']:.4f} bpp {row['bpp']:.3f} PSNR {row['psnr']:.2f}"

"""Training of the tokenizer on BSDS500 crops (resumable, CPU or CUDA).

Loss: MSE between each tile and its reconstruction from its first k tokens, k drawn uniformly
in 1..K per tile (tail-token drop). Every ``ckpt_every`` steps (and at the end) ``OUT/last.pt``
holds the model, optimizer, step and random states; running again with the same OUT resumes.
``OUT/log.csv`` records loss, PSNR (over all k) and PSNR at k = K/8 and k = K.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dappled.errors import OptionError
from dappled.models.tokens.model import Tokenizer, TokenizerConfig
from dappled.models.training import TrainerBase, learning_rate

LOG_FIELDS = ("step", "loss", "psnr", "psnr_low", "psnr_full", "lr", "seconds")


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in its checkpoints)."""

    out_dir: str
    steps: int = 8000
    batch: int = 16
    lr: float = 1e-3
    lr_final_ratio: float = 0.05
    warmup: int = 200
    weight_decay: float = 1e-4
    clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # 0: torch's default
    model: dict[str, Any] = field(default_factory=lambda: TokenizerConfig().to_dict())
    data_root: str | None = None
    scale: int = 1  # BSDS500 at full size: 64 px tiles hold about as much detail as Kodak's
    limit: int | None = None  # first N BSDS500 images only (tests)
    log_every: int = 25
    ckpt_every: int = 200
    max_minutes: float = 0.0  # stop (with a checkpoint) after this wall time; 0: no limit


def sample_k(batch: int, tokens: int, rng: np.random.Generator) -> np.ndarray:
    """Kept token counts for a batch: uniform in 1..K (tail-token drop)."""
    return rng.integers(1, tokens + 1, batch)


class Trainer(TrainerBase):
    """One training run (see module doc); ``run()`` trains to ``cfg.steps`` and returns the model."""

    log_fields = LOG_FIELDS

    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        if cfg.steps < 1 or cfg.batch < 1:
            raise OptionError("steps and batch must be positive")
        self.setup(cfg, progress)
        self.model = Tokenizer(TokenizerConfig.from_dict(cfg.model)).to(self.device)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "pos" not in n]
        other = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "pos" not in n)]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": other, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        tile = self.model.config.tile
        imgs, _ = self.data.sample(self.cfg.batch, tile, self.rng)
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(255.0)
        k = torch.from_numpy(sample_k(self.cfg.batch, self.model.config.tokens, self.rng))
        return x.to(self.device), k.to(self.device)

    def train_step(self) -> dict[str, float]:
        """One optimizer step; returns the logged figures."""
        cfg = self.cfg
        lr = learning_rate(cfg, self.step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        x, k = self.batch()
        self.model.train()
        x_hat = self.model(x, k)
        mse = ((x_hat - x) ** 2).flatten(1).mean(1)
        loss = mse.mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
        self.opt.step()
        self.step += 1
        psnr = (-10 * torch.log10(mse.detach().clamp_min(1e-10)))
        kk = self.model.config.tokens
        low, full = k <= kk // 8, k > kk - kk // 8
        return {"loss": loss.item(), "psnr": psnr.mean().item(),
                "psnr_low": psnr[low].mean().item() if low.any() else float("nan"),
                "psnr_full": psnr[full].mean().item() if full.any() else float("nan"), "lr": lr}

    def description(self) -> str:
        return "train tokens"

    def postfix(self, row: dict[str, Any]) -> str:
        return (f"loss {row['loss']:.5f} PSNR {row['psnr']:.2f} "
                f"(k<=K/8 {row['psnr_low']:.2f}, k~K {row['psnr_full']:.2f})")

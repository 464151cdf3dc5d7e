"""Training of the tokenizer on BSDS500 crops (resumable, CPU or CUDA).

Loss: MSE between each tile and its reconstruction from its first k tokens, k drawn uniformly
in 1..K per tile (tail-token drop). Every ``ckpt_every`` steps (and at the end) ``OUT/last.pt``
holds the model, optimizer, step and random states; running again with the same OUT resumes.
``OUT/log.csv`` records loss, PSNR (over all k) and PSNR at k = K/8 and k = K.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dappled.errors import OptionError
from dappled.models.tokens.model import Tokenizer, TokenizerConfig

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


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to lr * lr_final_ratio at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.lr_final_ratio + (1 - cfg.lr_final_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def sample_k(batch: int, tokens: int, rng: np.random.Generator) -> np.ndarray:
    """Kept token counts for a batch: uniform in 1..K (tail-token drop)."""
    return rng.integers(1, tokens + 1, batch)


def _mean(values: list[float]) -> float:
    """Mean of the finite values (NaN when there is none)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


class Trainer:
    """One training run (see module doc); ``run()`` trains to ``cfg.steps`` and returns the model."""

    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        if cfg.steps < 1 or cfg.batch < 1:
            raise OptionError("steps and batch must be positive")
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.device = torch.device(cfg.device)
        self.model = Tokenizer(TokenizerConfig.from_dict(cfg.model)).to(self.device)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "pos" not in n]
        other = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "pos" not in n)]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": other, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
        self.step = 0
        self.data: Any = None

    def checkpoint_path(self) -> Path:
        return self.out / "last.pt"

    def save(self) -> None:
        """Write OUT/last.pt atomically."""
        doc = {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "step": self.step,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.cfg).items()},
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }
        tmp = self.checkpoint_path().with_suffix(".pt.part")
        torch.save(doc, tmp)
        os.replace(tmp, self.checkpoint_path())

    def try_resume(self) -> bool:
        """Continue from OUT/last.pt if there is one."""
        path = self.checkpoint_path()
        if not path.exists():
            return False
        ck = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(ck["model"])
        self.model.to(self.device)
        self.opt.load_state_dict(ck["opt"])
        self.step = int(ck["step"])
        self.rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        return True

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

    def run(self, data: Any = None) -> Tokenizer:
        """Train (resuming if OUT/last.pt exists) to cfg.steps; returns the model in eval mode."""
        from tqdm import tqdm

        from dappled.datasets.bsds import BsdsCrops

        cfg = self.cfg
        resumed = self.try_resume()
        if self.step >= cfg.steps:
            return self.model.eval()
        self.data = data if data is not None else BsdsCrops.load(
            ("train", "val"), cfg.data_root, cfg.scale, cfg.limit, progress=self.progress)
        log_path = self.out / "log.csv"
        new_log = not log_path.exists() or not resumed
        t_start = time.perf_counter()
        acc: dict[str, list[float]] = {}
        with open(log_path, "w" if new_log else "a", newline="") as log_file:
            writer = csv.DictWriter(log_file, LOG_FIELDS)
            if new_log:
                writer.writeheader()
            bar = tqdm(total=cfg.steps, initial=self.step, desc="train tokens", unit="step",
                       disable=not self.progress, dynamic_ncols=True, mininterval=5.0)
            try:
                while self.step < cfg.steps:
                    figs = self.train_step()
                    for key, v in figs.items():
                        acc.setdefault(key, []).append(v)
                    bar.update()
                    if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                        row: dict[str, Any] = {key: _mean(v) if key != "lr" else v[-1]
                                               for key, v in acc.items()}
                        row.update(step=self.step, seconds=round(time.perf_counter() - t_start, 1))
                        writer.writerow({key: (f"{row[key]:.6g}" if isinstance(row[key], float) else row[key])
                                         for key in LOG_FIELDS})
                        log_file.flush()
                        bar.set_postfix_str(f"loss {row['loss']:.5f} PSNR {row['psnr']:.2f} "
                                            f"(k<=K/8 {row['psnr_low']:.2f}, k~K {row['psnr_full']:.2f})")
                        acc = {}
                    if self.step % cfg.ckpt_every == 0:
                        self.save()
                    if cfg.max_minutes and time.perf_counter() - t_start > 60 * cfg.max_minutes:
                        break
            finally:
                bar.close()
        self.save()
        return self.model.eval()

"""The training loop the learned codecs share: seeds, resumable checkpoints, CSV log, progress.

A model's trainer subclasses :class:`TrainerBase`, builds its model and optimizer, and supplies
``train_step()`` (one optimizer step, returning the figures to log), ``log_fields`` and
``postfix()``; ``run()`` does the rest. ``OUT/last.pt`` (written atomically every
``ckpt_every`` steps and at the end) holds the model, optimizer, step and random states, and is
read back with ``weights_only=True``; running again with the same OUT resumes.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from dappled.fileio import atomic_open


def mean_finite(values: list[float]) -> float:
    """Mean of the finite values (NaN when there is none, e.g. a figure a stage does not have)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def learning_rate(cfg: Any, step: int) -> float:
    """Linear warm-up over ``cfg.warmup`` steps, then cosine decay from ``cfg.lr`` to
    ``cfg.lr * cfg.lr_final_ratio`` at ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.lr_final_ratio + (1 - cfg.lr_final_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


class TrainerBase:
    """Seeds, checkpoints, the log and the loop of one training run.

    ``cfg`` is a dataclass with at least: out_dir, steps, seed, threads, device, data_root,
    scale, limit, log_every, ckpt_every, max_minutes. Subclasses set ``self.model`` and
    ``self.opt`` after calling :meth:`setup`.
    """

    log_fields: ClassVar[tuple[str, ...]] = ("step", "loss", "lr", "seconds")
    model: torch.nn.Module
    opt: torch.optim.Optimizer

    def setup(self, cfg: Any, progress: bool) -> None:
        """Output folder, torch threads, seeds and device from the config."""
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.device = torch.device(cfg.device)
        self.step = 0
        self.data: Any = None

    # ---------------------------------------------------------------- hooks

    def train_step(self) -> dict[str, float]:
        """One optimizer step; returns the figures to log (keys in ``log_fields``)."""
        raise NotImplementedError

    def postfix(self, row: dict[str, Any]) -> str:
        """The progress bar's text for a logged row."""
        return f"loss {row['loss']:.5f}"

    def description(self) -> str:
        """The progress bar's label."""
        return "train"

    def extra_state(self) -> dict[str, Any]:
        """More to checkpoint (e.g. a second optimizer)."""
        return {}

    def load_extra_state(self, ck: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""

    # ---------------------------------------------------------------- checkpoints

    def checkpoint_path(self) -> Path:
        return self.out / "last.pt"

    def save(self) -> None:
        """Write OUT/last.pt atomically."""
        doc = {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            **self.extra_state(),
            "step": self.step,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.cfg).items()},
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_open(self.checkpoint_path()) as f:
            torch.save(doc, f)

    def try_resume(self) -> bool:
        """Continue from OUT/last.pt if there is one."""
        path = self.checkpoint_path()
        if not path.exists():
            return False
        ck = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(ck["model"])
        self.model.to(self.device)
        self.opt.load_state_dict(ck["opt"])
        self.load_extra_state(ck)
        self.step = int(ck["step"])
        self.rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        return True

    # ---------------------------------------------------------------- the loop

    def run(self, data: Any) -> Any:
        """Train (resuming if OUT/last.pt exists) to cfg.steps; returns the model in eval mode.

        ``data``: the training set (e.g. a :class:`~dappled.datasets.bsds.BsdsCrops`), or a
        function that loads it, called only when there are steps left to train. The trainer
        does not know where data lives: the caller (the CLI, a test) chooses it.
        """
        from tqdm import tqdm

        cfg = self.cfg
        resumed = self.try_resume()
        if self.step >= cfg.steps:
            return self.model.eval()
        self.data = data() if callable(data) else data
        log_path = self.out / "log.csv"
        new_log = not log_path.exists() or not resumed
        t_start = time.perf_counter()
        acc: dict[str, list[float]] = {}
        with open(log_path, "w" if new_log else "a", newline="") as log_file:
            writer = csv.DictWriter(log_file, self.log_fields)
            if new_log:
                writer.writeheader()
            bar = tqdm(total=cfg.steps, initial=self.step, desc=self.description(), unit="step",
                       disable=not self.progress, dynamic_ncols=True, mininterval=2.0)
            try:
                while self.step < cfg.steps:
                    for key, v in self.train_step().items():
                        acc.setdefault(key, []).append(v)
                    bar.update()
                    if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                        row: dict[str, Any] = {key: mean_finite(v) if key != "lr" else v[-1]
                                               for key, v in acc.items()}
                        row.update(step=self.step, seconds=round(time.perf_counter() - t_start, 1))
                        writer.writerow({key: (f"{row[key]:.6g}" if isinstance(row[key], float) else row[key])
                                         for key in self.log_fields})
                        log_file.flush()
                        bar.set_postfix_str(self.postfix(row))
                        acc = {}
                    if self.step % cfg.ckpt_every == 0:
                        self.save()
                    if cfg.max_minutes and time.perf_counter() - t_start > 60 * cfg.max_minutes:
                        break
            finally:
                bar.close()
        self.save()
        return self.model.eval()

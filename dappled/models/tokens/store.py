"""Saving and loading tokenizer weights, with the token prior the codec entropy-codes with.

A weights file is a plain dict (config, float16 state_dict, prior counts, meta) read with
``torch.load(..., weights_only=True)``. The prior is an integer table of counts (K positions x
codebook) of the token ids the shipped encoder gives on BSDS500 tiles: position i of a tile is
coded under the distribution of row i, normalised to 16-bit rANS frequencies with integer
arithmetic (:func:`dappled.entropy.freqs.normalize_weights`), so every machine builds the same
tables.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dappled.fileio import atomic_open
from dappled.models.tokens.model import Tokenizer, TokenizerConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"
# model id (stored in streams; never renumber) -> weights file name
MODELS: dict[int, str] = {0: "tokens.pt"}
MODEL_NAMES: dict[str, int] = {"tokens": 0}
FORMAT = "dappled-tokens-weights"


def token_counts(model: Tokenizer, data: Any, n_tiles: int = 8192, seed: int = 1,
                 batch: int = 256) -> np.ndarray:
    """Counts (K, codebook) of the token ids of ``n_tiles`` random BSDS500 tiles."""
    c = model.config
    rng = np.random.default_rng(seed)
    counts = np.zeros((c.tokens, c.codebook), np.int64)
    model = model.eval()
    done = 0
    with torch.no_grad():
        while done < n_tiles:
            b = min(batch, n_tiles - done)
            imgs, _ = data.sample(b, c.tile, rng)
            x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(255.0)
            ids = model.encode(x).numpy()
            for i in range(c.tokens):
                counts[i] += np.bincount(ids[:, i], minlength=c.codebook)
            done += b
    return counts


def prior_weights(counts: np.ndarray) -> np.ndarray:
    """Smoothed integer weights per position: 16 x own counts + the all-position counts / K + 1,
    so ids unseen at one position (but seen elsewhere) stay cheap and none costs infinity."""
    counts = np.asarray(counts, np.int64)
    pooled = counts.sum(0, keepdims=True) // max(1, counts.shape[0])
    return 16 * counts + pooled + 1


def export_model(model: Tokenizer, path: str | os.PathLike[str], counts: np.ndarray,
                 meta: dict[str, Any] | None = None) -> Path:
    """Save float16 weights, the prior counts and meta atomically (the counts must come from the
    float16-rounded model: use :func:`round_half` before :func:`token_counts`)."""
    model = model.cpu().eval()
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous()
             for k, v in model.state_dict().items()}
    doc = {"format": FORMAT, "config": model.config.to_dict(), "state_dict": state,
           "prior_counts": torch.from_numpy(np.asarray(counts, np.int64)), "meta": meta or {}}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as f:
        torch.save(doc, f)
    return out


def round_half(model: Tokenizer) -> Tokenizer:
    """Round the float parameters to float16 in place (what a shipped file stores)."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    return model


class ShippedModel:
    """A loaded tokenizer with its prior (per-position rANS tables, built once)."""

    def __init__(self, model: Tokenizer, counts: np.ndarray, meta: dict[str, Any]) -> None:
        from dappled.entropy.freqs import normalize_weights
        from dappled.entropy.rans import CdfTable

        self.model = model
        self.counts = counts
        self.meta = meta
        weights = prior_weights(counts)
        self.tables = [CdfTable.from_freqs(normalize_weights(w)) for w in weights]
        freqs = np.stack([t.array()[1:] - t.array()[:-1] for t in self.tables]).astype(np.float64)
        self.bits = -np.log2(freqs / 65536.0)  # (K, codebook) cost in bits of each id per position

    @property
    def config(self) -> TokenizerConfig:
        return self.model.config


def load_file(path: str | os.PathLike[str]) -> ShippedModel:
    """A model from a weights file (float32 in memory, eval mode)."""
    doc = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a tokens weights file")
    model = Tokenizer(TokenizerConfig.from_dict(doc["config"]))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in doc["state_dict"].items()}
    model.load_state_dict(state)
    counts = doc["prior_counts"].numpy().astype(np.int64)
    c = model.config
    if counts.shape != (c.tokens, c.codebook) or counts.min() < 0:
        raise ValueError(f"{path}: prior counts have the wrong shape")
    return ShippedModel(model.eval(), counts, dict(doc.get("meta", {})))


@lru_cache(maxsize=2)
def load_shipped(model_id: int) -> ShippedModel:
    """The shipped model with this id (cached per process)."""
    if model_id not in MODELS:
        raise KeyError(model_id)
    path = WEIGHTS_DIR / MODELS[model_id]
    if not path.exists():
        raise FileNotFoundError(f"{path}: tokens weights are not installed")
    return load_file(path)

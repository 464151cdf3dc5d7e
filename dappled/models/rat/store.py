"""Saving and loading rat weights: a plain dict of config + state_dict, read with weights_only.

Shipped files hold float parameters in float16 (half the size; the entropy bottleneck's
quantiles stay float32) and the CDF tables as the integers that ``update()`` built from exactly
the stored parameters, so every process and every machine entropy-codes with identical tables.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from dappled.fileio import atomic_open
from dappled.models.rat.model import RatConfig, RatModel

WEIGHTS_DIR = Path(__file__).parent / "weights"
# model id (stored in streams; never renumber) -> weights file name
MODELS: dict[int, str] = {0: "rat.pt", 1: "rat-noregion.pt"}
MODEL_NAMES: dict[str, int] = {"rat": 0, "noregion": 1}
FORMAT = "dappled-rat-weights"


def export_model(model: RatModel, path: str | os.PathLike[str], meta: dict[str, Any] | None = None,
                 half: bool = True) -> Path:
    """Round the float weights to float16 (if ``half``), refit the entropy bottleneck's
    quantiles (CompressAI's bisection, more precise than the aux loss), rebuild the CDF tables
    from exactly what is stored, save. Quantiles and the scale table stay float32."""
    model = model.cpu().eval()
    keep32 = ("quantiles", "scale_table")
    if half:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if not name.endswith(keep32):
                    p.copy_(p.half().float())
    model.entropy_bottleneck._update_quantiles()
    model.update(force=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point() and not k.endswith(keep32):
            v = v.half()
        state[k] = v.contiguous()
    doc = {"format": FORMAT, "config": model.config.to_dict(), "state_dict": state, "meta": meta or {}}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as f:
        torch.save(doc, f)
    return out


def load_file(path: str | os.PathLike[str]) -> tuple[RatModel, dict[str, Any]]:
    """A model from a weights file (float32 in memory, eval mode, CDF tables as stored)."""
    doc = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a rat weights file")
    model = RatModel(RatConfig.from_dict(doc["config"]))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in doc["state_dict"].items()}
    model.load_state_dict(state)
    return model.eval(), dict(doc.get("meta", {}))


@lru_cache(maxsize=4)
def load_shipped(model_id: int) -> RatModel:
    """The shipped model with this id (cached per process)."""
    if model_id not in MODELS:
        raise KeyError(model_id)
    path = WEIGHTS_DIR / MODELS[model_id]
    if not path.exists():
        raise FileNotFoundError(f"{path}: rat weights are not installed")
    return load_file(path)[0]

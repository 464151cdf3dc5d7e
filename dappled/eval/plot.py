"""Rate-distortion plot of a run -> ``DIR/rd.png``: PSNR vs bpp and MS-SSIM (dB) vs bpp.

Our codecs are solid lines with filled markers, classical baselines dashed with open markers,
and published reference curves (``dappled/eval/published/*.json``, drawn when the run's data
set matches theirs) dotted grey-ish lines labelled "(published)".
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dappled.eval.bdrate import msssim_db
from dappled.eval.summary import Curve
from dappled.fileio import atomic_write_bytes

PUBLISHED_DIR = Path(__file__).parent / "published"
RD_PNG = "rd.png"


def load_published(dataset: str | None = None) -> list[dict[str, Any]]:
    """Published reference curves (optionally only those measured on ``dataset``), by file name."""
    curves = []
    for path in sorted(PUBLISHED_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        if len(doc["bpp"]) != len(doc["psnr"]):
            raise ValueError(f"{path}: bpp and psnr lists differ in length")
        if dataset is None or doc["dataset"] == dataset:
            curves.append(doc)
    return curves


def plot_rd(curves: Sequence[Curve], path: str | os.PathLike[str], title: str,
            published: Sequence[dict[str, Any]] = ()) -> Path:
    """Draw the run's mean curves (and published ones) into a PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_m) = plt.subplots(1, 2, figsize=(13, 5.2))
    ours_cycle = iter(["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"])
    base_cycle = iter(["#444444", "#ff7f0e", "#17becf", "#bcbd22", "#7f7f7f", "#8c564b", "#1f77b4"])
    pub_cycle = iter(["#9e9ac8", "#a1d99b", "#fdae6b", "#c994c7", "#9ecae1"])
    markers = iter("osD^vP*Xh<>p")
    for c in curves:
        pts = c.points
        if not pts:
            continue
        x = [p.bpp for p in pts]
        style: dict[str, Any] = {"marker": next(markers, "o"), "markersize": 5}
        if c.baseline:
            style.update(color=next(base_cycle, None), linestyle="--", markerfacecolor="none")
        else:
            style.update(color=next(ours_cycle, None), linestyle="-", linewidth=2.2)
        ax_p.plot(x, [p.psnr for p in pts], label=c.label, **style)
        ax_m.plot(x, [msssim_db(p.ms_ssim) for p in pts], label=c.label, **style)
    for doc in published:
        color = next(pub_cycle, None)
        label = f"{doc['label']} (published)"
        style = {"color": color, "linestyle": ":", "linewidth": 2, "marker": "x", "markersize": 5}
        ax_p.plot(doc["bpp"], doc["psnr"], label=label, **style)
        if doc.get("ms_ssim"):
            ax_m.plot(doc["bpp"], [msssim_db(v) for v in doc["ms_ssim"]], label=label, **style)
    ax_p.set(xlabel="rate (bpp)", ylabel="PSNR RGB (dB)", title=f"{title}: PSNR")
    ax_m.set(xlabel="rate (bpp)", ylabel="MS-SSIM (dB) = -10 log10(1 - MS-SSIM)",
             title=f"{title}: MS-SSIM")
    for ax in (ax_p, ax_m):
        ax.grid(True, alpha=0.3)
        ax.set_xlim(left=0)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    out = Path(path)
    atomic_write_bytes(out, buf.getvalue())
    return out

"""Refresh a marked section of a Markdown report (e.g. docs/results.md) from an eval run.

The section lies between ``<!-- eval:NAME:start -->`` and ``<!-- eval:NAME:end -->``; only
that text is replaced, the rest of the file is kept byte for byte. A missing section is
appended at the end (a missing file is created). The run's plot is copied beside the report
as ``img/rd-NAME.png`` and linked from the section.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from dappled.errors import InputError, OptionError
from dappled.fileio import atomic_write_bytes

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of section ``name``."""
    if not _NAME.match(name):
        raise OptionError(f"report section name {name!r}: use letters, digits, '.', '_' or '-'")
    return f"<!-- eval:{name}:start -->", f"<!-- eval:{name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with section ``name`` holding ``body`` (appended if the section is absent)."""
    start, end = markers(name)
    block = f"{start}\n{body.rstrip()}\n{end}"
    i = text.find(start)
    if i < 0:
        if end in text:
            raise InputError(f"report has {end} without {start}")
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return f"{text}{sep}{block}\n"
    j = text.find(end, i + len(start))
    if j < 0:
        raise InputError(f"report has {start} without {end}")
    if text.find(start, i + len(start)) >= 0:
        raise InputError(f"report has two {start} markers")
    return text[:i] + block + text[j + len(end):]


def machine_description() -> str:
    """E.g. '2-core x86-64 CPU, no GPU' (the GPU's name when CUDA is available)."""
    arch = {"x86_64": "x86-64", "AMD64": "x86-64", "aarch64": "arm64"}.get(platform.machine(),
                                                                         platform.machine())
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"GPU {torch.cuda.get_device_name(0)}"
    except Exception:  # torch missing or broken CUDA setup: report no GPU
        pass
    return f"{os.cpu_count()}-core {arch} CPU, {gpu}"


@dataclass
class RunInfo:
    """What the report says about how a run was made."""

    command: str
    dataset: str
    n_images: int
    out_dir: str
    machine: str = ""
    date: str = ""

    def __post_init__(self) -> None:
        if not self.machine:
            self.machine = machine_description()
        if not self.date:
            self.date = _dt.datetime.now(_dt.timezone.utc).date().isoformat()


def section_body(info: RunInfo, summary_md: str, image_rel: str | None) -> str:
    """The Markdown of one run's section (the summary without its top heading)."""
    lines = [
        f"Command: `{info.command}`",
        "",
        f"Machine: {info.machine}. Date: {info.date}. Data: {info.dataset}, {info.n_images} images. "
        f"Results: `{info.out_dir}/results.csv`.",
        "",
        summary_md.rstrip(),
    ]
    if image_rel:
        lines += ["", f"![rate-distortion curves]({image_rel})"]
    return "\n".join(lines) + "\n"


def update_report(report: str | os.PathLike[str], name: str, info: RunInfo, summary_md: str,
                  plot: str | os.PathLike[str] | None = None) -> Path:
    """Refresh section ``name`` of ``report`` from a run; copies the plot to img/rd-NAME.png."""
    path = Path(report)
    markers(name)  # validate early
    try:
        text = path.read_text() if path.exists() else "# Results\n"
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    image_rel = None
    if plot is not None:
        img = path.parent / "img" / f"rd-{name}.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(img, Path(plot).read_bytes())
        image_rel = f"img/{img.name}"
    body = section_body(info, summary_md, image_rel)
    atomic_write_bytes(path, replace_section(text, name, body).encode())
    return path

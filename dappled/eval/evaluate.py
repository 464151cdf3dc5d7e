"""`dappled eval` as one library call: plan, sweep (resumable), summarise, plot, report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dappled.codec import registry
from dappled.errors import OptionError
from dappled.eval.summary import Curve


@dataclass
class EvalSpec:
    """What to evaluate and where to put the results."""

    codecs: Sequence[str]
    dataset: str = "kodak"
    points: int = 5
    params: Sequence[str] = ()
    out_dir: str | None = None
    jobs: int = 1
    ray: str | None = None  # Ray cluster address (local, auto, HOST:PORT, ray://...): points as Ray tasks
    anchor: str = registry.IMAGE_ANCHOR
    data_root: str | None = None
    limit: int | None = None
    device: str = "cpu"
    seed: int = 0
    report: str | None = None
    report_section: str | None = None
    command: str = ""
    progress: bool = True


@dataclass
class EvalResult:
    """Where the outputs went and what the run did."""

    out_dir: Path
    summary: Path
    plot: Path
    report: Path | None
    ran: int
    skipped: int
    curves: list[Curve] = field(default_factory=list)


def dataset_label(dataset: str) -> str:
    """The name a data set goes by in tables: the named set, else the folder's (or file's) name."""
    from dappled.datasets.images import NAMED_SETS

    if dataset in NAMED_SETS:
        return dataset
    return Path(dataset).resolve().name or dataset


def evaluate(spec: EvalSpec) -> EvalResult:
    """Run (or resume) a rate-distortion evaluation and write results, summary, plot, report."""
    from dappled.codec.api import check_device
    from dappled.datasets.images import dataset_images
    from dappled.eval import plot, report, summary, sweep

    if spec.ray is None:
        check_device(spec.device)
    elif spec.device not in ("cpu", "cuda"):  # on a cluster, the workers have the GPUs (or not)
        raise OptionError(f"device must be cpu or cuda, got {spec.device!r}")
    if spec.limit is not None and spec.limit < 1:
        raise OptionError(f"--limit must be at least 1, got {spec.limit}")
    if spec.jobs < 1:
        raise OptionError(f"--jobs must be at least 1, got {spec.jobs}")
    if spec.report_section is not None:
        report.markers(spec.report_section)
    series = sweep.plan_series(spec.codecs, spec.points, spec.params)
    files = dataset_images(spec.dataset, spec.data_root)
    if spec.limit is not None:
        files = files[: spec.limit]
    images = sweep.image_refs(files)
    label = dataset_label(spec.dataset)
    out = Path(spec.out_dir) if spec.out_dir else Path("runs") / label

    outcome = sweep.run_sweep(series, images, out, jobs=spec.jobs, ray=spec.ray, device=spec.device,
                              seed=spec.seed, dataset=label, progress=spec.progress)
    curves = summary.mean_curves(outcome.rows, n_images=len(images))
    md = summary.summary_markdown(curves, spec.anchor, label, len(images), rows=outcome.rows)
    summary_path = summary.write_summary(out, md)
    plot_path = plot.plot_rd(curves, out / plot.RD_PNG, f"{label} ({len(images)} images)",
                             plot.load_published(label))
    report_path = None
    if spec.report:
        info = report.RunInfo(spec.command or "dappled eval", label, len(images), str(out))
        section = spec.report_section or label
        body = summary.summary_markdown(curves, spec.anchor, label, len(images), heading=False,
                                        rows=outcome.rows)
        report_path = report.update_report(spec.report, section, info, body, plot_path)
    return EvalResult(out, summary_path, plot_path, report_path, outcome.ran, outcome.done_before, curves)

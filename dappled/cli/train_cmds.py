"""`dappled train ...`: train the learned codecs (parse options, then call dappled.models)."""

from __future__ import annotations

import shlex
import sys

import click

from dappled.cli.main import friendly_errors


@click.group("train")
def train_group() -> None:
    """Train the learned codecs' models (resumable; see docs/models.md for the shipped runs)."""


@train_group.command("rat")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder: last.pt (resumable checkpoint) and log.csv.")
@click.option("--stage", type=click.Choice(["main", "shallow"]), default="main", show_default=True,
              help="main: the whole model; shallow: the shallow synthesis against a frozen --init model.")
@click.option("--steps", type=int, default=3000, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--crop", type=int, default=128, show_default=True, help="Crop side (multiple of 64).")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Peak learning rate (cosine decay).")
@click.option("--channels", "-N", "n", type=int, default=64, show_default=True, help="Transform channels.")
@click.option("--latent", "-M", "m", type=int, default=96, show_default=True, help="Latent channels.")
@click.option("--lambdas", default="0.004,0.008,0.016,0.032", show_default=True,
              help="MSE weight (x 255^2) of each rate point, low to high rate (= --quality 1..).")
@click.option("--no-rat", is_flag=True, help="Ablation: no region-adaptive transforms.")
@click.option("--shallow-channels", type=int, default=0, show_default=True,
              help="Channels of the shallow synthesis (0: none; needed for --stage shallow).")
@click.option("--init", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Checkpoint to start from (last.pt of a main run, for --stage shallow).")
@click.option("--grid-prob", type=float, default=0.5, show_default=True,
              help="Share of crops trained with grid regions instead of the human segmentations.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=int, default=0, help="Torch CPU threads (default: torch's choice).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Folder holding bsds500/ (default $DAPPLED_DATA or ../shared/data).")
@click.option("--max-minutes", type=float, default=0.0,
              help="Stop (checkpointed, resumable) after this wall time.")
@click.option("--export", type=click.Path(dir_okay=False), default=None,
              help="After training, write the weights file the codec loads (e.g. "
                   "dappled/models/rat/weights/rat.pt).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def train_rat(out_dir: str, stage: str, steps: int, batch: int, crop: int, lr: float, n: int, m: int,
              lambdas: str, no_rat: bool, shallow_channels: int, init: str | None, grid_prob: float,
              seed: int, device: str, threads: int, data_root: str | None, max_minutes: float,
              export: str | None, quiet: bool) -> None:
    """Train the rat model (learned hyperprior with region-adaptive transforms) on BSDS500."""
    from dappled.codec.api import check_device
    from dappled.errors import OptionError
    from dappled.models.rat.model import RatConfig
    from dappled.models.rat.store import export_model
    from dappled.models.rat.train import TrainConfig, Trainer

    check_device(device)
    try:
        lams = tuple(float(v) for v in lambdas.split(","))
    except ValueError:
        raise OptionError(f"--lambdas wants numbers separated by commas, got {lambdas!r}") from None
    if not lams or any(v <= 0 for v in lams) or list(lams) != sorted(lams):
        raise OptionError("--lambdas must be positive and increasing")
    if steps < 1 or batch < 1:
        raise OptionError("--steps and --batch must be positive")
    mcfg = RatConfig(N=n, M=m, lambdas=lams, use_rat=not no_rat, shallow_channels=shallow_channels)
    cfg = TrainConfig(out_dir=out_dir, stage=stage, steps=steps, batch=batch, crop=crop, lr=lr, seed=seed,
                      device=device, threads=threads, model=mcfg.to_dict(), init=init, grid_prob=grid_prob,
                      data_root=data_root, max_minutes=max_minutes)
    trainer = Trainer(cfg, progress=not quiet)
    model = trainer.run()
    click.echo(f"{out_dir}: step {trainer.step}/{steps}, checkpoint {trainer.checkpoint_path()}")
    if export:
        if trainer.step < steps:
            click.echo(f"note: stopped at step {trainer.step} of {steps} (--max-minutes); exporting that "
                       "checkpoint (run again without --max-minutes to resume)")
        meta = {"command": shlex.join(["dappled", *sys.argv[1:]]), "steps": trainer.step,
                "planned_steps": steps, "stage": stage, "seed": seed, "batch": batch, "crop": crop}
        path = export_model(model, export, meta)
        click.echo(f"weights: {path} ({path.stat().st_size / 1e6:.2f} MB)")


commands = [train_group]

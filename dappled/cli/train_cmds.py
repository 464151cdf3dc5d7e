"""`dappled train ...`: train the learned codecs (parse options, then call dappled.models)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

from dappled.cli.main import friendly_errors


def _threads_option(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """--threads checked by the one thread-count rule (dappled.threads): 0..cores."""
    from dappled.errors import OptionError
    from dappled.threads import parse_threads

    try:
        return parse_threads(value, "--threads", allow_zero=True)
    except OptionError as exc:
        raise click.BadParameter(str(exc)) from None


def _run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every training run has: seed, device, threads, data root, wall-time limit."""
    for option in reversed((
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True),
        click.option("--threads", type=int, default=0, callback=_threads_option,
                     help="Torch CPU threads, at most the cores (default: torch's choice)."),
        click.option("--data-root", type=click.Path(file_okay=False), default=None,
                     help="Folder holding bsds500/ (default $DAPPLED_DATA or ../shared/data)."),
        click.option("--max-minutes", type=float, default=0.0,
                     help="Stop (checkpointed, resumable) after this wall time."),
    )):
        fn = option(fn)
    return fn


def _train(trainer: Any, export: str | None) -> Any:
    """Run a trainer and say where it stopped; returns the model."""
    from dappled.datasets.bsds import BsdsCrops

    cfg = trainer.cfg
    model = trainer.run(lambda: BsdsCrops.load(("train", "val"), cfg.data_root, cfg.scale, cfg.limit,
                                               progress=trainer.progress))
    steps = trainer.cfg.steps
    click.echo(f"{trainer.cfg.out_dir}: step {trainer.step}/{steps}, checkpoint {trainer.checkpoint_path()}")
    if export and trainer.step < steps:
        click.echo(f"note: stopped at step {trainer.step} of {steps} (--max-minutes); exporting that "
                   "checkpoint (run again without --max-minutes to resume)")
    return model


def _export_meta(trainer: Any, **extra: Any) -> dict[str, Any]:
    """What a weights file records of the run that made it: the command line, steps, settings."""
    return {"command": shlex.join(["dappled", *sys.argv[1:]]), "steps": trainer.step,
            "planned_steps": trainer.cfg.steps, **extra}


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
@_run_options
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
    model = _train(trainer, export)
    if export:
        meta = _export_meta(trainer, stage=stage, seed=seed, batch=batch, crop=crop)
        path = export_model(model, export, meta)
        click.echo(f"weights: {path} ({path.stat().st_size / 1e6:.2f} MB)")


@train_group.command("tokens")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder: last.pt (resumable checkpoint) and log.csv.")
@click.option("--steps", type=int, default=8000, show_default=True)
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Peak learning rate (cosine decay).")
@click.option("--tile", type=int, default=64, show_default=True, help="Tile side in pixels.")
@click.option("--patch", type=int, default=8, show_default=True, help="ViT patch side in pixels.")
@click.option("--width", type=int, default=128, show_default=True, help="Transformer width.")
@click.option("--enc-layers", type=int, default=3, show_default=True)
@click.option("--dec-layers", type=int, default=3, show_default=True)
@click.option("--tokens", "n_tokens", type=int, default=64, show_default=True, help="K, tokens per tile.")
@click.option("--scale", type=int, default=1, show_default=True,
              help="Downscale BSDS500 by this factor (1: full size, closest to Kodak's detail per tile).")
@click.option("--levels", default="8,5,5,5", show_default=True, help="FSQ levels per token dimension.")
@_run_options
@click.option("--export", type=click.Path(dir_okay=False), default=None,
              help="After training, write the weights file (with the token prior) the codec loads "
                   "(e.g. dappled/models/tokens/weights/tokens.pt).")
@click.option("--prior-tiles", type=int, default=8192, show_default=True,
              help="BSDS500 tiles whose token ids make the shipped prior (with --export).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def train_tokens(out_dir: str, steps: int, batch: int, lr: float, tile: int, patch: int, width: int,
                 enc_layers: int, dec_layers: int, n_tokens: int, scale: int, levels: str, seed: int,
                 device: str,
                 threads: int, data_root: str | None, max_minutes: float, export: str | None,
                 prior_tiles: int, quiet: bool) -> None:
    """Train the tokens codec's 1D tokenizer (FSQ, tail-token drop) on BSDS500 tiles."""
    from dappled.codec.api import check_device
    from dappled.errors import OptionError
    from dappled.models.tokens.model import TokenizerConfig
    from dappled.models.tokens.train import TrainConfig, Trainer

    check_device(device)
    try:
        lv = tuple(int(v) for v in levels.split(","))
    except ValueError:
        raise OptionError(f"--levels wants integers separated by commas, got {levels!r}") from None
    if not lv or any(v < 2 for v in lv) or tile % patch or width % 4 or n_tokens < 1 or scale < 1:
        raise OptionError("need levels >= 2, tile a multiple of patch, width a multiple of 4, tokens >= 1, "
                          "scale >= 1")
    mcfg = TokenizerConfig(tile=tile, patch=patch, width=width, enc_layers=enc_layers, dec_layers=dec_layers,
                           tokens=n_tokens, levels=lv)
    cfg = TrainConfig(out_dir=out_dir, steps=steps, batch=batch, lr=lr, seed=seed, device=device,
                      threads=threads, model=mcfg.to_dict(), data_root=data_root, max_minutes=max_minutes,
                      scale=scale)
    trainer = Trainer(cfg, progress=not quiet)
    model = _train(trainer, export)
    if export:
        from dappled.datasets.bsds import BsdsCrops
        from dappled.models.tokens.store import export_model, round_half, token_counts

        data = trainer.data if trainer.data is not None else BsdsCrops.load(
            ("train", "val"), data_root, cfg.scale, progress=not quiet)
        model = round_half(model.cpu())
        counts = token_counts(model, data, prior_tiles)
        meta = _export_meta(trainer, seed=seed, batch=batch, prior_tiles=prior_tiles)
        path = export_model(model, export, counts, meta)
        click.echo(f"weights: {path} ({path.stat().st_size / 1e6:.2f} MB)")


commands = [train_group]

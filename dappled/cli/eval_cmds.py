"""`dappled eval` (rate-distortion sweeps) and `dappled bench` (decode speed): parse, then call
dappled.eval."""

from __future__ import annotations

import shlex

import click

from dappled.cli.main import friendly_errors
from dappled.codec import registry

PARAM_HELP = ("Rate points or options of one codec, repeatable: CODEC:quality=10,20,50, CODEC:bpp=0.43,0.72 "
              "(replaces the --points sweep for that codec) or CODEC:KEY=VALUE, a codec option for all "
              "its points (e.g. jpeg:subsampling=444).")


@click.command("eval")
@click.option("--dataset", default="kodak", show_default=True,
              help="kodak, bsds-test (under --data-root) or a folder / file of images.")
@click.option("--codec", "codecs", multiple=True,
              help="Codec to evaluate, repeatable (see `dappled codecs`; with --video, default: "
                   f"{registry.DEFAULT_VIDEO_CODEC} and the video baselines).")
@click.option("--points", type=int, default=5, show_default=True,
              help="Rate points per codec (the codec's own spread; see --param).")
@click.option("--param", "params", multiple=True, metavar="CODEC:KEY=V[,V...]", help=PARAM_HELP)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (results.csv/json, summary.md, rd.png). Default runs/DATASET.")
@click.option("--jobs", "-j", type=int, default=1, show_default=True,
              help="Parallel worker processes (over images and points).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run the points as Ray tasks (one CPU each) on a cluster: local (start Ray here), auto, "
                   "HOST:PORT or ray://HOST:PORT (with local, -j N sets its CPUs). Needs "
                   "pip install 'dappled[ray]'; see docs/scale.md.")
@click.option("--anchor", default=None,
              help=f"Reference curve of the BD table (default {registry.IMAGE_ANCHOR}; with --video "
                   f"{registry.VIDEO_ANCHORS[0]}).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Folder of the named data sets (default $DAPPLED_DATA or ../shared/data).")
@click.option("--limit", type=int, default=None, help="Use only the first K images (sorted by name).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Markdown file whose eval section to refresh (e.g. docs/results.md).")
@click.option("--report-section", default=None,
              help="Section name: the text between <!-- eval:NAME:start/end --> (default: data set).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--video", "videos", multiple=True,
              help="Video RD instead of images: a clip (e.g. bikes.mp4, looked up in DATA/video too) or a "
                   "folder of clips, repeatable.")
@click.option("--kbps", "kbps", multiple=True, metavar="[CLIP[:CODEC]=]R1,R2,...",
              help="Video: target rates in kbps (per clip name or for all, optionally one codec); "
                   "default 0.05..0.4 bit/pixel/frame (motion JPEG: 1.2..5).")
@click.option("--gop", type=int, default=25, show_default=True, help="Video: group length of every codec.")
@click.option("--frames", "n_frames", type=int, default=100, show_default=True,
              help="Video: first N frames of each clip (0 = all).")
@friendly_errors
def eval_cmd(dataset: str, codecs: tuple[str, ...], points: int, params: tuple[str, ...],
             out_dir: str | None, jobs: int, ray_address: str | None, anchor: str | None,
             data_root: str | None,
             limit: int | None, device: str, seed: int, report: str | None, report_section: str | None,
             quiet: bool, videos: tuple[str, ...], kbps: tuple[str, ...], gop: int, n_frames: int) -> None:
    """Rate-distortion evaluation of codecs on an image set (resumable).

    Every (codec, rate point, image) is encoded and decoded once; results go to
    OUT/results.csv and OUT/results.json as they finish, and a re-run skips the finished
    points. Then OUT/summary.md (mean curves, BD-rate/BD-PSNR against --anchor) and OUT/rd.png.

    \b
    Example:
      dappled eval --dataset kodak --codec jpeg --codec webp --param jpeg:quality=20,50 -j 2
    """
    if videos:
        if ray_address is not None:
            from dappled.errors import OptionError

            raise OptionError("--ray is for image evaluations (not --video)")
        _eval_video(videos, codecs, kbps, gop, n_frames, params, out_dir, anchor, report, report_section,
                    seed, quiet)
        return
    if not codecs:
        from dappled.errors import OptionError

        raise OptionError("give at least one --codec")
    from dappled.eval.evaluate import EvalSpec, evaluate

    # The command as the report shows it: the parsed options, so it reads the same however typed.
    words = ["dappled", "eval", "--dataset", dataset]
    words += [w for c in codecs for w in ("--codec", c)]
    words += ["--points", str(points)]
    words += [w for p in params for w in ("--param", p)]
    words += ["--out", out_dir] if out_dir else []
    words += ["--jobs", str(jobs)] if jobs != 1 else []
    words += ["--ray", ray_address] if ray_address is not None else []
    anchor = anchor or registry.IMAGE_ANCHOR
    words += ["--anchor", anchor] if anchor != registry.IMAGE_ANCHOR else []
    words += ["--limit", str(limit)] if limit is not None else []
    words += ["--data-root", data_root] if data_root else []
    words += ["--device", device] if device != "cpu" else []
    words += ["--seed", str(seed)] if seed else []
    command = " ".join(shlex.quote(w) for w in words)
    result = evaluate(EvalSpec(
        codecs=codecs, dataset=dataset, points=points, params=params, out_dir=out_dir, jobs=jobs,
        ray=ray_address, anchor=anchor, data_root=data_root, limit=limit, device=device, seed=seed,
        report=report, report_section=report_section, command=command, progress=not quiet,
    ))
    click.echo(f"{result.ran} point(s) run, {result.skipped} already done")
    click.echo(f"results: {result.out_dir}/results.csv, {result.out_dir}/results.json")
    click.echo(f"summary: {result.summary}")
    click.echo(f"plot:    {result.plot}")
    if result.report is not None:
        click.echo(f"report:  {result.report}")


@click.command("bench")
@click.option("--codec", "codecs", multiple=True, help="Codec to time, repeatable (default: all).")
@click.option("--image", "image_path", type=click.Path(dir_okay=False), default=None,
              help="Image to code (default: the bundled kodim23.png, 768x512).")
@click.option("--runs", type=int, default=20, show_default=True, help="Timed decodes (median reported).")
@click.option("--warmup", type=int, default=2, show_default=True, help="Untimed decodes first.")
@click.option("--param", "params", multiple=True, metavar="CODEC:KEY=VALUE",
              help="Encode setting of one codec, repeatable: CODEC:quality=N, CODEC:bpp=B or an option.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def bench_cmd(codecs: tuple[str, ...], image_path: str | None, runs: int, warmup: int,
              params: tuple[str, ...], device: str, quiet: bool) -> None:
    """Decode speed (frames per second at native size, median of RUNS) and encode time per codec."""
    from dappled.codec import registry
    from dappled.datasets.images import SAMPLE_IMAGE, load_image
    from dappled.eval.bench import bench, format_table, parse_settings

    names = list(codecs) or registry.names(streams=True)
    for name in names:
        if name not in registry.names():
            registry.get(name)  # raises the unknown-codec OptionError
    settings = parse_settings(names, params)
    image = load_image(image_path or SAMPLE_IMAGE)
    rows, skipped = bench(names, image, runs=runs, warmup=warmup, device=device, settings=settings,
                          progress=not quiet, skip_errors=not codecs)
    click.echo(format_table(rows))
    for note in skipped:
        click.echo(f"skipped {note}")


def _eval_video(videos: tuple[str, ...], codecs: tuple[str, ...], kbps: tuple[str, ...], gop: int,
                n_frames: int, params: tuple[str, ...], out_dir: str | None, anchor: str | None,
                report: str | None, report_section: str | None, seed: int, quiet: bool) -> None:
    """`dappled eval --video`: the video RD run (dappled.eval.video)."""
    from dappled.errors import OptionError
    from dappled.eval.video import VideoEvalSpec, clip_paths, default_codecs, evaluate_video, parse_rates

    clips = [str(p) for v in videos for p in clip_paths(v)]
    codecs = codecs or default_codecs()
    options: dict[str, dict[str, str]] = {}
    for item in params:  # CODEC:KEY=VALUE encoder options
        name, _, kv = item.partition(":")
        if name not in codecs or "=" not in kv:
            raise OptionError(f"with --video, --param takes CODEC:KEY=VALUE for a codec of the run, "
                              f"got {item!r}")
        k, v = kv.split("=", 1)
        options.setdefault(name, {})[k.strip()] = v.strip()
    if seed:
        for name in codecs:
            if registry.get(name).writes_streams:
                options.setdefault(name, {})["seed"] = str(seed)
    words = ["dappled", "eval"] + [w for v in videos for w in ("--video", v)]
    words += [w for c in codecs for w in ("--codec", c)]
    words += [w for k in kbps for w in ("--kbps", k)] + ["--gop", str(gop), "--frames", str(n_frames)]
    words += [w for p in params for w in ("--param", p)]
    words += ["--out", out_dir] if out_dir else []
    result = evaluate_video(VideoEvalSpec(
        clips=clips, codecs=codecs, kbps=parse_rates(kbps), gop=gop, frames=n_frames or None,
        out_dir=out_dir, anchor=anchor or registry.VIDEO_ANCHORS[0], report=report,
        report_section=report_section, command=" ".join(shlex.quote(w) for w in words),
        progress=not quiet, options=options,
    ), log=click.echo)
    click.echo(f"{result.ran} point(s) run, {result.skipped} already done")
    click.echo(f"results: {result.out_dir}/results.json, {result.out_dir}/frames.csv")
    click.echo(f"summary: {result.summary}")
    click.echo(f"plot:    {result.plot}")
    if result.frames_plot is not None:
        click.echo(f"frames:  {result.frames_plot}")
    if result.report is not None:
        click.echo(f"report:  {result.report}")


commands = [eval_cmd, bench_cmd]

"""`dappled` commands: encode, decode, info, demo (eval and bench live in their own modules)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from dappled.codec import registry
from dappled.errors import DappledError, OptionError, out_of_memory

EXIT_BAD_INPUT = 1
EXIT_USAGE = 2  # a bad option value (click's own usage errors exit 2 too)
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, what a shell reports


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn DappledError into a one-line message and exit status 1 (no traceback); a bad option
    value (OptionError) is a usage error and exits 2, as click's own usage errors do. Running out
    of memory (torch, numpy, numba) is one line and exit 1; Ctrl-C is one line and exit 130 (as a
    shell reports SIGINT). Outputs are written atomically, so neither leaves a partial file."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("dappled: error: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except OptionError as exc:
            click.echo(f"dappled: error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except DappledError as exc:
            click.echo(f"dappled: error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except OSError as exc:  # e.g. an output folder that does not exist, a full disk
            name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            click.echo(f"dappled: error: {name}{exc.strerror or exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except (MemoryError, RuntimeError) as exc:  # never a traceback for an allocation that failed
            if not out_of_memory(exc):
                raise
            click.echo(f"dappled: error: out of memory ({_first_line(exc)}): the input or the options need "
                       "more memory than this machine has", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dappled")
def cli() -> None:
    """Dappled: content-adaptive neural image and video codecs."""


def _codec_names() -> list[str]:
    return registry.names()


def parse_options(options: tuple[str, ...]) -> dict[str, str]:
    """-O KEY=VALUE items -> {KEY: VALUE} (values stay strings; each codec parses its own)."""
    opts: dict[str, str] = {}
    for item in options:
        if "=" not in item:
            raise OptionError(f"--option wants KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        opts[k.strip()] = v.strip()
    return opts


@cli.command()
@click.argument("src", type=click.Path())
@click.option("-o", "--output", "dst", required=True, type=click.Path(),
              help="Output stream file (.dpl); the output folder when SRC is a folder or a glob.")
@click.option("--codec", default=None,
              help=f"Codec name (see `dappled codecs`; default: {registry.DEFAULT_CODEC} for an image, "
                   f"{registry.DEFAULT_VIDEO_CODEC} for a video, coded by its video form).")
@click.option("--quality", "-q", type=int, default=None, help="Quality preset (codec-specific range).")
@click.option("--bpp", type=float, default=None,
              help="Target bits per pixel (codecs with rate control; 0.01 to 24).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the encoder's randomness.")
@click.option("--option", "-O", "options", multiple=True, metavar="KEY=VALUE",
              help="Codec-specific option, repeatable (e.g. -O subsampling=444).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--kbps", type=click.FloatRange(0, 1e7, min_open=True), default=None,
              help="Video: target bit rate in kbit/s.")
@click.option("--gop", type=click.IntRange(1, 100_000), default=None,
              help="Video: group length (an intra frame every N frames; default 25).")
@click.option("--frames", "n_frames", type=click.IntRange(min=1), default=None,
              help="Video: encode at most N frames.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="Video: first frame to encode.")
@click.option("--decoder", type=click.Choice(["full", "shallow"]), default=None,
              help="rat: which synthesis transform the stream asks for (shallow: cheaper decode).")
@click.option("--jobs", "-j", type=int, default=1, show_default=True,
              help="Folder: images coded in parallel local processes; video: groups coded in parallel "
                   "(implies --independent-gops).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Folder or video: code images (video: groups) as Ray tasks on a cluster: local, auto, "
                   "HOST:PORT or ray://HOST:PORT (implies --independent-gops). See docs/scale.md.")
@click.option("--independent-gops", is_flag=True,
              help="Video: code every group with a fresh encoder (no budget or fit carried over), so the "
                   "bytes are the same in one process, with -j N or on Ray.")
@click.option("--overwrite", is_flag=True,
              help="Folder: replace outputs that were coded from other sources (a.png then a.jpg: a.dpl) "
                   "or that the folder's manifest does not know.")
@friendly_errors
def encode(src: str, dst: str, codec: str | None, quality: int | None, bpp: float | None, device: str,
           seed: int, options: tuple[str, ...], quiet: bool, kbps: float | None, gop: int | None,
           n_frames: int | None, start: int, decoder: str | None, jobs: int, ray_address: str | None,
           independent_gops: bool, overwrite: bool) -> None:
    """Encode image or video SRC into a Dappled stream (video: mp4, mkv, webm, y4m, frames/%04d.png).

    A folder or a glob pattern (quoted: 'photos/*.jpg') as SRC encodes every image into the
    folder -o, one STEM.dpl each, skipping images already coded there with the same settings
    (checked against the sha256 in -o's encode-manifest.json); an output coded from another
    source is replaced only with --overwrite. Ctrl-C leaves a run that the same command resumes."""
    from dappled.codec.api import encode_file
    from dappled.datasets.video import is_video_path
    from dappled.errors import OptionError

    opts = parse_options(options)
    image_codec = codec or registry.DEFAULT_CODEC
    if decoder is not None:
        opts["decoder"] = decoder
    if jobs < 1:
        raise OptionError(f"--jobs must be at least 1, got {jobs}")
    from dappled.scale.folder import is_folder_source

    if is_folder_source(src):
        from dappled.scale.folder import encode_folder, settings_from

        if kbps is not None or gop is not None or n_frames is not None or start or independent_gops:
            raise OptionError("--kbps, --gop, --frames, --start and --independent-gops are for video inputs")
        fr = encode_folder(src, dst, settings_from(image_codec, quality, bpp, device, seed, opts), jobs=jobs,
                           ray=ray_address, progress=not quiet, overwrite=overwrite)
        click.echo(f"{dst}: {len(fr.encoded)} image(s) encoded ({fr.bytes} bytes, {fr.bpp:.4f} bpp) in "
                   f"{fr.seconds:.1f} s, {len(fr.skipped)} already done")
        return
    if overwrite:
        raise OptionError("--overwrite is for folder encodes (a single output file is always replaced)")
    if is_video_path(src):
        from dappled.codec.api import encode_video_file

        if bpp is not None:
            raise OptionError("--bpp is for images; give a video --kbps or --quality")
        video_codec = codec or registry.DEFAULT_VIDEO_CODEC
        if independent_gops or jobs > 1 or ray_address is not None:
            from dappled.scale.gops import encode_video_file_gops

            vr = encode_video_file_gops(src, dst, video_codec, start=start, frames=n_frames, kbps=kbps,
                                        quality=quality, gop=gop, device=device, progress=not quiet,
                                        seed=seed, jobs=jobs, ray=ray_address, **opts)
        else:
            vr = encode_video_file(src, dst, video_codec, start=start, frames=n_frames, kbps=kbps,
                                   quality=quality, gop=gop, device=device, progress=not quiet, seed=seed,
                                   **opts)
        click.echo(f"{dst}: {vr.frames} frames {vr.width}x{vr.height}, {vr.bytes} bytes, {vr.kbps:.1f} kbps, "
                   f"encoded in {vr.seconds:.1f} s ({vr.fps:.2f} frames/s)")
        return
    if kbps is not None or gop is not None or n_frames is not None or start or independent_gops:
        raise OptionError("--kbps, --gop, --frames, --start and --independent-gops are for video inputs")
    if jobs > 1 or ray_address is not None:
        raise OptionError("--jobs and --ray are for a folder, a glob or a video (one image is one task)")
    report = encode_file(src, dst, image_codec, quality=quality, bpp=bpp, device=device,
                         progress=not quiet, seed=seed, options=opts)
    click.echo(f"{dst}: {report.bytes} bytes, {report.bpp:.4f} bpp, encoded in {report.seconds:.2f} s")


@cli.command()
@click.argument("src", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False),
              help="Output image (.png, .bmp, .tif ...).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--vcodec", type=click.Choice(["auto", "ffv1", "x264", "x265", "vp9", "rawvideo"]),
              default="auto", show_default=True,
              help="Video output: auto = FFV1 (lossless) for .mkv, x264 for .mp4.")
@click.option("--crf", type=int, default=12, show_default=True,
              help="Video output: x264/x265/VP9 CRF (0 lossless).")
@friendly_errors
def decode(src: str, dst: str, device: str, vcodec: str, crf: int) -> None:
    """Decode Dappled stream SRC to an image, or a video stream to a video (.mp4, .mkv, .y4m) or
    an image sequence (frames/%04d.png)."""
    from dappled.codec.api import decode_file, is_video_stream_file

    if is_video_stream_file(src, dst):
        from dappled.codec.api import decode_video_file

        vr = decode_video_file(src, dst, device=device, vcodec=vcodec, crf=crf)
        click.echo(f"{dst}: {vr.frames} frames decoded in {vr.seconds:.2f} s ({vr.fps:.1f} frames/s)")
        return
    seconds = decode_file(src, dst, device=device)
    click.echo(f"{dst}: decoded in {seconds * 1000:.1f} ms (one-shot: includes loading the codec)")


@cli.command()
@click.argument("src", type=click.Path(dir_okay=False, allow_dash=True))
@friendly_errors
def info(src: str) -> None:
    """Describe Dappled stream SRC: codec, size, bytes, bpp, bytes per sub-stream."""
    from dappled.codec.api import inspect, read_stream

    data = read_stream(src)
    try:
        si = inspect(data)
    except DappledError as exc:
        raise type(exc)(f"{src}: {exc}") from None
    click.echo(f"file:    {src}")
    click.echo(f"codec:   {si.codec}")
    click.echo(f"size:    {si.width}x{si.height}, {si.frames} frame(s)"
               + (f" at {si.fps:.3f} fps" if si.frames > 1 else ""))
    click.echo(f"bytes:   {si.bytes}")
    click.echo(f"bpp:     {si.bpp:.4f}")
    if si.frames > 1 and si.fps > 0:
        click.echo(f"kbps:    {8 * si.bytes / 1000 / (si.frames / si.fps):.1f}")
    for tag, n in si.streams.items():
        click.echo(f"  {tag:<6} {n:>9} bytes  {100 * n / si.bytes:5.1f}%")
    for key, value in si.details.items():
        click.echo(f"{key + ':':<8} {value}")


@cli.command()
def codecs() -> None:
    """List the registered codecs."""
    for name in registry.names():
        codec = registry.get(name)
        lo, hi = codec.quality_range
        if not codec.writes_streams:
            click.echo(f"{name:<8} {codec.description}")
            continue
        rate = "--bpp or --quality" if codec.supports_bpp else "--quality"
        video = f", video coded as {codec.video_form}" if codec.video_form else ""
        click.echo(f"{name:<8} {codec.description}  [{rate}, quality {lo}..{hi}{video}]")


@cli.command()
@click.option("--codec", default=None, help="Codec to show (default: the demo's, at its fast effort).")
@click.option("--quality", "-q", type=int, default=None)
@click.option("--bpp", type=float, default=None)
@click.option("--option", "-O", "options", multiple=True, metavar="KEY=VALUE",
              help="Codec-specific option, repeatable (default for the demo's codec: its fast effort).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--out", default="demo.png", show_default=True, type=click.Path(),
              help="Side-by-side PNG: original | codec | JPEG | WebP | AVIF at the same size.")
@friendly_errors
def demo(codec: str | None, quality: int | None, bpp: float | None, options: tuple[str, ...], device: str,
         out: str) -> None:
    """Encode the bundled sample with a codec and with JPEG, WebP and AVIF at the same file
    size; print bytes, bpp, PSNR and times, and write a side-by-side crop."""
    from dappled.datasets import SAMPLE_IMAGE, load_image
    from dappled.eval.demo import DEMO_CODEC, SAMPLE_CROP, format_figures, run_demo

    opts = parse_options(options)
    codec = codec or DEMO_CODEC
    image = load_image(SAMPLE_IMAGE)
    h, w = image.shape[:2]
    click.echo(f"sample: {SAMPLE_IMAGE.name} ({w}x{h}), codec {codec}")
    result = run_demo(image, out, codec, quality=quality, bpp=bpp, options=opts or None, device=device,
                      crop=SAMPLE_CROP)
    click.echo(f"encode: {result.main.encode_s:.2f} s")
    click.echo(f"decode: {result.main.decode_ms:.1f} ms")
    click.echo(format_figures(result))
    click.echo(f"picture: {result.picture}")


def _attach_commands() -> None:
    """Attach the commands that live in their own modules (each exports a list `commands`)."""
    from dappled.cli import eval_cmds, play_cmds, train_cmds

    for module in (eval_cmds, train_cmds, play_cmds):
        for command in module.commands:
            cli.add_command(command)


_attach_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="dappled")

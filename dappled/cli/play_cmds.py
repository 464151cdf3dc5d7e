"""`dappled play` (window or headless playback) and `dappled serve` (HTTP server with the browser
player): parse, then call dappled.stream."""

from __future__ import annotations

import sys

import click

from dappled.cli.main import friendly_errors


@click.command("play")
@click.argument("source")
@click.option("--headless", is_flag=True,
              help="No window: play on the stream's clock and print shown/dropped frames, time to "
                   "first frame and the rate achieved.")
@click.option("--start", type=int, default=0, show_default=True,
              help="Start at the intra frame at or before this frame (files and URLs).")
@click.option("--scale", type=int, default=0, help="Window: integer zoom (0: fit about 1280 px wide).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Decoder: auto picks the fastest the codec has here (CUDA when a GPU answers, "
                   "else the CPU one) and the summary names it.")
@click.option("--checksums", "checksums_path", type=click.Path(dir_okay=False), default=None,
              help="Write 'frame sha256' of every decoded frame (RGB bytes) to this file.")
@click.option("--verbose", "-v", is_flag=True, help="Print each event (frame shown, dropped, seek).")
@click.option("--timeout", type=click.FloatRange(0, 3600, min_open=True), default=30.0, show_default=True,
              help="Seconds a read from a pipe or a server may wait for data before playback gives up.")
@friendly_errors
def play(source: str, headless: bool, start: int, scale: int, device: str, checksums_path: str | None,
         verbose: bool, timeout: float) -> None:
    """Play video stream SOURCE (a .dpl file, - for standard input, or an http(s) URL served by
    `dappled serve`) as it arrives. Keys: space pause, left/right seek, q quit."""
    from dappled.errors import BitstreamError
    from dappled.fileio import atomic_open
    from dappled.stream.player import play as play_stream
    from dappled.stream.source import open_source

    def event(msg: str) -> None:
        if verbose:
            click.echo(msg)
            sys.stdout.flush()

    if checksums_path is not None:
        from dappled.codec.api import check_output_folder

        check_output_folder(checksums_path)
    src = open_source(source, timeout=timeout)
    try:
        stats = play_stream(src, headless=headless, device=device, start=start, scale=scale,
                            checksums=checksums_path is not None, on_event=event)
    finally:
        src.close()
    if checksums_path is not None and not stats.error:  # no checksum file from a failed playback
        with atomic_open(checksums_path) as f:
            f.write("".join(f"{i} {h}\n" for i, h in stats.checksums).encode())
    click.echo(stats.summary())
    if stats.error:
        raise BitstreamError(f"{src.name}: {stats.error}")


@click.command("serve")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (loopback by default; 0.0.0.0 exposes the folder to the network).")
@click.option("--port", type=int, default=8000, show_default=True, help="TCP port (0: any free port).")
@friendly_errors
def serve(folder: str, host: str, port: int) -> None:
    """Serve the .dpl streams in FOLDER over HTTP (range requests) with a browser player that
    decodes and renders on the viewer's GPU (WebGL2)."""
    from dappled.stream.server import serve as run_server

    def ready(url: str) -> None:
        click.echo(f"serving {folder} at {url} (Ctrl-C stops)")
        sys.stdout.flush()

    run_server(folder, host, port, on_ready=ready)


commands = [play, serve]

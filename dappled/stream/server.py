"""`dappled serve`: an aiohttp server for a folder of streams and the browser player.

Routes:
    /                   HTML list of the .dpl files under the folder, each linking to the player
    /api/streams        the same list as JSON (name, bytes, url)
    /files/{path}       a .dpl file, with HTTP range requests (206 / 416) so players can seek
    /player?src=URL     the browser player page
    /web/{file}         the player's static ES modules (package data, no build step)

The server decodes nothing: the page fetches the stream and decodes and renders it on the
viewer's side (JavaScript + WebGL2). Paths are resolved and must stay inside the folder (no
``..``, no symbolic link out of it); anything else is a 404.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from dappled.errors import InputError, OptionError

WEB_DIR = Path(__file__).with_name("web")
STREAM_SUFFIX = ".dpl"
MAX_LISTED = 10_000
_ROOT_KEY = web.AppKey("root", Path)


def _listing(root: Path) -> list[tuple[str, int]]:
    """(relative posix path, bytes) of the .dpl files under root, hidden entries skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(STREAM_SUFFIX) and not name.startswith("."):
                p = Path(dirpath) / name
                if _inside(root, p):
                    out.append((p.relative_to(root).as_posix(), p.stat().st_size))
                    if len(out) >= MAX_LISTED:
                        return out
    return out


def _inside(root: Path, path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):
        return False


def resolve_stream(root: Path, rel: str) -> Path | None:
    """The file a request path names, or None when it is not a .dpl file inside root."""
    if "\0" in rel or "\\" in rel:
        return None
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p in (".", "..") or p.startswith(".") for p in parts):
        return None
    path = root.joinpath(*parts)
    if path.suffix != STREAM_SUFFIX or not _inside(root, path) or not path.is_file():
        return None
    return path


def _file_url(rel: str) -> str:
    return "/files/" + urllib.parse.quote(rel)


async def _index(request: web.Request) -> web.Response:
    root = request.app[_ROOT_KEY]
    rows = []
    for rel, size in _listing(root):
        player = "/player?src=" + urllib.parse.quote(_file_url(rel), safe="")
        rows.append(f'<li><a href="{html.escape(player)}">{html.escape(rel)}</a> '
                    f'<small>{size} bytes, <a href="{html.escape(_file_url(rel))}">download</a></small></li>')
    body = "\n".join(rows) or "<li>no .dpl files here</li>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dappled streams</title>
<link rel="stylesheet" href="/web/player.css"></head>
<body><h1>Dappled streams</h1><p>{html.escape(str(root))}</p><ul id="streams">{body}</ul></body></html>
"""
    return web.Response(text=page, content_type="text/html")


async def _api_streams(request: web.Request) -> web.Response:
    root = request.app[_ROOT_KEY]
    return web.json_response([{"name": rel, "bytes": size, "url": _file_url(rel)}
                              for rel, size in _listing(root)])


async def _file(request: web.Request) -> web.StreamResponse:
    path = resolve_stream(request.app[_ROOT_KEY], request.match_info["path"])
    if path is None:
        raise web.HTTPNotFound(text="no such stream\n")
    # FileResponse answers Range / If-Range requests with 206 or 416 itself
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream",
                                           "Cache-Control": "no-cache"})


async def _player(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "player.html", headers={"Cache-Control": "no-cache"})


async def _web(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    path = WEB_DIR / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise web.HTTPNotFound()
    types = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".wasm": "application/wasm"}
    return web.FileResponse(path, headers={"Content-Type": types.get(path.suffix, "application/octet-stream"),
                                           "Cache-Control": "no-cache"})


def make_app(root: str | os.PathLike[str]) -> web.Application:
    """The aiohttp application serving the streams under `root` (InputError if it is no folder)."""
    folder = Path(root)
    if not folder.is_dir():
        raise InputError(f"{root}: not a folder")
    app = web.Application()
    app[_ROOT_KEY] = folder.resolve()
    app.router.add_get("/", _index)
    app.router.add_get("/api/streams", _api_streams)
    app.router.add_get("/files/{path:.+}", _file)
    app.router.add_get("/player", _player)
    app.router.add_get("/web/{name}", _web)
    return app


class _OneLineFormatter(logging.Formatter):
    """A log record as one line: the message and the exception's own message, no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            detail = str(getattr(exc, "message", "") or exc).strip().splitlines()
            msg += f": {type(exc).__name__}" + (f": {detail[0]}" if detail else "")
        return f"dappled serve: {msg}"


def _one_line_logs() -> None:
    """aiohttp logs a malformed request (bad request line, broken headers) with a traceback, one
    per request: show one line each instead, on standard error."""
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLineFormatter())
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.propagate = False
        log.setLevel(logging.WARNING)


def serve(root: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve `root` until interrupted; `on_ready` gets the base URL once the socket is bound
    (port 0 picks a free port)."""
    if not 0 <= port <= 65535:
        raise OptionError(f"--port must be in 0..65535, got {port}")
    app = make_app(root)
    _one_line_logs()

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        shown_host = f"[{host}]" if ":" in host else host
        if on_ready is not None:
            on_ready(f"http://{shown_host}:{bound}/")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass

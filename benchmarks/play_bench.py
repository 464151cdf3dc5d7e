"""Playback figures of issue 7: `dappled play --headless` on a stream file, and the browser player
(served by `dappled serve`, in headless Chromium with software WebGL2) on another.

    python benchmarks/play_bench.py --play runs/issue7/bikes100.dpl --runs 3
    python benchmarks/play_bench.py --browser runs/issue7/carphone.dpl --runs 3

Prints one line per run and a JSON summary (also written with --json). Every run is a fresh
process (and a fresh page), so the time to first frame includes opening the stream. The load
average is printed with each run: this machine's 2 cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SUMMARY = re.compile(r"shown (\d+), dropped (\d+), decoded (\d+) of (\d+) frames \((\d+)x(\d+)\); "
                     r"time to first frame ([\d.]+) ms \(\+ (\d+) ms decoder start-up\); "
                     r"rate ([\d.]+) fps \(stream ([\d.]+) fps\); stalls (\d+)")


def _dappled() -> list[str]:
    exe = shutil.which("dappled", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "dappled.cli.main"]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def play_run(path: str) -> dict[str, Any]:
    """One `dappled play --headless -v` process; the summary plus the wall time from launching
    the process to its 'shown 0' line (Python start-up and imports included)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*_dappled(), "play", "--headless", "-v", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    launch_to_first = None
    out = []
    for line in proc.stdout:
        if launch_to_first is None and line.startswith("shown "):
            launch_to_first = (time.perf_counter() - t0) * 1000
        out.append(line)
    rc = proc.wait()
    text = "".join(out)
    m = SUMMARY.search(text)
    if rc != 0 or not m:
        raise SystemExit(f"play failed ({rc}): {text[-500:]} {proc.stderr.read() if proc.stderr else ''}")
    g = m.groups()
    return {"shown": int(g[0]), "dropped": int(g[1]), "decoded": int(g[2]), "frames": int(g[3]),
            "size": f"{g[4]}x{g[5]}", "first_frame_ms": float(g[6]), "startup_ms": float(g[7]),
            "fps": float(g[8]), "stream_fps": float(g[9]), "stalls": int(g[10]),
            "launch_to_first_frame_ms": launch_to_first, "load": _load()}


def browser_run(path: str, zoom: int = 0) -> dict[str, Any]:
    """Serve the stream's folder, play it in a fresh headless Chromium page, return its state."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _browser import CHROMIUM_ARGS, ensure_chromium
    from playwright.sync_api import sync_playwright

    folder, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    srv = subprocess.Popen([*_dappled(), "serve", folder, "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout is not None
        m = re.search(r"(http://\S+?)/ ", srv.stdout.readline())
        if not m:
            raise SystemExit("dappled serve did not start")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"{m.group(1)}/player?src=/files/{name}" + (f"&zoom={zoom}" if zoom else ""))
            done = "window.dappled && (window.dappled.state.ended || window.dappled.state.error)"
            page.wait_for_function(done, timeout=600_000)
            st = page.evaluate("window.dappled.state")
            st["page_fps_text"] = page.inner_text("#fps")
            st["page_counter"] = page.inner_text("#counter")
            st["gl_renderer"] = page.evaluate("""(() => { const gl = document.createElement('canvas')
                .getContext('webgl2'); const e = gl.getExtension('WEBGL_debug_renderer_info');
                return e ? gl.getParameter(e.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER); })()""")
            browser.close()
    finally:
        srv.terminate()
        srv.wait(30)
    st["load"] = _load()
    return st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--play", help="stream for `dappled play --headless`")
    ap.add_argument("--browser", help="stream for the browser player")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--zoom", type=int, default=0, help="browser: display zoom (0: the player's default)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "cpus": os.cpu_count()}
    if args.play:
        runs = []
        for i in range(args.runs):
            r = play_run(args.play)
            print(f"play run {i}: {r}", flush=True)
            runs.append(r)
        results["play"] = {"file": args.play, "runs": runs}
    if args.browser:
        runs = []
        for i in range(args.runs):
            r = browser_run(args.browser, args.zoom)
            keys = ("shown", "dropped", "decoded", "stalls", "measuredFps", "playFps", "droppedAt",
                    "decodeMs", "drawMs", "ticks", "tickMs", "page_fps_text", "firstFrameMs", "renderFormat",
                    "gl_renderer",
                    "error", "load")
            print(f"browser run {i}: " + ", ".join(f"{k}={r[k]}" for k in keys), flush=True)
            runs.append(r)
        results["browser"] = {"file": args.browser, "runs": runs}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Helpers of the tests that drive the browser player: Debian's chromium (installed with apt-get
when missing; a test fails, never skips, when it cannot be had), launched through Playwright, and
`dappled serve` on a folder at a free port."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from _cli import dappled_cmd

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-gpu-sandbox"]


def ensure_chromium() -> str:
    """Debian's chromium at CHROMIUM, installed with apt-get when missing; fails (never skips)
    when it cannot be had."""
    if not Path(CHROMIUM).exists():
        apt = shutil.which("apt-get")
        if apt is None:
            pytest.fail(f"{CHROMIUM} is missing and there is no apt-get to install it")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        for cmd in ([*sudo, apt, "update"], [*sudo, apt, "install", "-y", "chromium"]):
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if res.returncode != 0:
                pytest.fail(f"cannot install chromium ({' '.join(cmd)}): {res.stderr[-500:]}")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} still missing after apt-get install chromium")
    return CHROMIUM


@contextmanager
def chromium() -> Iterator[object]:
    """A headless chromium (a Playwright Browser) with software WebGL2."""
    exe = ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextmanager
def served(folder: Path) -> Iterator[str]:
    """`dappled serve FOLDER` on a free port; yields its base URL."""
    proc = subprocess.Popen([*dappled_cmd(), "serve", str(folder), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        yield m.group(1)
    finally:
        proc.terminate()
        proc.wait(30)


def same_outcome(got: dict, ref: np.ndarray | None) -> str:
    """Check that the browser treated a damaged payload as Python did: refused with a
    BitstreamError/TruncatedError where Python refused it (ref None), else the same pixels.
    Returns "refused" or "decoded" (a test counts both, so both paths are taken)."""
    if ref is None:
        assert "error" in got and got["error"].split(":")[0] in ("BitstreamError", "TruncatedError"), got
        return "refused"
    assert "rgb" in got, got
    assert np.array_equal(np.array(got["rgb"], np.uint8).reshape(ref.shape), ref)
    return "decoded"

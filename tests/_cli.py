"""Helpers for tests that run the `dappled` command in a child process and check its errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def dappled_cmd() -> list[str]:
    """The argv prefix that runs this environment's `dappled` (its script, else the module)."""
    exe = shutil.which("dappled", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "dappled"]


def run_dappled(*args: str, stdin: bytes | str | None = None, text: bool = True, timeout: float = 300,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `dappled ARGS` to completion, capturing stdout and stderr (text unless `text=False`)."""
    return subprocess.run([*dappled_cmd(), *args], capture_output=True, input=stdin, text=text,
                          timeout=timeout, env=env)


def one_line_error(res: subprocess.CompletedProcess, *needles: str, code: int = 1) -> str:
    """Check a failed run and return its error line.

    Exit `code` (1: bad input, 2: bad option), no traceback, and one `dappled: error:` line that
    holds every needle. Click's own parser errors (exit 2) print a usage block that ends in one
    `Error: ...` line; for code 2 that form is accepted and its error line is returned.
    """
    err = res.stderr.decode() if isinstance(res.stderr, bytes) else res.stderr
    assert res.returncode == code, (res.returncode, err)
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if code == 2 and lines and lines[0].startswith("Usage:"):
        errors = [ln for ln in lines if ln.startswith("Error:")]
        assert len(errors) == 1, err
        line = errors[0]
    else:
        assert len(lines) == 1 and lines[0].startswith("dappled: error:"), err
        line = lines[0]
    for n in needles:
        assert n in line, (n, line)
    return line

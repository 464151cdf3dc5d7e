"""How encodes fail (issue 18): an absurd --bpp, a fit that diverges, more threads than cores,
running out of memory and Ctrl-C all end in one line and the right exit status, never a
traceback and never a partial output file."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import click
import numpy as np
import pytest
from _cli import dappled_cmd, one_line_error, run_dappled
from click.testing import CliRunner

from dappled.cli.main import EXIT_INTERRUPTED, friendly_errors
from dappled.codec import api
from dappled.codec.field.encoder import encode_field
from dappled.codec.registry import EncodeParams
from dappled.datasets import SAMPLE_IMAGE, load_image, save_image
from dappled.errors import EncodeError, OptionError, out_of_memory
from dappled.models.splat.numba_cpu import default_threads
from dappled.threads import available_cores, parse_threads


@pytest.fixture(scope="module")
def small_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "crop.png"
    save_image(path, load_image(SAMPLE_IMAGE)[100:132, 300:348])
    return path


def test_bpp_below_the_minimum_is_a_usage_error(small_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.dpl"
    for codec in ("field", "splat", "tokens", "jp2"):
        res = run_dappled("encode", str(small_png), "-o", str(out), "--codec", codec, "--bpp", "1e-6",
                          "--quiet")
        one_line_error(res, f"--bpp for {codec} must be in [0.01, 24]", code=2)
    res = run_dappled("encode", str(small_png), "-o", str(out), "--codec", "field", "--bpp", "nan")
    one_line_error(res, "--bpp", code=2)
    assert not out.exists()


def test_a_diverged_field_fit_never_reaches_the_entropy_coder(small_png: Path) -> None:
    image = load_image(small_png)
    with pytest.raises(EncodeError, match="diverged"):
        encode_field(image, EncodeParams(options={"iterations": 5}), lam=float("inf"))


def test_threads_are_limited_to_the_cores(small_png: Path, tmp_path: Path) -> None:
    cores = available_cores()
    assert cores == len(os.sched_getaffinity(0))
    assert parse_threads(str(cores)) == cores and parse_threads("0", allow_zero=True) == 0
    for bad in (str(cores + 1), "0", "-1", "two"):
        with pytest.raises(OptionError, match="threads"):
            parse_threads(bad)
    image = load_image(small_png)
    for codec in ("field", "splat"):
        with pytest.raises(OptionError, match=f"more than the {cores} core"):
            api.encode_image(image, codec, threads=cores + 1)
    out = tmp_path / "x.dpl"
    res = run_dappled("encode", str(small_png), "-o", str(out), "--codec", "field", "-O",
                      f"threads={cores + 1}", "--quiet")
    one_line_error(res, f"threads={cores + 1}", f"the {cores} core(s)", code=2)
    env = {**os.environ, "DAPPLED_THREADS": str(cores + 1)}
    res = run_dappled("encode", str(small_png), "-o", str(out), "--codec", "splat", "-O", "iterations=5",
                      "--quiet", env=env)
    one_line_error(res, f"DAPPLED_THREADS={cores + 1}", code=2)
    assert not out.exists()
    from dappled.cli import cli

    res = CliRunner().invoke(cli, ["train", "rat", "--threads", str(cores + 1), "--out", str(tmp_path / "t")])
    assert res.exit_code == 2 and f"--threads={cores + 1} is more than the {cores} core" in res.stderr
    assert not (tmp_path / "t").exists()
    os.environ["DAPPLED_THREADS"] = "0"
    try:
        assert default_threads() >= 1  # 0: all cores
    finally:
        del os.environ["DAPPLED_THREADS"]


def test_out_of_memory_is_one_line_and_exit_1() -> None:
    import torch

    failures: list[BaseException] = []
    for alloc in (lambda: torch.empty(1 << 50, dtype=torch.uint8), lambda: np.empty(1 << 60, np.uint8)):
        try:
            alloc()
        except (RuntimeError, MemoryError) as exc:  # real allocations that fail
            failures.append(exc)
    assert len(failures) == 2 and all(out_of_memory(e) for e in failures)
    assert not out_of_memory(RuntimeError("shape mismatch"))

    @click.command()
    @click.argument("what")
    @friendly_errors
    def hog(what: str) -> None:
        if what == "torch":
            torch.zeros(1 << 50, dtype=torch.uint8)
        elif what == "numpy":
            np.zeros(1 << 60, np.uint8)
        else:
            raise RuntimeError("some other bug")

    for what in ("torch", "numpy"):
        res = CliRunner().invoke(hog, [what])
        assert res.exit_code == 1, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dappled: error: out of memory"), res.stderr
    res = CliRunner().invoke(hog, ["bug"])  # not memory: a real bug keeps its traceback
    assert isinstance(res.exception, RuntimeError)


def _default_sigint() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_exits_130_without_output(small_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.dpl"
    cmd = [*dappled_cmd(), "encode", str(small_png), "-o", str(out), "--codec", "field", "-O",
           "iterations=1000000", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    time.sleep(8)  # into the fit (imports take a few seconds)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    res = subprocess.CompletedProcess(cmd, proc.returncode, "", err)
    one_line_error(res, "interrupted", code=EXIT_INTERRUPTED)
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file

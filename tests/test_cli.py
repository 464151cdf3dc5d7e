"""The `dappled` command line with the splat codec: real encodes, exit codes, one-line errors,
atomic outputs. Runs the installed console script where the behaviour depends on the process
(exit status, stderr), and click's runner elsewhere."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from _cli import one_line_error, run_dappled
from click.testing import CliRunner

from dappled.cli import cli
from dappled.codec import api, registry
from dappled.datasets import SAMPLE_IMAGE, load_image, save_image
from dappled.eval.metrics import psnr


def _dappled(*args: str) -> subprocess.CompletedProcess[str]:
    return run_dappled(*args, timeout=600)


@pytest.fixture(scope="module")
def small_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "crop.png"
    save_image(path, load_image(SAMPLE_IMAGE)[100:164, 200:296])
    return path


@pytest.fixture(scope="module")
def splat_stream(small_png: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dpl") / "crop.dpl"
    res = CliRunner().invoke(cli, ["encode", str(small_png), "-o", str(out), "--codec", "splat",
                                   "--bpp", "1.5", "-O", "iterations=100", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "bpp" in res.output
    return out


def test_encode_decode_info(small_png: Path, splat_stream: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    png = tmp_path / "out.png"
    res = runner.invoke(cli, ["decode", str(splat_stream), "-o", str(png)])
    assert res.exit_code == 0, res.output
    original, decoded = load_image(small_png), load_image(png)
    assert decoded.shape == original.shape
    assert psnr(original, decoded) > 22
    res = runner.invoke(cli, ["info", str(splat_stream)])
    assert res.exit_code == 0
    assert "codec:   splat" in res.output and "96x64" in res.output
    for tag in ("POS", "SHAP", "COLR"):
        assert tag in res.output
    bpp = float(next(line for line in res.output.splitlines() if line.startswith("bpp:")).split()[1])
    assert abs(bpp - 1.5) / 1.5 <= 0.1


def test_an_image_without_codec_is_coded_by_the_field_codec(small_png: Path, tmp_path: Path) -> None:
    """The field codec (ahead of WebP at its fast effort) is the default for images; a video
    without --codec keeps the splat codec's video form."""
    out = tmp_path / "d.dpl"
    res = CliRunner().invoke(cli, ["encode", str(small_png), "-o", str(out), "-O", "iterations=20",
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    assert api.inspect(out.read_bytes()).codec == registry.DEFAULT_CODEC == "field"
    assert registry.video_codec(registry.DEFAULT_VIDEO_CODEC).name == "splatv"
    help_text = " ".join(CliRunner().invoke(cli, ["encode", "--help"]).output.split())
    assert "default: field for an image, splat for a video" in help_text


def test_decode_twice_gives_identical_files(splat_stream: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("a.png", "b.png"):
        assert runner.invoke(cli, ["decode", str(splat_stream), "-o", str(tmp_path / name)]).exit_code == 0
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), load_image(tmp_path / "b.png"))


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p, s: s.write_bytes(p.read_bytes()[:40]), "ends inside"),  # truncated
        (lambda p, s: s.write_bytes(b"GIF89a" + bytes(100)), "not a Dappled stream"),  # wrong format
        (lambda p, s: s.write_bytes(b""), "too short"),  # empty
    ],
)
def test_bad_streams_exit_1_with_one_line(splat_stream: Path, tmp_path: Path, make, needle: str) -> None:
    bad = tmp_path / "bad.dpl"
    make(splat_stream, bad)
    out = tmp_path / "never.png"
    res = _dappled("decode", str(bad), "-o", str(out))
    one_line_error(res, needle, str(bad))
    assert not out.exists()
    assert list(tmp_path.glob("*.part")) == []


def test_corrupted_payload_exit_1(splat_stream: Path, tmp_path: Path) -> None:
    data = bytearray(splat_stream.read_bytes())
    data[len(data) // 2] ^= 0x5A
    bad = tmp_path / "flip.dpl"
    bad.write_bytes(bytes(data))
    res = _dappled("info", str(bad))
    assert res.returncode == 1 and "CRC" in res.stderr and "Traceback" not in res.stderr


def test_unreadable_image_and_missing_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    out = tmp_path / "x.dpl"
    res = _dappled("encode", str(junk), "-o", str(out), "--quiet")
    assert res.returncode == 1 and "cannot read image" in res.stderr and str(junk) in res.stderr
    assert not out.exists()
    res = _dappled("encode", str(tmp_path / "nope.png"), "-o", str(out))
    assert res.returncode == 1 and "no such file" in res.stderr


def test_usage_errors_exit_2(small_png: Path, tmp_path: Path) -> None:
    res = _dappled("encode", str(small_png))  # no -o
    assert res.returncode == 2
    res = _dappled("encode", str(small_png), "-o", str(tmp_path / "x.dpl"), "--device", "tpu")
    assert res.returncode == 2


def test_option_errors_exit_2(small_png: Path, tmp_path: Path) -> None:
    """Bad option values are usage errors: one line, exit 2 (as click's own)."""
    out = tmp_path / "x.dpl"
    res = _dappled("encode", str(small_png), "-o", str(out), "--bpp", "0.5", "--quality", "3")
    assert res.returncode == 2 and "either --quality or --bpp" in res.stderr
    res = _dappled("encode", str(small_png), "-o", str(out), "--codec", "nope")
    assert res.returncode == 2 and "unknown codec" in res.stderr
    assert not out.exists()


def test_failed_encode_keeps_existing_output(small_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "keep.dpl"
    out.write_bytes(b"previous")
    res = _dappled("encode", str(small_png), "-o", str(out), "--quality", "42")
    assert res.returncode == 2
    assert out.read_bytes() == b"previous"

"""`dappled eval` / `dappled bench` end to end with real baseline encoders, the report updater,
the published reference data, and the CLI's encode/decode/info with a baseline codec."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _cli import one_line_error
from click.testing import CliRunner
from PIL import Image

from dappled.cli.main import cli
from dappled.datasets import SAMPLE_IMAGE, load_image, save_image
from dappled.eval import report
from dappled.eval.evaluate import EvalSpec, evaluate
from dappled.eval.plot import load_published
from dappled.eval.summary import mean_curves
from dappled.eval.sweep import load_results, plan_series


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small crops of kodim23 in a folder (a data set given by path)."""
    folder = tmp_path_factory.mktemp("crops")
    image = load_image(SAMPLE_IMAGE)
    save_image(folder / "a.png", image[40:136, 300:428])  # 128x96
    save_image(folder / "b.png", image[250:346, 500:628])
    return folder


def _invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in this process; the result has a child process's fields."""
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


# -- encode / decode / info with a baseline --------------------------------------------------

def test_cli_encode_decode_info(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    save_image(src, load_image(SAMPLE_IMAGE)[:64, :80])
    dpl, out = tmp_path / "out.dpl", tmp_path / "out.png"
    res = _invoke("encode", "--codec", "jpeg", "-q", "20", str(src), "-o", str(dpl))
    code, stdout = res.returncode, res.stdout
    assert code == 0 and "bpp" in stdout
    res = _invoke("info", str(dpl))
    code, stdout = res.returncode, res.stdout
    assert code == 0 and "codec:   jpeg" in stdout and "jpg" in stdout
    assert _invoke("decode", str(dpl), "-o", str(out)).returncode == 0
    assert load_image(out).shape == (64, 80, 3)
    res = _invoke("encode", "--codec", "jpeg", "-q", "20", "-O", "subsampling=444", str(src), "-o", str(dpl))
    assert res.returncode == 0, res.stderr


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    save_image(src, load_image(SAMPLE_IMAGE)[:32, :32])
    dpl = tmp_path / "x.dpl"
    one_line_error(_invoke("encode", "--codec", "jpeg", "-q", "200", str(src), "-o", str(dpl)),
                   "quality", code=2)
    one_line_error(_invoke("encode", "--codec", "webp", "-O", "subsampling=444", str(src), "-o", str(dpl)),
                   "no option", code=2)
    one_line_error(_invoke("encode", "--codec", "jpeg", str(tmp_path / "missing.png"), "-o", str(dpl)),
                   "no such file")
    res = _invoke("encode", "--codec", "hevc", "-q", "20", str(src), "-o", str(dpl))
    assert res.returncode == 0, res.stderr
    data = bytearray(dpl.read_bytes())
    data[60] ^= 0xFF
    dpl.write_bytes(bytes(data))
    one_line_error(_invoke("decode", str(dpl), "-o", str(tmp_path / "o.png")), "x.dpl")
    one_line_error(_invoke("info", str(tmp_path / "in.png")), "in.png")


# -- eval ---------------------------------------------------------------------------------------

def test_tiny_eval_run_and_resume(crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["eval", "--dataset", str(crops), "--codec", "jpeg", "--codec", "webp", "--points", "2",
            "--out", str(out), "--quiet"]
    res = _invoke(*args)
    code, stdout, err = res.returncode, res.stdout, res.stderr
    assert code == 0, err
    assert "8 point(s) run, 0 already done" in stdout
    for name in ("results.csv", "results.json", "summary.md", "rd.png"):
        assert (out / name).is_file()
    with Image.open(out / "rd.png") as im:
        assert im.format == "PNG" and im.size[0] > 400
        im.load()
    rows = load_results(out)
    assert len(rows) == 8
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 9 and csv_lines[0].startswith("series,codec,")
    for r in rows:
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (r["width"] * r["height"]))
        assert 15 < r["psnr"] < 60 and 0 < r["ms_ssim"] <= 1
        assert r["encode_s"] > 0 and r["decode_s"] > 0
    summary = (out / "summary.md").read_text()
    assert "| webp |" in summary and "BD against `jpeg`" in summary
    # webp beats jpeg on these crops
    curves = {c.label: c for c in mean_curves(rows)}
    assert set(curves) == {"jpeg", "webp"} and all(len(c.points) == 2 for c in curves.values())

    # re-running does no new encodes and leaves the stored rows as they were
    before = (out / "results.json").read_text()
    res = _invoke(*args)
    code, stdout = res.returncode, res.stdout
    assert code == 0 and "0 point(s) run, 8 already done" in stdout
    assert (out / "results.json").read_text() == before

    # a lost point is redone, and only that one
    doc = json.loads(before)
    doc["results"] = doc["results"][1:]
    (out / "results.json").write_text(json.dumps(doc))
    result = evaluate(EvalSpec(codecs=["jpeg", "webp"], dataset=str(crops), points=2, out_dir=str(out),
                               progress=False))
    assert (result.ran, result.skipped) == (1, 7)


def test_eval_explicit_params_parallel_and_report(crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "run2"
    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    doc.write_text("# Results\n\nintro\n\n<!-- eval:tiny:start -->\nold\n<!-- eval:tiny:end -->\n\ntail\n")
    result = evaluate(EvalSpec(codecs=["jpeg", "jp2"], dataset=str(crops), limit=1, jobs=2,
                               params=["jpeg:quality=10,40", "jpeg:subsampling=444", "jp2:bpp=0.5,1.5"],
                               out_dir=str(out), report=str(doc), report_section="tiny",
                               command="dappled eval ...", progress=False))
    assert result.ran == 4
    rows = load_results(out)
    assert sorted(r["params"] for r in rows) == ["bpp=0.5", "bpp=1.5", "quality=10", "quality=40"]
    assert {r["series"] for r in rows} == {"jpeg[subsampling=444]", "jp2"}
    assert {r["image"] for r in rows} == {"a.png"}
    text = doc.read_text()
    assert text.startswith("# Results\n\nintro\n\n<!-- eval:tiny:start -->\nCommand: `dappled eval ...`")
    assert text.endswith("<!-- eval:tiny:end -->\n\ntail\n") and "old" not in text
    assert "![rate-distortion curves](img/rd-tiny.png)" in text
    assert (doc.parent / "img" / "rd-tiny.png").is_file()
    # the anchor is not in this run: the summary says so instead of failing
    assert "anchor `jpeg` is not part of this run" in (out / "summary.md").read_text()


def test_eval_bad_options_are_one_line(crops: Path, tmp_path: Path) -> None:
    base = ["eval", "--dataset", str(crops), "--out", str(tmp_path / "r"), "--quiet"]
    cases = [
        (["--codec", "nope"], "unknown codec"),
        (["--codec", "jpeg", "--param", "jpeg=quality"], "--param wants"),
        (["--codec", "jpeg", "--param", "webp:quality=5"], "not in --codec"),
        (["--codec", "jpeg", "--param", "jpeg:quality=500"], "quality"),
        (["--codec", "jpeg", "--param", "jpeg:quality=a,b"], "numbers"),
        (["--codec", "jpeg", "--param", "jpeg:bpp=0.5"], "bpp"),
        (["--codec", "jpeg", "--points", "0"], "--points"),
        (["--codec", "jpeg", "--jobs", "0"], "--jobs"),
        (["--codec", "jpeg", "--report", "x.md", "--report-section", "a b"], "section"),
    ]
    for extra, fragment in cases:
        one_line_error(_invoke(*base, *extra), fragment, code=2)
    one_line_error(_invoke("eval", "--dataset", str(tmp_path / "none"), "--codec", "jpeg"),
                   "no such image folder")


def test_plan_series_defaults() -> None:
    series = plan_series(["jpeg", "jp2"], 3)
    assert [s.label for s in series] == ["jpeg", "jp2"]
    assert len(series[0].points) == 3 and "quality" in dict(series[0].points[0])
    assert "bpp" in dict(series[1].points[0])


# -- report, published data, bench --------------------------------------------------------------

def test_report_sections() -> None:
    text = "# R\n\nkeep me\n"
    once = report.replace_section(text, "kodak", "body 1")
    assert once == "# R\n\nkeep me\n\n<!-- eval:kodak:start -->\nbody 1\n<!-- eval:kodak:end -->\n"
    twice = report.replace_section(once + "after\n", "kodak", "body 2\n")
    assert twice.count("eval:kodak:start") == 1 and "body 2" in twice and "body 1" not in twice
    assert twice.endswith("<!-- eval:kodak:end -->\nafter\n")
    other = report.replace_section(twice, "bsds", "b")
    assert "body 2" in other and "eval:bsds:start" in other
    with pytest.raises(Exception, match="without"):
        report.replace_section("<!-- eval:kodak:start -->\n", "kodak", "x")


def test_published_reference_curves() -> None:
    curves = {c["name"]: c for c in load_published("kodak")}
    assert {"gaussianimage", "bmshj2018-hyperprior", "segpic"} <= set(curves)
    for c in curves.values():
        assert c["source"] and c["paper"] and c["dataset"] == "kodak"
        assert list(c["bpp"]) == sorted(c["bpp"]) and len(c["bpp"]) == len(c["psnr"])
        if c.get("ms_ssim"):
            assert len(c["ms_ssim"]) == len(c["bpp"])
    gi = curves["gaussianimage"]
    assert list(zip(gi["bpp"], gi["psnr"], strict=True)) == [(0.43, 27.4), (0.72, 28.7), (1.0, 29.7)]
    assert load_published("bsds-test") == []


def test_bench_cli(tmp_path: Path) -> None:
    src = tmp_path / "b.png"
    save_image(src, np.ascontiguousarray(load_image(SAMPLE_IMAGE)[:64, :96]))
    res = _invoke("bench", "--codec", "jpeg", "--codec", "webp", "--image", str(src),
                                "--runs", "3", "--warmup", "1", "--param", "jpeg:quality=30", "--quiet")
    code, stdout, err = res.returncode, res.stdout, res.stderr
    assert code == 0, err
    assert "| jpeg | quality=30 | 96x64 |" in stdout and "| webp | quality=75 |" in stdout
    one_line_error(_invoke("bench", "--codec", "jpeg", "--runs", "0", "--quiet"), "--runs", code=2)
    one_line_error(_invoke("bench", "--codec", "zzz", "--quiet"), "unknown codec", code=2)


def test_per_image_bd_is_the_mean_of_each_images_bd() -> None:
    """Each image's BD-rate on its own curves, then their mean: a series that needs 0.8x the
    anchor's bits on one image and 1.25x on another is at +2.5 %; an image with one point of
    the series is left out; the Markdown table shows the column."""
    from dappled.eval.summary import bd_markdown, per_image_bd

    def row(series: str, image: str, bpp: float, q: float) -> dict:
        return {"series": series, "codec": series, "params": f"b={bpp}", "image": image,
                "image_sha1": image, "bpp": bpp, "psnr": q, "ms_ssim": 0.9, "encode_s": 0.0,
                "decode_s": 0.0}

    anchor = [(0.2, 28.0), (0.4, 31.0), (0.8, 34.0), (1.6, 37.0)]
    rows = []
    for image, factor in (("a", 0.8), ("b", 1.25)):
        rows += [row("ref", image, b, q) for b, q in anchor]
        rows += [row("test", image, b * factor, q) for b, q in anchor]
    rows += [row("ref", "c", b, q) for b, q in anchor] + [row("test", "c", 0.5, 30.0)]
    got = per_image_bd(rows, "ref")
    assert set(got) == {"test"} and got["test"][1] == 2
    assert got["test"][0] == pytest.approx((-20.0 + 25.0) / 2, abs=0.05)
    md = bd_markdown(mean_curves(rows), "ref", rows)
    assert "per image" in md and "+2.5 % (2)" in md

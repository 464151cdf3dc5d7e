"""`dappled eval --video` finds every codec in the registry: our video codecs through their video
form and the PyAV baselines (real encodes), measured by the same ``Codec.code_clip``."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from dappled.codec import registry
from dappled.datasets import SAMPLE_IMAGE, load_image
from dappled.errors import OptionError, UnsupportedError
from dappled.eval.video import default_codecs, default_kbps, label, run_point, summarize

FPS = Fraction(25)


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    base = load_image(SAMPLE_IMAGE)[100:164, 200:296]  # SVT-AV1 wants 64 px a side
    return [np.ascontiguousarray(np.roll(base, 2 * i, axis=1)) for i in range(4)]


def test_the_default_run_is_the_default_codec_and_every_video_baseline() -> None:
    codecs = default_codecs()
    assert codecs[0] == registry.DEFAULT_VIDEO_CODEC
    baselines = set(registry.names(streams=False))
    assert set(codecs[1:]) == baselines and len(baselines) == 4
    assert set(registry.VIDEO_ANCHORS) <= baselines
    default = registry.DEFAULT_VIDEO_CODEC
    assert label(default) == registry.video_codec(default).display_name()


@pytest.mark.parametrize("name", registry.names(streams=False))
def test_video_baselines_write_no_stream_but_code_clips(name: str, clip: list[np.ndarray]) -> None:
    codec = registry.get(name)
    with pytest.raises(UnsupportedError):
        codec.encode_image(clip[0], registry.EncodeParams())
    rate = default_kbps(96, 64, 25.0, name)[-1]
    r = run_point("c", clip, FPS, name, rate, 2)
    assert r.frames == 4 and r.bytes > 0 and r.psnr > 20, r
    assert len(r.frame_psnr) == 4


def test_the_default_codec_is_coded_by_its_video_form(clip: list[np.ndarray]) -> None:
    r = run_point("c", clip, FPS, registry.DEFAULT_VIDEO_CODEC, 300.0, 2, {"i_iterations": "20"})
    assert r.bytes > 0 and r.psnr > 15, r
    x = run_point("c", clip, FPS, registry.VIDEO_ANCHORS[0], 300.0, 2)
    text = summarize([r, x], registry.VIDEO_ANCHORS[0], 2)
    assert f"| {registry.DEFAULT_VIDEO_CODEC} | 300 |" in text
    assert f"| {registry.VIDEO_ANCHORS[0]} | 300 |" in text


def test_a_baseline_refuses_options(clip: list[np.ndarray]) -> None:
    with pytest.raises(OptionError):
        run_point("c", clip, FPS, registry.VIDEO_ANCHORS[0], 300.0, 2, {"i_iterations": "20"})


def test_evaluate_video_writes_a_per_frame_plot_and_resumes(clip: list[np.ndarray], tmp_path) -> None:
    """A whole (tiny) `eval --video` run: our codec and the anchor at two rates each, real encodes;
    frames.csv has a row per frame and point, frames.png (per-frame PSNR, ours beside the anchor)
    is a picture, and a second run measures nothing again."""
    import csv

    from PIL import Image

    from dappled.datasets.video import write_video
    from dappled.eval.video import VideoEvalSpec, evaluate_video

    src = tmp_path / "c.mkv"
    write_video(src, clip[:3], 25)
    ours = "field"
    spec = VideoEvalSpec(clips=[str(src)], codecs=[ours, registry.VIDEO_ANCHORS[0]],
                         kbps={"*": [150.0, 400.0]}, gop=3, frames=3, out_dir=str(tmp_path / "out"),
                         progress=False, options={ours: {"iterations": 10}})
    res = evaluate_video(spec, log=lambda s: None)
    assert res.ran == 4 and res.frames_plot == tmp_path / "out" / "frames.png"
    with open(tmp_path / "out" / "frames.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 3 and {r["codec"] for r in rows} == {ours, registry.VIDEO_ANCHORS[0]}
    assert all(15 < float(r["psnr_yuv"]) < 100 for r in rows)
    with Image.open(res.frames_plot) as im:
        assert im.format == "PNG" and im.size[0] >= 800
    again = evaluate_video(spec, log=lambda s: None)
    assert again.ran == 0 and again.skipped == 4


def test_the_summary_gives_yuv_psnr_and_says_where_a_stored_point_lacks_it(clip: list[np.ndarray]) -> None:
    """PSNR-Y and PSNR-YUV (BT.601 4:2:0) beside RGB PSNR; a point stored before they were
    measured (no such keys in results.json) reads n/a instead of breaking the BD table."""
    from dataclasses import asdict

    from dappled.eval.video import PointResult

    anchor = registry.VIDEO_ANCHORS[0]
    pts = [run_point("c", clip, FPS, anchor, k, 2) for k in (150.0, 600.0)]
    for r in pts:
        assert r.psnr_y < r.psnr_yuv < 100 and r.psnr_yuv > r.psnr and len(r.frame_psnr_yuv) == 4
    other = next(c for c in registry.names(streams=False)
                 if c != anchor and not registry.get(c).fixed_quantizer)
    old = []
    for k in (150.0, 600.0):
        d = asdict(run_point("c", clip, FPS, other, k, 2))
        for key in ("psnr_y", "psnr_yuv", "frame_psnr_yuv"):
            d.pop(key)
        old.append(PointResult(**d))
    text = summarize(pts + old, anchor, 2)
    assert "| PSNR-Y | PSNR-YUV |" in text and "BD-rate (PSNR-YUV)" in text
    assert f"| {anchor} | 150 |" in text and "n/a (not measured)" in text
    row = next(line for line in text.splitlines() if line.startswith(f"| {anchor} | 600 |"))
    assert f"{pts[1].psnr_yuv:.2f}" in row

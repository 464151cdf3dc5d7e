"""The demo: a codec against the baselines at the same file size, and its side-by-side picture."""

from __future__ import annotations

import numpy as np
import pytest
from _cli import one_line_error, run_dappled
from PIL import Image

from dappled.codec import api, registry
from dappled.datasets import SAMPLE_IMAGE, load_image
from dappled.eval.demo import BASELINES, PANEL_LABEL_HEIGHT, match_size, run_demo


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    """A 64x96 crop of the sample: the macaw's eye and beak."""
    return load_image(SAMPLE_IMAGE)[180:244, 80:176].copy()


def test_match_size_picks_the_largest_quality_that_fits(small: np.ndarray) -> None:
    target = len(api.encode_image(small, "jpeg", quality=50)) + 40
    q, stream = match_size(small, "jpeg", target)
    assert len(stream) <= target
    assert q >= 50
    assert len(api.encode_image(small, "jpeg", quality=q + 1)) > target
    assert stream == api.encode_image(small, "jpeg", quality=q)


def test_match_size_below_the_lowest_quality_returns_it(small: np.ndarray) -> None:
    lo = registry.get("webp").quality_range[0]
    q, stream = match_size(small, "webp", 100)
    assert q == lo and len(stream) > 100


@pytest.mark.slow
def test_run_demo_field_against_baselines(small: np.ndarray, tmp_path) -> None:
    out = tmp_path / "demo.png"
    res = run_demo(small, out, "field", quality=8, options={"iterations": 8}, crop=(16, 8, 48, 40),
                   progress=False)
    assert res.main.codec == "field" and res.main.bytes > 0
    assert [b.codec for b in res.baselines] == list(BASELINES)
    for b in res.baselines:
        assert b.fits and b.bytes <= res.main.bytes, b
        hi = registry.get(b.codec).quality_range[1]
        if b.quality < hi:  # one step up the quality grid no longer fits
            assert len(api.encode_image(small, b.codec, quality=b.quality + 1)) > res.main.bytes, b
        assert 15 < b.psnr < 60
    assert res.picture == out
    sheet = np.array(Image.open(out).convert("RGB"))
    x, y, w, h = res.crop
    assert (x, y, w, h) == (16, 8, 48, 40)
    assert sheet.shape[0] == PANEL_LABEL_HEIGHT + h
    pad = (sheet.shape[1] - 5 * w) // 4
    assert sheet.shape[1] == 5 * w + 4 * pad
    assert np.array_equal(sheet[PANEL_LABEL_HEIGHT:, :w], small[y:y + h, x:x + w])  # the original
    assert (sheet[:PANEL_LABEL_HEIGHT, :w] < 128).any()  # a label was drawn
    assert not list(tmp_path.glob("*.part"))


def test_run_demo_refuses_a_missing_output_folder_before_encoding(small: np.ndarray, tmp_path) -> None:
    from dappled.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        run_demo(small, tmp_path / "nope" / "demo.png", "jpeg")


@pytest.mark.slow
def test_cli_demo_with_another_codec(tmp_path) -> None:
    out = tmp_path / "d.png"
    res = run_dappled("demo", "--codec", "jpeg", "-q", "30", "--out", str(out))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "sample: kodim23.png (768x512), codec jpeg"
    rows = {ln.split()[0]: ln.split() for ln in lines if ln.split()[:1] in (["jpeg"], ["webp"], ["avif"])}
    assert set(rows) == {"jpeg", "webp", "avif"}
    assert int(rows["webp"][2]) <= int(rows["jpeg"][2]) and int(rows["avif"][2]) <= int(rows["jpeg"][2])
    assert lines[-1] == f"picture: {out}"
    assert Image.open(out).size[1] == PANEL_LABEL_HEIGHT + 256


def test_cli_demo_bad_output_folder_is_one_line(tmp_path) -> None:
    res = run_dappled("demo", "--codec", "jpeg", "--out", str(tmp_path / "no" / "d.png"))
    one_line_error(res, "does not exist")

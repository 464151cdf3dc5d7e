"""The rat model on small random-weight instances: shapes, the region-adaptive transform, real
rANS round trips, weight files, the BSDS500 loader and the trainer (fast; no shipped weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dappled.datasets.bsds import BsdsCrops, renumber
from dappled.models.rat import RatConfig, RatModel, RegionAdaptiveTransform, downsample_labels, grid_labels
from dappled.models.rat.model import rate_distortion, strip_bounds
from dappled.models.rat.store import export_model, load_file
from dappled.models.rat.train import TrainConfig, Trainer, learning_rate

SMALL = RatConfig(N=16, M=24, shallow_channels=8)


@pytest.fixture(scope="module")
def model() -> RatModel:
    torch.manual_seed(0)
    m = RatModel(SMALL)
    _perturb(m)
    m.update(force=True)
    return m.eval()


def _perturb(m: torch.nn.Module) -> None:
    """Give the zero-initialised layers (RAT outputs and kernel MLPs) non-zero weights."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if ("out." in name or "mlp.2" in name) and p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=g)
    return torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)


def test_forward_shapes_and_likelihoods(model: RatModel) -> None:
    x = torch.rand(2, 3, 128, 64)
    labels = grid_labels(128, 64, 32).expand(2, 128, 64)
    out = model(x, torch.tensor([0, 3]), labels)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, SMALL.M, 8, 4)
    assert out["likelihoods"]["z"].shape == (2, SMALL.N, 2, 1)
    for lk in out["likelihoods"].values():
        assert torch.all(lk > 0) and torch.all(lk <= 1)
    rd = rate_distortion(out, x, torch.tensor([0.01, 0.02]))
    assert rd["bpp"] > 0 and torch.isfinite(rd["loss"])
    rd["loss"].backward()
    assert model.g_a1[0].weight.grad is not None and model.rat_a.mlp[0].weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_rate_index_changes_the_latent(model: RatModel) -> None:
    x = _image(64, 64)
    with torch.no_grad():
        lo = model.analysis(x, torch.tensor([0]))
        hi = model.analysis(x, torch.tensor([3]))
    g0, g3 = model.gain[0].view(1, -1, 1, 1), model.gain[3].view(1, -1, 1, 1)
    assert torch.allclose(lo / g0, hi / g3, atol=1e-5)
    assert hi.abs().mean() > lo.abs().mean()


def test_rat_starts_as_identity_and_adapts_to_regions() -> None:
    torch.manual_seed(0)
    rat = RegionAdaptiveTransform(8)
    x = torch.randn(2, 8, 16, 16)
    labels = grid_labels(16, 16, 8).expand(2, 16, 16)
    assert torch.equal(rat(x, labels), x)  # zero-initialised output projection
    _perturb(rat)
    one = rat(x, None)
    grid = rat(x, labels)
    assert one.shape == grid.shape == x.shape
    assert not torch.allclose(one, grid)
    # one region covering everything is the same as no labels
    assert torch.allclose(rat(x, torch.zeros(2, 16, 16, dtype=torch.long)), one)


def test_rat_region_centers_are_region_means() -> None:
    rat = RegionAdaptiveTransform(4)
    x = torch.randn(1, 4, 6, 6)
    labels = torch.zeros(1, 6, 6, dtype=torch.long)
    labels[0, :, 3:] = 2  # region 1 is empty
    centers = rat.region_centers(x, labels, 3)
    proj = rat.center_proj(x)
    assert torch.allclose(centers[0, 0], proj[0, :, :, :3].mean((1, 2)), atol=1e-6)
    assert torch.allclose(centers[0, 2], proj[0, :, :, 3:].mean((1, 2)), atol=1e-6)
    assert torch.equal(centers[0, 1], torch.zeros(4))


def test_rat_rejects_mismatched_labels() -> None:
    rat = RegionAdaptiveTransform(4)
    with pytest.raises(ValueError):
        rat(torch.randn(1, 4, 8, 8), torch.zeros(1, 4, 4, dtype=torch.long))


def test_grid_and_downsampled_labels() -> None:
    g = grid_labels(130, 70, 64)
    assert g.shape == (130, 70) and int(g.max()) == 5  # 3 rows x 2 columns
    assert g[0, 0] == 0 and g[0, 69] == 1 and g[129, 0] == 4
    small = downsample_labels(grid_labels(128, 128, 64)[None], 32, 32)
    assert torch.equal(small[0], grid_labels(32, 32, 16))
    with pytest.raises(ValueError):
        downsample_labels(torch.zeros(1, 8, 8, dtype=torch.long), 16, 16)


def test_compress_decompress_round_trip_is_exact(model: RatModel) -> None:
    x = _image(128, 192)
    labels = grid_labels(128, 192, 64)[None]
    comp = model.compress(x, 2, labels)
    assert comp.z_shape == (2, 3) and len(comp.y_string) > 0
    # the latent the decoder rebuilds is exactly the encoder's rounded latent
    with torch.no_grad():
        y = model.analysis(x, torch.tensor([2]), labels)
        z_hat = model.entropy_bottleneck.decompress([comp.z_string], comp.z_shape)
        _, means = model.entropy_params(z_hat, exact=True)
        expect = torch.round(y - means) + means
    y_hat = model.decode_latent(comp.y_string, comp.z_string, comp.z_shape)
    assert torch.equal(y_hat, expect)
    full = model.decompress(comp.y_string, comp.z_string, comp.z_shape, 2, labels)
    shallow = model.decompress(comp.y_string, comp.z_string, comp.z_shape, 2, labels, "shallow")
    assert full.shape == shallow.shape == x.shape
    assert full.min() >= 0 and full.max() <= 1
    assert not torch.allclose(full, shallow)
    # a higher rate index spends more bits
    hi = model.compress(x, 3, labels)
    lo = model.compress(x, 0, labels)
    assert len(lo.y_string) <= len(comp.y_string) <= len(hi.y_string)


def test_exact_entropy_params_do_not_depend_on_summation_order(model: RatModel) -> None:
    """Scale indexes from the float64 hyper-synthesis survive a change of convolution algorithm
    (here: oneDNN off), the kind of change another machine brings."""
    torch.manual_seed(3)
    z_hat = torch.round(torch.randn(1, SMALL.N, 6, 5) * 3)
    scales, means = model.entropy_params(z_hat, exact=True)
    with torch.backends.mkldnn.flags(enabled=False):
        model._cache.clear()
        scales2, means2 = model.entropy_params(z_hat, exact=True)
    gc = model.gaussian_conditional
    assert torch.equal(gc.build_indexes(scales), gc.build_indexes(scales2))
    assert torch.allclose(means, means2, atol=1e-5)
    assert scales.dtype == torch.float64


def test_shallow_decoder_is_cheaper(model: RatModel) -> None:
    def count(mod: torch.nn.Module) -> int:
        return sum(p.numel() for p in mod.parameters())

    assert model.shallow is not None
    full = count(model.g_s1) + count(model.g_s2) + count(model.rat_s)
    assert count(model.shallow) < full
    y = torch.randn(1, SMALL.M, 4, 4)
    assert model.synthesis(y, torch.tensor([1]), None, "shallow").shape == (1, 3, 64, 64)
    with pytest.raises(ValueError):
        RatModel(RatConfig(N=8, M=8)).synthesis(y[:, :8], torch.tensor([0]), None, "shallow")


def test_ablation_model_has_no_rat() -> None:
    m = RatModel(RatConfig(N=8, M=8, use_rat=False))
    assert m.rat_a is None and m.rat_s is None
    out = m(torch.rand(1, 3, 64, 64), torch.tensor([1]), grid_labels(64, 64, 32)[None])
    assert out["x_hat"].shape == (1, 3, 64, 64)


def test_export_and_load_weights(model: RatModel, tmp_path: Path) -> None:
    import copy

    path = export_model(copy.deepcopy(model), tmp_path / "w.pt", {"steps": 1})
    doc = torch.load(path, weights_only=True)
    assert doc["state_dict"]["g_a1.0.weight"].dtype == torch.float16
    assert doc["state_dict"]["gaussian_conditional._quantized_cdf"].dtype == torch.int32
    loaded, meta = load_file(path)
    assert meta == {"steps": 1}
    assert loaded.config == model.config
    for name in ("_quantized_cdf", "_offset", "_cdf_length"):
        stored = doc["state_dict"][f"entropy_bottleneck.{name}"]
        assert torch.equal(getattr(loaded.entropy_bottleneck, name), stored)
    # a stream from one loaded copy decodes identically in another
    other, _ = load_file(path)
    x = _image(64, 128, seed=2)
    comp = loaded.compress(x, 1)
    a = loaded.decompress(comp.y_string, comp.z_string, comp.z_shape, 1)
    b = other.decompress(comp.y_string, comp.z_string, comp.z_shape, 1)
    assert torch.equal(a, b)
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(Exception):  # noqa: B017  (torch raises its own unpickling errors)
        load_file(tmp_path / "bad.pt")


def test_renumber_orders_regions_by_area_and_caps_count() -> None:
    lab = np.array([[5, 5, 5, 9], [7, 7, 9, 9], [1, 5, 5, 5]])
    out = renumber(lab, 8)
    assert out[0, 0] == 0 and out[0, 3] == 1 and out[1, 0] == 2 and out[2, 0] == 3
    assert int(renumber(lab, 2).max()) == 1


class _FakeData:
    """Synthetic crops for trainer tests (smooth random images, two vertical regions)."""

    def sample(self, batch: int, crop: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        img = (rng.random((batch, crop // 8, crop // 8, 3)) * 255).astype(np.uint8)
        img = img.repeat(8, 1).repeat(8, 2)
        lab = np.zeros((batch, crop, crop), np.int64)
        lab[:, :, crop // 2 :] = 1
        return img, lab


def test_trainer_learns_resumes_and_trains_the_shallow_stage(tmp_path: Path) -> None:
    cfg = TrainConfig(out_dir=str(tmp_path / "main"), steps=4, batch=2, crop=64, warmup=1, log_every=2,
                      ckpt_every=2, model=RatConfig(N=8, M=8).to_dict(), seed=1)
    t = Trainer(cfg, progress=False)
    t.run(_FakeData())
    assert t.step == 4 and (tmp_path / "main" / "last.pt").exists()
    rows = (tmp_path / "main" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,bpp,psnr") and len(rows) == 3
    # resume: more steps continue from the checkpoint
    cfg.steps = 6
    t2 = Trainer(cfg, progress=False)
    t2.run(_FakeData())
    assert t2.step == 6
    assert len((tmp_path / "main" / "log.csv").read_text().splitlines()) == 4
    # shallow stage: only the shallow synthesis moves
    scfg = TrainConfig(out_dir=str(tmp_path / "shallow"), stage="shallow", steps=2, batch=2, crop=64,
                       warmup=1,
                       model=RatConfig(N=8, M=8, shallow_channels=4).to_dict(),
                       init=str(tmp_path / "main" / "last.pt"))
    ts = Trainer(scfg, progress=False)
    before = {k: v.clone() for k, v in ts.model.state_dict().items()}
    ts.run(_FakeData())
    after = ts.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("shallow.") for k in changed)


def test_learning_rate_schedule() -> None:
    cfg = TrainConfig(out_dir="x", steps=1000, lr=1e-3, warmup=100)
    assert learning_rate(cfg, 0) == pytest.approx(1e-5)
    assert learning_rate(cfg, 100) == pytest.approx(1e-3)
    assert learning_rate(cfg, 1000) == pytest.approx(1e-3 * cfg.lr_final_ratio)


@pytest.mark.data
def test_bsds_crops_carry_segmentations() -> None:
    data = BsdsCrops.load(limit=3)
    assert len(data) == 3
    h, w = data.images[0].shape[:2]
    assert {h, w} == {160, 240}  # 481x321 halved
    assert data.labels[0][0].shape == (h, w) and len(data.labels[0]) >= 3
    imgs, labs = data.sample(4, 128, np.random.default_rng(0))
    assert imgs.shape == (4, 128, 128, 3) and imgs.dtype == np.uint8
    assert labs.shape == (4, 128, 128) and labs.min() == 0 and labs.max() < data.max_regions
    assert len(np.unique(labs[0])) > 1  # a human segmentation, not one region


def test_compare_table_between_series_of_one_run(tmp_path: Path) -> None:
    from dappled.eval.compare import compare_markdown
    from dappled.eval.sweep import save_results

    rows = []
    for series, shift in (("rat", 0.0), ("rat[decoder=shallow]", -1.0)):
        for q, (bpp, db) in enumerate(((0.2, 27.0), (0.4, 30.0), (0.8, 33.0)), 1):
            rows.append({"series": series, "codec": "rat", "params": f"quality={q}", "image": "a.png",
                         "image_sha1": "0", "bpp": bpp, "psnr": db + shift,
                         "ms_ssim": 0.9 + 0.02 * q + shift / 100, "encode_s": 0.0, "decode_s": 0.0})
    save_results(tmp_path, rows)
    table = compare_markdown(str(tmp_path), [("rat[decoder=shallow]", "rat"), ("rat", "jpeg")])
    line = next(ln for ln in table.splitlines() if ln.startswith("| rat[decoder=shallow]"))
    assert "-1.00 dB" in line and "+" in line.split("|")[3]  # 1 dB worse: more bits, positive BD-rate
    assert "| rat | jpeg | n/a |" in table


def test_rat_in_bands_of_rows_matches_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    rat = RegionAdaptiveTransform(8)
    _perturb(rat)
    x = torch.randn(1, 8, 13, 10)
    labels = grid_labels(13, 10, 4)[None]
    whole = rat(x, labels)
    monkeypatch.setattr(RegionAdaptiveTransform, "CHUNK_VALUES", 8 * 10 * 12 * 3)  # 3 rows a band
    assert torch.allclose(rat(x, labels), whole, atol=1e-6)


# ---------------------------------------------------------------- strips (issue 18: decode budget)


def test_grid_labels_at_a_coarser_scale_are_the_downsampled_grid() -> None:
    from dappled.models.rat.regions import grid_labels_at

    for h, w, cell, stride in [(128, 192, 64, 4), (64, 320, 48, 4), (256, 64, 16, 16), (64, 64, 4096, 4)]:
        whole = downsample_labels(grid_labels(h, w, cell)[None], h // stride, w // stride)[0]
        assert torch.equal(grid_labels_at(h // stride, w // stride, cell, stride), whole)
        assert torch.equal(grid_labels_at(h // stride, w // stride, cell, stride, 3, 7), whole[3:7])


def test_strip_bounds_cover_the_rows_evenly() -> None:
    assert strip_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert strip_bounds(9, 4) == [(0, 3), (3, 6), (6, 9)]
    assert strip_bounds(5, 5) == [(0, 5)] == strip_bounds(5, 99)
    assert strip_bounds(3, 1) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError):
        strip_bounds(3, 0)


@pytest.mark.parametrize("decoder", ["full", "shallow"])
@pytest.mark.parametrize("cell", [32, None, 4096])
def test_synthesis_in_strips_matches_the_whole(model: RatModel, decoder: str, cell: int | None) -> None:
    """Every strip height (1 latent row included) gives the whole synthesis' rows up to float
    rounding: the halo reaches every output row; a strip height of at least the latent's is the
    whole synthesis itself."""
    torch.manual_seed(5)
    y = torch.round(torch.randn(1, SMALL.M, 11, 7) * 3)
    q = torch.tensor([2])
    labels = None if cell is None else grid_labels(176, 112, cell)[None]
    with torch.no_grad():
        whole = model.synthesis(y, q, labels, decoder)
    for rows in (1, 3, 4, 10):
        parts = list(model.synthesis_strips(y, q, cell, decoder, rows))
        assert [top for top, _ in parts] == [16 * r0 for r0, _ in strip_bounds(11, rows)]
        strip = torch.cat([x for _, x in parts], 2)
        assert strip.shape == whole.shape
        assert torch.allclose(strip, whole, atol=1e-5, rtol=0), (rows, (strip - whole).abs().max())
    ((top, one),) = list(model.synthesis_strips(y, q, cell, decoder, 11))
    assert top == 0 and torch.equal(one, whole)


def test_synthesis_in_strips_without_rat() -> None:
    torch.manual_seed(0)
    m = RatModel(RatConfig(N=8, M=8, use_rat=False)).eval()
    y = torch.round(torch.randn(1, 8, 9, 5) * 3)
    with torch.no_grad():
        whole = m.synthesis(y, torch.tensor([1]))
    strip = torch.cat([x for _, x in m.synthesis_strips(y, torch.tensor([1]), 32, rows=2)], 2)
    assert torch.allclose(strip, whole, atol=1e-5, rtol=0)


def test_analysis_in_strips_matches_the_whole(model: RatModel) -> None:
    x = _image(192, 128, seed=4)
    q = torch.tensor([1])
    with torch.no_grad():
        whole = model.analysis(x, q, grid_labels(192, 128, 32)[None])
    for rows in (1, 5, 12):
        y = model.analysis_strips(lambda a, b: x[:, :, a:b], 192, 128, q, 32, rows)
        assert y.shape == whole.shape
        assert torch.allclose(y, whole, atol=1e-4, rtol=0), (rows, (y - whole).abs().max())


def test_hyper_synthesis_in_strips_is_exact(model: RatModel) -> None:
    """The float64 hyper-synthesis in strips gives the whole's indexes and means bit for bit, so
    a stream decodes the same whatever the strip height of the encoder that made it."""
    torch.manual_seed(3)
    z_hat = torch.round(torch.randn(1, SMALL.N, 9, 5) * 3)
    idx, means = model.entropy_indexes(z_hat)
    scales, means0 = model.entropy_params(z_hat, exact=True)
    assert torch.equal(idx, model.gaussian_conditional.build_indexes(scales)) and torch.equal(means, means0)
    for rows in (1, 2, 4, 8):
        idx2, means2 = model.entropy_indexes(z_hat, rows)
        assert torch.equal(idx2, idx) and torch.equal(means2, means), rows


def test_latent_decoded_in_chunks_is_compressai_s(model: RatModel, monkeypatch: pytest.MonkeyPatch) -> None:
    import dappled.models.rat.model as rat_model

    x = _image(128, 192, seed=2)
    comp = model.compress(x, 2, grid_labels(128, 192, 64)[None])
    with torch.no_grad():
        z_hat = model.entropy_bottleneck.decompress([comp.z_string], comp.z_shape)
        scales, means = model.entropy_params(z_hat, exact=True)
        ref = model.gaussian_conditional.decompress(
            [comp.y_string], model.gaussian_conditional.build_indexes(scales), means=means)
    monkeypatch.setattr(rat_model, "Y_CHUNK", 100)  # 100 values a call: many calls
    assert torch.equal(model.decode_latent(comp.y_string, comp.z_string, comp.z_shape, hyper_rows=1), ref)
    # the encoder with the hyper-synthesis in strips writes the same stream
    again = model.compress(x, 2, grid_labels(128, 192, 64)[None], hyper_rows=1)
    assert (again.y_string, again.z_string) == (comp.y_string, comp.z_string)

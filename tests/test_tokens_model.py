"""The tokenizer: FSQ ids, prefixes of tokens, the shipped weights and prior, resumable training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dappled.cli import cli
from dappled.models.tokens.model import FSQ, Tokenizer, TokenizerConfig
from dappled.models.tokens.store import MODELS, WEIGHTS_DIR, export_model, load_file, prior_weights
from dappled.models.tokens.train import TrainConfig, Trainer, sample_k

TINY = TokenizerConfig(tile=16, patch=4, width=32, heads=2, enc_layers=1, dec_layers=1, mlp_ratio=2, tokens=8,
                       levels=(5, 3), head_channels=4)


def test_fsq_ids_round_trip_and_cover_the_codebook() -> None:
    fsq = FSQ((8, 5, 5, 5))
    z = torch.randn(20000, 4) * 3
    q = fsq(z)
    ids = fsq.to_ids(q)
    assert ids.min() >= 0 and ids.max() < 1000
    assert torch.equal(fsq.from_ids(ids), q)
    assert torch.equal(fsq.ids(z), ids)
    assert ids.unique().numel() > 800  # every level of every dimension is reachable
    all_ids = torch.arange(1000)
    assert torch.equal(fsq.to_ids(fsq.from_ids(all_ids)), all_ids)


def test_straight_through_gradient_flows() -> None:
    torch.manual_seed(0)
    model = Tokenizer(TINY)
    x = torch.rand(3, 3, 16, 16)
    out = model(x, torch.tensor([1, 4, 8]))
    assert out.shape == x.shape
    ((out - x) ** 2).mean().backward()
    assert model.patch_embed.weight.grad is not None and model.patch_embed.weight.grad.abs().sum() > 0


def test_decoder_ignores_tokens_past_k() -> None:
    torch.manual_seed(0)
    model = Tokenizer(TINY).eval()
    ids = torch.randint(0, TINY.codebook, (2, TINY.tokens))
    other = ids.clone()
    other[:, 3:] = torch.randint(0, TINY.codebook, (2, TINY.tokens - 3))
    k = torch.tensor([3, 3])
    with torch.no_grad():
        assert torch.equal(model.decode(ids, k), model.decode(other, k))
        assert not torch.equal(model.decode(ids, k + 2), model.decode(other, k + 2))


def test_sample_k_covers_one_to_k() -> None:
    k = sample_k(5000, 64, np.random.default_rng(0))
    assert k.min() == 1 and k.max() == 64


def test_shipped_weights_load_offline_and_fit_the_budget() -> None:
    for name in MODELS.values():
        path = WEIGHTS_DIR / name
        assert path.exists(), f"{path} is not shipped"
        assert path.stat().st_size <= 40_000_000
        doc = torch.load(path, weights_only=True)
        assert doc["format"] == "dappled-tokens-weights" and doc["meta"]["steps"] > 0
        shipped = load_file(path)
        c = shipped.config
        assert shipped.counts.shape == (c.tokens, c.codebook) and shipped.counts.sum() > 0
        assert len(shipped.tables) == c.tokens
        # the prior is learned, not flat: token 0 costs less than log2(codebook) on average
        p0 = shipped.counts[0] / shipped.counts[0].sum()
        assert float((p0 * shipped.bits[0]).sum()) < np.log2(c.codebook) - 0.5


def test_prior_weights_keep_every_id_codable() -> None:
    counts = np.zeros((3, 10), np.int64)
    counts[0, 2] = 100
    w = prior_weights(counts)
    assert (w >= 1).all() and w[0, 2] > w[0, 3] and w[1, 2] > w[1, 3]


def test_export_and_load_round_trip(tmp_path: Path) -> None:
    model = Tokenizer(TINY).eval()
    counts = np.arange(TINY.tokens * TINY.codebook).reshape(TINY.tokens, TINY.codebook)
    path = export_model(model, tmp_path / "t.pt", counts, {"steps": 1})
    loaded = load_file(path)
    np.testing.assert_array_equal(loaded.counts, counts)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.model.encode(x), model.half().float().encode(x))
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something else"}, bad)
    with pytest.raises(ValueError):
        load_file(bad)


@pytest.mark.data
def test_training_resumes_where_it_stopped(tmp_path: Path) -> None:
    from dappled.datasets.bsds import BsdsCrops

    data = BsdsCrops.load(("train",), limit=2)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=4, batch=2, model=TINY.to_dict(), ckpt_every=2,
                      log_every=1, warmup=1)
    first = Trainer(cfg, progress=False)
    first.run(data)
    assert first.step == 4 and (tmp_path / "run" / "last.pt").exists()
    cfg6 = TrainConfig(**{**cfg.__dict__, "steps": 6})
    again = Trainer(cfg6, progress=False)
    assert again.try_resume() and again.step == 4
    again.run(data)
    assert again.step == 6
    rows = (tmp_path / "run" / "log.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 7


def test_cli_train_help_and_bad_options(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "tokens", "--help"])
    assert res.exit_code == 0 and "--tokens" in res.output and "--export" in res.output
    res = runner.invoke(cli, ["train", "tokens", "--out", str(tmp_path / "r"), "--levels", "8,1"])
    assert res.exit_code == 2 and "levels" in res.output
    res = runner.invoke(cli, ["train", "tokens", "--out", str(tmp_path / "r"), "--tile", "60",
                              "--patch", "8"])
    assert res.exit_code == 2

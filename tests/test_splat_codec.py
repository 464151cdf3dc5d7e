"""The splat codec end to end: quantizers, payload coding, fitting, rate control, decoding."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dappled.codec import api
from dappled.codec.splat.encoder import CONTAINER_OVERHEAD
from dappled.codec.splat.format import pack_gaussians, payload_size, unpack_gaussians
from dappled.datasets import SAMPLE_IMAGE, load_image
from dappled.errors import BitstreamError, OptionError
from dappled.eval.metrics import psnr
from dappled.models.splat.fit import FitConfig, fit, prune, solve_colors
from dappled.models.splat.quantize import QuantConfig, dequantize, fake_quantize, quantize


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """A 48x64 crop of the bundled sample with both flat areas and edges."""
    return load_image(SAMPLE_IMAGE)[200:248, 300:364].copy()


def _random_gaussians(n: int, w: int, h: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    chol = torch.stack([torch.rand(n, generator=g) * 5 + 0.5, torch.randn(n, generator=g),
                        torch.rand(n, generator=g) * 5 + 0.5], dim=-1)
    colors = torch.randn(n, 3, generator=g) * 0.3
    return means, chol, colors


def test_quantize_dequantize_is_idempotent() -> None:
    cfg = QuantConfig().canonical()
    means, chol, colors = _random_gaussians(500, 64, 48)
    q = quantize(means, chol, colors, cfg, 64, 48)
    q2 = quantize(*dequantize(q, cfg), cfg, 64, 48)
    for a, b in zip(q.__dict__.values(), q2.__dict__.values(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fake_quantize_matches_dequantize_and_passes_gradients() -> None:
    cfg = QuantConfig().canonical()
    means, chol, colors = (t.requires_grad_(True) for t in _random_gaussians(50, 64, 48))
    fq = fake_quantize(means, chol, colors, cfg, 64, 48)
    dq = dequantize(quantize(means, chol, colors, cfg, 64, 48), cfg)
    for a, b in zip(fq, dq, strict=True):
        torch.testing.assert_close(a.detach(), b, atol=1e-4, rtol=1e-4)
    sum(t.sum() for t in fq).backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (means, chol, colors))


def test_quant_config_header_round_trip() -> None:
    cfg = QuantConfig(pos_frac_bits=3, log_scale_step=0.1, rho_levels=10, color_step=0.02).canonical()
    assert QuantConfig.from_bytes(cfg.to_bytes()) == cfg


def test_payload_round_trip_exact() -> None:
    cfg = QuantConfig().canonical()
    q = quantize(*_random_gaussians(700, 80, 60, seed=3), cfg, 80, 60)
    q2, cfg2 = unpack_gaussians(pack_gaussians(q, cfg, 80, 60), 80, 60)
    assert cfg2 == cfg

    def rows(g) -> list[tuple[int, ...]]:  # the decoder returns raster order: compare as multisets
        return sorted(map(tuple, np.c_[g.x, g.y, g.log_sx, g.log_sy, g.rho, g.color].tolist()))

    assert rows(q) == rows(q2)
    keys = q2.y * 80 * 4 + q2.x
    assert np.all(np.diff(keys) >= 0)


def test_color_solve_reduces_error(crop: np.ndarray) -> None:
    target = torch.from_numpy(crop).float() / 255
    means, chol, _ = _random_gaussians(200, 64, 48)
    from dappled.models.splat import render

    c0 = torch.zeros(200, 3)
    c = solve_colors(means, chol, target, iters=15)
    err0 = torch.mean((render(means, chol, c0, 48, 64) - target) ** 2)
    err = torch.mean((render(means, chol, c, 48, 64) - target) ** 2)
    assert err < 0.5 * err0


def test_fit_reaches_useful_quality(crop: np.ndarray) -> None:
    g = fit(crop, FitConfig(n_gaussians=150, iterations=150, seed=1))
    from dappled.models.splat import render

    out = render(g.means, g.chol, g.colors, 48, 64).clamp(0, 1)
    rec = np.rint(out.numpy() * 255).astype(np.uint8)
    assert psnr(crop, rec) > 24.0
    assert len(prune(g, 40)) == 40


@pytest.fixture(scope="module")
def stream(crop: np.ndarray) -> bytes:
    return api.encode_image(crop, "splat", bpp=2.0, iterations=120)


def test_rate_control_lands_on_target(crop: np.ndarray, stream: bytes) -> None:
    target = 2.0 * crop.shape[0] * crop.shape[1] / 8
    assert 0.9 * target <= len(stream) <= target


def test_decode_quality_and_determinism(crop: np.ndarray, stream: bytes) -> None:
    a = api.decode_image(stream)
    b = api.decode_image(stream)
    assert a.shape == crop.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert psnr(crop, a) > 22.0


def _decode_in_subprocess(stream: bytes, tmp_path, threads: int | None = None) -> np.ndarray:
    """Decode `stream` in a fresh Python process (with $DAPPLED_THREADS=`threads` if given)."""
    src = tmp_path / "s.dpl"
    src.write_bytes(stream)
    check = "" if threads is None else (
        "from dappled.models.splat.numba_cpu import default_threads; "
        f"assert default_threads() == {threads}; ")
    code = (
        "import sys, numpy as np; from dappled.codec import api; " + check
        + "np.save(sys.argv[2], api.decode_image(open(sys.argv[1], 'rb').read()))"
    )
    env = None if threads is None else {**os.environ, "DAPPLED_THREADS": str(threads)}
    subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / "o.npy")], check=True, env=env)
    return np.load(tmp_path / "o.npy")


def test_decode_in_another_process_is_identical(stream: bytes, tmp_path) -> None:
    np.testing.assert_array_equal(_decode_in_subprocess(stream, tmp_path), api.decode_image(stream))


def test_thread_count_changes_nothing(crop: np.ndarray, stream: bytes, tmp_path) -> None:
    """Encoder and decoder are bit-identical whatever the number of numba threads (one by
    default, `-O threads=N` and $DAPPLED_THREADS to change it)."""
    two = api.encode_image(crop, "splat", bpp=2.0, iterations=120, threads=2)
    assert two == stream
    in_two = _decode_in_subprocess(stream, tmp_path, threads=2)
    np.testing.assert_array_equal(in_two, api.decode_image(stream))
    with pytest.raises(OptionError):
        api.encode_image(crop, "splat", bpp=2.0, threads="many")


def test_info_reports_streams(stream: bytes) -> None:
    info = api.inspect(stream)
    assert info.codec == "splat"
    assert set(info.streams) == {"HEAD", "POS ", "SHAP", "COLR"}
    assert sum(info.streams.values()) + CONTAINER_OVERHEAD + 1 + 8 * 4 == info.bytes


def test_options_are_checked(crop: np.ndarray) -> None:
    with pytest.raises(OptionError):
        api.encode_image(crop, "splat", bpp=0.5, quality=3)
    with pytest.raises(OptionError):
        api.encode_image(crop, "splat", quality=9)
    with pytest.raises(OptionError):
        api.encode_image(crop, "splat", bpp=1.0, bogus=1)


def test_payload_size_matches_packet(stream: bytes) -> None:
    frame = api.parse(stream).frames()[0]
    from dappled.codec.chunks import unpack_chunks

    assert payload_size(unpack_chunks(frame.payload)) == len(frame.payload)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupted_streams_only_raise_bitstream_error(stream: bytes, data: st.DataObject) -> None:
    """Mutate the stream, fix up the CRCs so the splat parser itself sees the damage."""
    import zlib

    from dappled.codec.container import HEADER_SIZE, PACKET_HEADER_SIZE

    buf = bytearray(stream)
    start = HEADER_SIZE + PACKET_HEADER_SIZE
    plen = int.from_bytes(buf[HEADER_SIZE + 8 : HEADER_SIZE + 12], "little")
    payload = bytearray(buf[start : start + plen])
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(payload) - 1))
        payload[pos] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        payload = payload[: data.draw(st.integers(0, len(payload)))]
    head = bytearray(buf[HEADER_SIZE:start])
    head[8:12] = len(payload).to_bytes(4, "little")
    head[12:16] = zlib.crc32(bytes(payload)).to_bytes(4, "little")
    forged = bytes(buf[:HEADER_SIZE]) + bytes(head) + bytes(payload) + bytes(buf[start + plen :])
    try:
        out = api.decode_image(forged)
        assert out.shape == (48, 64, 3)
    except BitstreamError:
        pass

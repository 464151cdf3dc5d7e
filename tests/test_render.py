"""2D Gaussian splat renderers: numba and torch-tile backends against the dense reference."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from dappled.models.splat import (
    CUTOFF_M2,
    bin_tiles,
    bounding_boxes,
    conics,
    project_numba,
    render,
    render_numba,
    render_numba_forward,
    render_reference,
    render_torch,
)
from dappled.models.splat import reference as splat_reference
from dappled.models.splat.project import mahalanobis2


def make_scene(
    seed: int, n: int, height: int, width: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixed random scene: ordinary, very thin/elongated and large Gaussians, some off-image."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height], dtype=torch.float64)
    means = torch.rand(n, 2, generator=g, dtype=torch.float64) * (size + 30.0) - 15.0
    chol = torch.randn(n, 3, generator=g, dtype=torch.float64) * 2.5
    kind = torch.randint(0, 4, (n,), generator=g)
    thin = kind == 1  # needle: one factor near zero, the other long
    chol[thin, 0] = torch.randn(int(thin.sum()), generator=g, dtype=torch.float64) * 12.0
    chol[thin, 1] = torch.randn(int(thin.sum()), generator=g, dtype=torch.float64) * 12.0
    chol[thin, 2] = torch.randn(int(thin.sum()), generator=g, dtype=torch.float64) * 0.05
    big = kind == 2
    chol[big] *= 6.0
    colors = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return means.to(dtype), chol.to(dtype), colors.to(dtype)


SCENES = [(0, 1, 37, 53), (1, 40, 64, 48), (2, 300, 37, 53), (3, 150, 64, 48), (4, 7, 16, 16)]
BACKENDS = {"numba": render_numba, "torch": render_torch}


def _render_with_grads(fn, scene, height, width, grad_out):
    params = [x.clone().requires_grad_() for x in scene]
    img = fn(*params, height, width)
    (img * grad_out).sum().backward()
    return img.detach(), [p.grad for p in params]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("seed,n,height,width", SCENES)
def test_forward_and_gradients_match_reference(backend, seed, n, height, width):
    scene = make_scene(seed, n, height, width)
    grad_out = torch.randn(height, width, 3, generator=torch.Generator().manual_seed(seed + 100))
    ref_img, ref_grads = _render_with_grads(render_reference, scene, height, width, grad_out)
    img, grads = _render_with_grads(BACKENDS[backend], scene, height, width, grad_out)
    assert img.shape == (height, width, 3) and img.dtype == torch.float32
    assert (img - ref_img).abs().max().item() <= 1e-4 * max(1.0, ref_img.abs().max().item())
    for name, got, want in zip(("means", "chol", "colors"), grads, ref_grads, strict=True):
        scale = want.abs().max().item()
        err = (got - want).abs().max().item()
        assert err <= 1e-3 * scale + 1e-6, f"{name}: max err {err:.3g} vs scale {scale:.3g}"


def test_float64_matches_reference_tightly():
    scene = make_scene(5, 80, 37, 53, torch.float64)
    grad_out = torch.randn(
        37, 53, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5)
    )
    ref_img, ref_grads = _render_with_grads(render_reference, scene, 37, 53, grad_out)
    for fn in BACKENDS.values():
        img, grads = _render_with_grads(fn, scene, 37, 53, grad_out)
        assert img.dtype == torch.float64
        torch.testing.assert_close(img, ref_img, rtol=0, atol=1e-10)
        for got, want in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * want.abs().max())


def test_numba_backward_matches_finite_differences_float64():
    means = torch.tensor([[4.3, 3.7], [7.9, 5.2], [1.2, 8.4]], dtype=torch.float64)
    chol = torch.tensor([[1.6, 0.7, 1.1], [2.3, -1.4, 0.9], [1.1, 0.2, 2.7]], dtype=torch.float64)
    colors = torch.tensor(
        [[0.5, -1.0, 2.0], [1.5, 0.3, -0.7], [0.2, 0.9, 0.4]], dtype=torch.float64
    )
    weights = torch.randn(
        10, 11, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    params = [x.clone().requires_grad_() for x in (means, chol, colors)]
    (render_numba(*params, 10, 11) * weights).sum().backward()
    eps = 1e-6
    for k, p in enumerate(params):
        for idx in np.ndindex(*p.shape):
            hi = [x.detach().clone() for x in params]
            lo = [x.detach().clone() for x in params]
            hi[k][idx] += eps
            lo[k][idx] -= eps
            fd = ((render_numba(*hi, 10, 11) - render_numba(*lo, 10, 11)) * weights).sum() / (
                2 * eps
            )
            assert abs(fd.item() - p.grad[idx].item()) <= 1e-6 + 1e-5 * abs(fd.item()), (k, idx)


def test_numba_is_deterministic_and_thread_independent():
    scene = make_scene(6, 300, 64, 48)
    grad_out = torch.randn(64, 48, 3, generator=torch.Generator().manual_seed(0))
    img1, grads1 = _render_with_grads(render_numba, scene, 64, 48, grad_out)
    img2, grads2 = _render_with_grads(render_numba, scene, 64, 48, grad_out)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        img3, grads3 = _render_with_grads(render_numba, scene, 64, 48, grad_out)
    finally:
        numba.set_num_threads(threads)
    for other_img, other_grads in ((img2, grads2), (img3, grads3)):
        assert torch.equal(img1, other_img)
        for a, b in zip(grads1, other_grads, strict=True):
            assert torch.equal(a, b)


def test_forward_paths_agree_bitwise():
    means, chol, colors = make_scene(7, 120, 37, 53)
    via_torch = render_numba(means, chol, colors, 37, 53)
    via_numpy = render_numba_forward(means.numpy(), chol.numpy(), colors.numpy(), 37, 53)
    assert isinstance(via_numpy, np.ndarray) and via_numpy.dtype == np.float32
    assert np.array_equal(via_torch.numpy(), via_numpy)
    assert torch.equal(render(means, chol, colors, 37, 53), via_torch)  # auto -> numba on CPU
    assert torch.equal(
        render(means, chol, colors, 37, 53, backend="torch"),
        render_torch(means, chol, colors, 37, 53),
    )
    with pytest.raises(ValueError):
        render(means, chol, colors, 37, 53, backend="nope")


@pytest.mark.parametrize("fn", [render_reference, render_numba, render_torch])
def test_empty_scene_is_zero(fn):
    params = [torch.zeros(0, k, requires_grad=True) for k in (2, 3, 3)]
    img = fn(*params, 37, 53)
    assert img.shape == (37, 53, 3) and not img.any()
    img.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in params)


def test_gaussians_off_image_render_nothing():
    means = torch.tensor([[-50.0, 10.0], [10.0, 200.0], [300.0, -40.0]])
    chol = torch.full((3, 3), 2.0)
    colors = torch.ones(3, 3)
    for fn in (render_reference, render_numba, render_torch):
        assert not fn(means, chol, colors, 37, 53).any()
    assert not render_numba_forward(means.numpy(), chol.numpy(), colors.numpy(), 37, 53).any()


def test_boxes_and_bins():
    height, width = 64, 48
    means, chol, _ = make_scene(8, 200, height, width)
    boxes = bounding_boxes(means, chol, height, width)
    offsets, ids = bin_tiles(boxes, height, width)
    con_nb, boxes_nb, offsets_nb, ids_nb = project_numba(means.numpy(), chol.numpy(), height, width)
    assert np.array_equal(con_nb, conics(chol).numpy())  # same float32 op order, bitwise
    assert np.array_equal(boxes_nb, boxes.numpy())
    assert np.array_equal(offsets_nb, offsets.numpy()) and np.array_equal(ids_nb, ids.numpy())
    for t in range(offsets.numel() - 1):
        tile_ids = ids[offsets[t] : offsets[t + 1]]
        assert torch.all(tile_ids[1:] > tile_ids[:-1])  # strictly ascending
    # every pixel inside an ellipse lies in that Gaussian's box
    con = conics(chol)
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    dx = xs[None] - means[:, 0, None, None]
    dy = ys[None] - means[:, 1, None, None]
    inside = (
        mahalanobis2(con[:, 0, None, None], con[:, 1, None, None], con[:, 2, None, None], dx, dy)
        <= CUTOFF_M2
    )
    jj = torch.arange(width)[None, None, :]
    ii = torch.arange(height)[None, :, None]
    in_box = (
        (jj >= boxes[:, 0, None, None])
        & (jj < boxes[:, 2, None, None])
        & (ii >= boxes[:, 1, None, None])
        & (ii < boxes[:, 3, None, None])
    )
    assert inside.any() and not (inside & ~in_box).any()


def test_torch_tiles_batching_and_checkpointing():
    scene = make_scene(9, 120, 64, 48)
    grad_out = torch.randn(64, 48, 3, generator=torch.Generator().manual_seed(1))
    img_a, grads_a = _render_with_grads(render_torch, scene, 64, 48, grad_out)
    small = lambda m, ch, c, h, w: render_torch(m, ch, c, h, w, max_batch_elems=3000)  # noqa: E731
    img_b, grads_b = _render_with_grads(small, scene, 64, 48, grad_out)
    torch.testing.assert_close(img_b, img_a, rtol=0, atol=1e-5)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * a.abs().max())


def test_reference_chunking_and_checkpointing(monkeypatch):
    scene = make_scene(10, 30, 37, 53)
    grad_out = torch.randn(37, 53, 3, generator=torch.Generator().manual_seed(2))
    img_a, grads_a = _render_with_grads(render_reference, scene, 37, 53, grad_out)
    monkeypatch.setattr(splat_reference, "_CHUNK_ELEMS", 4 * 37 * 53)  # chunks of 4 Gaussians
    img_b, grads_b = _render_with_grads(render_reference, scene, 37, 53, grad_out)
    torch.testing.assert_close(img_b, img_a, rtol=0, atol=1e-5)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * a.abs().max())

"""Tests of the latent codec (dappled.entropy.latent): exact round trips of integer grids with
escapes, the fast predictions against a slow reference written from docs/format.md, the rate
estimate against the real string, bit-exactness with the codec as it was before it moved into
the entropy layer (recorded digests), and clear errors on inconsistent input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from dappled.entropy.latent import (
    MAX_WEIGHT,
    QMAX,
    IntegerARM,
    IntegerLayer,
    LatentCodec,
)
from dappled.errors import BitstreamError, LimitError

NEIGHBOURS = [(0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-1, -2), (-1, 2),
              (-2, -1), (-2, 1), (0, -3), (-3, 0)]

# (seed, grid shapes, context, width, hidden layers) and the digests of the coded words +
# escapes and of the predictions, recorded with dappled/models/field/integer.py at 59c4906
# (before the move): the format must never change.
CASES = [
    ((1, ((23, 31), (12, 16), (1, 7), (5, 1)), 8, 8, 1),
     "2d7e3347b391bc429558d4a45d856bf0431707756109acab0500e0c905f32f09",
     "ec5eaa0a5c2137a8cde024237e19a45a8b76a161025fe7cee61e0f0197414c05"),
    ((2, ((40, 29), (20, 15), (3, 3)), 12, 12, 2),
     "0a2a43132b5371a23029c25c66d4a0eef9229ef2372244057f13de2bb5ea5cf0",
     "212d7c87879cb0ee39a6f102c50f688b0dae6ba268772c14fd61a27afc04ca9d"),
]


def make_case(seed: int, shapes: tuple[tuple[int, int], ...], c: int, h: int,
              layers: int) -> tuple[IntegerARM, list[np.ndarray]]:
    """A random context model and latents that follow it loosely: smooth grids, Laplace noise
    and 1 % outliers anywhere in +-QMAX (escapes)."""
    rng = np.random.default_rng(seed)
    hidden = [IntegerLayer(rng.integers(-400, 401, (h, c)), rng.integers(-2000, 2001, h), 9)]
    if layers == 2:
        hidden.append(IntegerLayer(rng.integers(-300, 301, (h, h)), rng.integers(-2000, 2001, h), 9))
    wo = rng.integers(-40, 41, (2, h + c))
    wo[0, h:] += 40  # mu follows the context
    bo = np.stack([rng.integers(-200, 201, len(shapes)), rng.integers(200, 500, len(shapes))], 1)
    grids = []
    for gh, gw in shapes:
        base = np.cumsum(np.cumsum(rng.normal(0, 0.6, (gh, gw)), 0), 1) * 0.3
        q = np.round(base + rng.laplace(0, 1.5, (gh, gw))).astype(np.int64)
        q[rng.random((gh, gw)) < 0.01] = rng.integers(-QMAX, QMAX + 1)
        grids.append(np.clip(q, -QMAX, QMAX))
    model = IntegerARM(np.array(NEIGHBOURS[:c]), tuple(hidden), IntegerLayer(wo, bo, 8))
    return model, grids


def reference_predictions(model: IntegerARM, grids: list[np.ndarray]) -> np.ndarray:
    """(table id, centre, mu, ln b) per latent, plain Python from docs/format.md."""

    def layer(inputs: list[int], w: np.ndarray, b: np.ndarray, k: int, relu: bool) -> list[int]:
        out = []
        for j in range(len(b)):
            acc = sum(int(w[j, i]) * v for i, v in enumerate(inputs)) + (int(b[j]) << 8)
            v = acc if k == 0 else (acc + (1 << (k - 1))) >> k
            v = max(-(1 << 30), min(1 << 30, v))
            out.append(max(v, 0) if relu else v)
        return out

    rows = []
    for g, q in enumerate(grids):
        for y in range(q.shape[0]):
            for x in range(q.shape[1]):
                ctx = [int(q[y + dy, x + dx]) << 8 if 0 <= y + dy and 0 <= x + dx < q.shape[1] else 0
                       for dy, dx in model.neighbours]
                a = ctx
                for hl in model.hidden:
                    a = layer(a, hl.weight, hl.bias, hl.shift, True)
                o = model.output
                mu, ls = layer(a + ctx, o.weight, o.bias[g], o.shift, False)
                s = min(63, max(0, ((ls + 1001) * 63 + 2066 // 2) // 2066))
                m16 = (mu + 8) >> 4
                rows.append((s * 16 + (m16 & 15), m16 >> 4, mu, ls))
    return np.array(rows, dtype=np.int64).T


def _digest(*arrays: np.ndarray) -> str:
    return hashlib.sha256(b"".join(arrays)).hexdigest()


@pytest.mark.parametrize(("args", "coded_digest", "pred_digest"), CASES)
def test_round_trip_with_escapes_and_recorded_bytes(args: tuple, coded_digest: str, pred_digest: str) -> None:
    model, grids = make_case(*args)
    codec = LatentCodec(model)
    coded = codec.encode(grids)
    assert coded.excess.size > 0 and np.all(coded.excess != 0)  # escapes were exercised
    back = codec.decode(coded.words, coded.excess, [q.shape for q in grids])
    for a, b in zip(grids, back, strict=True):
        np.testing.assert_array_equal(a, b)
    assert _digest(coded.words.astype("<u4").tobytes(), coded.excess.astype("<i8").tobytes()) == coded_digest
    p = codec.predictions(grids)
    assert _digest(np.stack([p.table, p.centre, p.mu, p.log_scale]).astype("<i8").tobytes()) == pred_digest


@pytest.mark.parametrize("args", [c[0] for c in CASES])
def test_predictions_match_the_reference(args: tuple) -> None:
    model, grids = make_case(*args)
    p = LatentCodec(model).predictions(grids)
    ref = reference_predictions(model, grids)
    np.testing.assert_array_equal(np.stack([p.table, p.centre, p.mu, p.log_scale]), ref)


@pytest.mark.parametrize("seed", range(4))
def test_estimated_bits_is_the_real_size_within_one_percent(seed: int) -> None:
    model, grids = make_case(seed, ((64, 96), (32, 48), (16, 24)), 8, 8, 1 + seed % 2)
    codec = LatentCodec(model)
    est = codec.estimated_bits(grids)
    real = 32 * len(codec.encode(grids).words)
    assert est > 1000
    assert abs(real - est) <= 0.01 * est + 64
    bits, escaped = codec.bits(grids)
    assert bits.shape == escaped.shape == (sum(q.size for q in grids),)
    assert np.all(bits > 0) and 0 < escaped.sum() < 0.2 * escaped.size


def test_decoding_errors_are_bitstream_errors() -> None:
    model, grids = make_case(*CASES[0][0])
    codec = LatentCodec(model, name="test latents")
    coded = codec.encode(grids)
    shapes = [q.shape for q in grids]
    for excess in (coded.excess[:-1], np.append(coded.excess, 5), np.append(coded.excess[:-1], 0),
                   np.append(coded.excess[:-1], 10**15)):
        with pytest.raises(BitstreamError, match="test latents"):
            codec.decode(coded.words, excess, shapes)
    with pytest.raises(LimitError):
        codec.decode(coded.words[:2], coded.excess, [(3000, 3000)] * len(shapes))
    rng = np.random.default_rng(0)
    for _ in range(20):  # garbage decodes to in-range latents or a clear error, in bounded time
        words = rng.integers(0, 2**32, int(rng.integers(0, 300)))
        try:
            out = codec.decode(words, rng.integers(1, 50, int(rng.integers(0, 80))), shapes)
        except BitstreamError:
            continue
        assert all(np.abs(q).max(initial=0) <= QMAX for q in out)


def test_bad_models_and_inputs_are_value_errors() -> None:
    model, grids = make_case(*CASES[0][0])
    h, o = model.hidden, model.output
    for nb in ([(0, 1)], [(0, 0)], [(1, -1)], [(-4, 0)], [(-1, 4)]):
        with pytest.raises(ValueError, match="causal"):
            IntegerARM(np.array(nb * 8), h, o)
    with pytest.raises(ValueError, match="shapes"):
        IntegerARM(model.neighbours[:7], h, o)
    with pytest.raises(ValueError, match="integer"):
        IntegerARM(model.neighbours, h, IntegerLayer(o.weight + MAX_WEIGHT, o.bias, o.shift))
    with pytest.raises(ValueError, match="shift"):
        IntegerARM(model.neighbours, h, IntegerLayer(o.weight, o.bias, 17))
    codec = LatentCodec(model)
    with pytest.raises(ValueError, match="grids"):
        codec.encode(grids[:-1])
    with pytest.raises(ValueError, match="range"):
        codec.encode([grids[0] + 2 * QMAX, *grids[1:]])

"""BD-rate and BD-PSNR (PCHIP over the overlapping range) on curves with known answers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dappled.eval.bdrate import bd_psnr, bd_quality, bd_rate, msssim_db

# A JPEG-like anchor: bpp and PSNR of a quality sweep (both increasing).
RATE = [0.25, 0.41, 0.62, 0.91, 1.35, 2.1]
PSNR = [26.9, 29.0, 30.9, 32.4, 34.6, 37.2]


def test_identical_curves_give_zero() -> None:
    assert bd_rate(RATE, PSNR, RATE, PSNR) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(RATE, PSNR, RATE, PSNR) == pytest.approx(0.0, abs=1e-9)


def test_rates_scaled_by_0_9_give_minus_10_percent() -> None:
    test_rate = [0.9 * r for r in RATE]
    assert bd_rate(RATE, PSNR, test_rate, PSNR) == pytest.approx(-10.0, abs=0.1)
    # and the other way round: the anchor needs 1/0.9 of the test's bits
    assert bd_rate(test_rate, PSNR, RATE, PSNR) == pytest.approx(100 / 0.9 - 100, abs=0.1)


def test_psnr_shifted_by_one_db_gives_plus_one() -> None:
    shifted = [p + 1.0 for p in PSNR]
    assert bd_psnr(RATE, PSNR, RATE, shifted) == pytest.approx(1.0, abs=1e-9)
    assert bd_quality(RATE, shifted, RATE, PSNR) == pytest.approx(-1.0, abs=1e-9)
    assert bd_rate(RATE, PSNR, RATE, shifted) < 0  # better quality at equal rate saves bits


def test_only_the_overlap_counts() -> None:
    # log-rate linear in PSNR, so PCHIP through any subset is the same line
    rate = [0.2 * 1.4**k for k in range(7)]
    q = [26.0 + 2 * k for k in range(7)]
    # the test curve covers only the middle of the anchor's range, at 0.8x its rate
    sub = slice(2, 5)
    assert bd_rate(rate, q, [0.8 * r for r in rate[sub]], q[sub]) == pytest.approx(-20.0, abs=1e-6)
    # an anchor much wider than the test curve changes nothing either
    assert bd_psnr(rate, q, rate[sub], [v + 0.7 for v in q[sub]]) == pytest.approx(0.7, abs=1e-6)


def test_point_order_does_not_matter() -> None:
    rev_r, rev_p = RATE[::-1], PSNR[::-1]
    assert bd_rate(RATE, PSNR, rev_r, [p + 0.5 for p in rev_p]) == pytest.approx(
        bd_rate(RATE, PSNR, RATE, [p + 0.5 for p in PSNR]))


def test_bad_curves_raise() -> None:
    with pytest.raises(ValueError, match="overlap"):
        bd_rate(RATE[:2], PSNR[:2], RATE[4:], PSNR[4:])
    with pytest.raises(ValueError, match="at least 2"):
        bd_rate(RATE, PSNR, [0.5], [30.0])
    with pytest.raises(ValueError, match="positive"):
        bd_psnr(RATE, PSNR, [0.0, 1.0], [30.0, 33.0])
    with pytest.raises(ValueError, match="repeated"):
        bd_rate(RATE, PSNR, [0.5, 0.6], [30.0, 30.0])
    with pytest.raises(ValueError, match="length"):
        bd_rate(RATE, PSNR[:-1], RATE, PSNR)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(0.05, 1.0), min_size=2, max_size=8),
    dq=st.lists(st.floats(0.3, 4.0), min_size=8, max_size=8),
    scale=st.floats(0.3, 3.0),
    shift=st.floats(-3.0, 3.0),
)
def test_exact_answers_for_any_monotone_curve(steps: list[float], dq: list[float], scale: float,
                                              shift: float) -> None:
    rate = [0.1]
    for s in steps:
        rate.append(rate[-1] * math.exp(s))
    q = [25.0]
    for d in dq[: len(rate) - 1]:
        q.append(q[-1] + d)
    assert bd_rate(rate, q, [scale * r for r in rate], q) == pytest.approx((scale - 1) * 100, rel=1e-6,
                                                                             abs=1e-6)
    assert bd_psnr(rate, q, rate, [v + shift for v in q]) == pytest.approx(shift, abs=1e-6)


def test_msssim_db() -> None:
    assert msssim_db(0.99) == pytest.approx(20.0)
    assert math.isfinite(msssim_db(1.0))

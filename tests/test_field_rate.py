"""Field rate control (models/field/rate.py): lambda predicted before the fit, bounded moves in it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dappled.datasets import SAMPLE_IMAGE, load_image
from dappled.models.field.rate import (
    DRIFT,
    LIMITS,
    PROBES,
    RATE_POWER,
    RateSteer,
    predict_lambda,
    webp_curve,
)


def test_lambda_falls_as_the_target_rate_rises() -> None:
    img = load_image(SAMPLE_IMAGE)[:192, :256].copy()
    lams = [predict_lambda(img, b) for b in (0.1, 0.3, 1.0, 3.0)]
    assert all(a > b for a, b in itertools.pairwise(lams)), lams


def test_shorter_fits_get_a_larger_lambda() -> None:
    img = load_image(SAMPLE_IMAGE)[:128, :128].copy()
    assert predict_lambda(img, 0.5, 250) > predict_lambda(img, 0.5, 1000)


def test_webp_curve_is_monotone() -> None:
    rates, mses = webp_curve(load_image(SAMPLE_IMAGE)[:128, :192].copy())
    assert np.all(np.diff(rates) > 0) and np.all(np.diff(mses) < 0)


def test_a_trajectory_on_target_moves_nothing() -> None:
    """Rates that fall exactly as the fixed-lambda model says and end on the target: lambda stays."""
    target = 0.5
    steer = RateSteer(target)
    first = target / DRIFT
    lam = 0.003
    for f in PROBES:
        # the fixed-lambda trend that ends on the target: log(final/R) = TREND * log(R/R1)
        r = first if f == PROBES[0] else _rate_on_trend(first, target, f)
        lam = steer(f, r, lam)
    assert lam == 0.003
    assert all(new == old for _, _, old, new in steer.log)


def _rate_on_trend(first: float, final: float, frac: float) -> float:
    from dappled.models.field.rate import TREND

    # final = R * (R / first)**a  ->  log R = (log final + a log first) / (1 + a)
    a = TREND[frac]
    return math.exp((math.log(final) + a * math.log(first)) / (1 + a))


@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_moves_are_bounded(scale: float) -> None:
    """A rate ten times off moves lambda by at most each probe's limit, in the right direction."""
    steer = RateSteer(0.5)
    lam = 0.003
    for f in PROBES:
        new = steer(f, 0.5 * scale / DRIFT, lam)
        limit = LIMITS[f][0]
        assert 1 / limit - 1e-12 <= new / lam <= limit + 1e-12
        assert (new > lam) == (scale > 1)
        lam = new


def test_moves_count_in_later_predictions() -> None:
    """After a move, a rate that fell by just what the move has done so far predicts the
    no-move final rate times the move's whole effect."""
    from dappled.models.field.rate import RESPONSE, RESPONSE_LEFT

    first, k = 1.0, 2.0
    f0, f1 = PROBES[0], PROBES[1]
    plain, moved = RateSteer(0.5), RateSteer(0.5)
    plain(f0, first, 0.003)
    moved(f0, first, 0.003)
    moved._moves.append((f0, k))
    r = 0.8
    done = k ** (-RATE_POWER * (RESPONSE[f0] - RESPONSE_LEFT[f0][f1]))
    expected = plain.predict(f1, r) * k ** (-RATE_POWER * RESPONSE[f0])
    assert moved.predict(f1, r * done) == pytest.approx(expected, rel=1e-9)
    assert moved.predict(f1, r * done) < plain.predict(f1, r)



def test_short_fits_are_steered_within_bounds() -> None:
    """The steer's calibration does not hold for 200-iteration whole-image fits (unbounded, it
    landed 60 % under the target): a short fit's lambda on a large image stays within
    SHORT_FIT_LIMIT of the predicted one, whatever the probes say; a long fit's moves, and a
    short one's on a small image, are not bounded that way."""
    from dappled.models.field.rate import SHORT_FIT_LIMIT, STEER_BOUND_PIXELS, STEER_MIN_ITERATIONS, steer_for

    big = STEER_BOUND_PIXELS
    short = steer_for(0.25, STEER_MIN_ITERATIONS - 1, big)
    lam = 0.01
    for f in short.probes:  # the rate at every probe says "far too many bits": lambda up
        lam = short(f, 4.0, lam)
    assert lam == pytest.approx(0.01 * SHORT_FIT_LIMIT)
    lam = 0.01
    for free in (steer_for(0.25, STEER_MIN_ITERATIONS, big), steer_for(0.25, 100, big - 1)):
        lam = 0.01  # a long fit, or a short one on a small image: not bounded that way
        for f in free.probes:
            lam = free(f, 4.0, lam)
        assert lam > 0.01 * SHORT_FIT_LIMIT * 2
    low = steer_for(0.25, 100, big)
    lam = 0.01
    for f in low.probes:  # far too few bits: lambda down, as far as the bound
        lam = low(f, 0.001, lam)
    assert lam == pytest.approx(0.01 / SHORT_FIT_LIMIT)

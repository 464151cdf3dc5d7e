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



def test_short_fits_get_the_trend_steer_within_bounds() -> None:
    """RateSteer's calibration does not hold for 200-iteration whole-image fits (it landed 60 %
    under the target): a short fit on a large image gets TrendSteer, whose lambda stays within
    SHORT_FIT_LIMIT of the predicted one whatever the probes say; long fits keep RateSteer."""
    from dappled.models.field.fit import SHORT_FIT_ITERATIONS, SHORT_FIT_PIXELS, is_short_fit
    from dappled.models.field.rate import SHORT_FIT_LIMIT, TrendSteer, steer_for

    assert is_short_fit(SHORT_FIT_ITERATIONS - 1, SHORT_FIT_PIXELS)
    assert not is_short_fit(SHORT_FIT_ITERATIONS, SHORT_FIT_PIXELS)
    assert not is_short_fit(100, SHORT_FIT_PIXELS - 1)
    assert isinstance(steer_for(0.25, True), TrendSteer)
    assert isinstance(steer_for(0.25, False), RateSteer)
    for rate, bound in ((4.0, SHORT_FIT_LIMIT), (0.001, 1 / SHORT_FIT_LIMIT)):
        short = steer_for(0.25, True)
        lam = 0.01
        for f in short.probes:  # far too many (few) bits at every probe: lambda up (down) to the bound
            lam = short(f, rate * (1 - f), lam)
        assert lam == pytest.approx(0.01 * bound)


def _on_trend(steer: object, target: float) -> list[tuple[float, float]]:
    """Probe rates of a fixed-lambda fit that each decision predicts to end exactly on target."""
    from dappled.models.field.rate import TrendSteer

    assert isinstance(steer, TrendSteer)
    rates: dict[float, float] = {}
    for d in steer.decisions:  # R(ref) = R(at) * 1.1, and R(at) * exp(a + b log(1 / 1.1)) = target
        rates[d.at] = target / math.exp(d.a - d.b * math.log(1.1))
        rates[d.ref] = rates[d.at] * 1.1
    return sorted(rates.items())


def test_a_short_fit_on_its_trend_moves_nothing_and_a_miss_moves_lambda_its_way() -> None:
    from dappled.models.field.rate import TrendSteer, move_power

    steer = TrendSteer(0.3)
    lam = 0.004
    for f, r in _on_trend(steer, 0.3):
        lam = steer(f, r, lam)
    assert lam == 0.004
    for scale, up in ((1.5, True), (1 / 1.5, False)):  # every rate 1.5x (1/1.5x): lambda up (down)
        steer = TrendSteer(0.3)
        lam = 0.004
        moves = []
        for f, r in _on_trend(steer, 0.3):
            new = steer(f, r * scale, lam)
            moves.append(new / lam)
            lam = new
        first = next(m for m in moves if m != 1.0)
        assert (first > 1.0) == up
        # the first decision fixes most of the miss: the full effect of its move is the miss
        d = steer.decisions[0]
        full = scale ** (1 / (move_power(0.004) * d.response))
        assert first == pytest.approx(min(max(full, 1 / d.limit), d.limit))

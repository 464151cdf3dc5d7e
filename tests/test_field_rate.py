"""Field rate control (models/field/rate.py): lambda predicted before the fit, bounded moves in it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dappled.datasets import SAMPLE_IMAGE, load_image
from dappled.models.field.rate import (
    FINAL,
    LIMITS,
    LONG_FIT_LIMIT,
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


def _on_target(frac: float, target: float, lam: float, iterations: int) -> float:
    """The hard rate at `frac` from which a fixed-lambda fit is predicted to end on `target`."""
    a, b, c = FINAL[frac]
    return target / math.exp(a + b * math.log(lam) + c * math.log(iterations))


def test_a_trajectory_on_target_moves_nothing() -> None:
    """Rates that fall exactly as the fixed-lambda model says and end on the target: lambda stays."""
    target = 0.5
    steer = RateSteer(target, 600)
    lam = 0.003
    for f in PROBES:
        lam = steer(f, _on_target(f, target, 0.003, 600), lam)
    assert lam == 0.003
    assert all(new == old for _, _, old, new in steer.log)


def test_the_fall_still_to_come_is_larger_at_a_higher_lambda_and_in_a_shorter_fit() -> None:
    """Measured on fixed-lambda fits (session 12): a high lambda keeps squeezing the rate after
    the probes, and a short fit has more of its fall ahead of it at 20 and 35 %."""
    for f in PROBES:
        assert RateSteer(0.5, 600).predict(f, 1.0, 0.01) < RateSteer(0.5, 600).predict(f, 1.0, 0.001)
    for f in (0.2, 0.35):
        assert RateSteer(0.5, 150).predict(f, 1.0, 0.003) < RateSteer(0.5, 1000).predict(f, 1.0, 0.003)
        # past its longest calibration fits the term is not extrapolated (1,800-iteration fits of
        # whole images landed lower than 1,000-iteration ones, not higher)
        assert RateSteer(0.5, 1800).predict(f, 1.0, 0.003) == RateSteer(0.5, 1000).predict(f, 1.0, 0.003)


@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_moves_are_bounded(scale: float) -> None:
    """A rate ten times off moves lambda by at most each probe's limit, in the right direction,
    and never beyond LONG_FIT_LIMIT of where it started."""
    steer = RateSteer(0.5, 1000)
    lam = 0.003
    for f in PROBES:
        new = steer(f, scale * _on_target(f, 0.5, 0.003, 1000), lam)
        limit = LIMITS[f][0]
        assert 1 / limit - 1e-12 <= new / lam <= limit + 1e-12
        assert new == lam or (new > lam) == (scale > 1)
        lam = new
    assert steer.log[0][3] != steer.log[0][2]  # the first probe already moves
    assert 1 / LONG_FIT_LIMIT - 1e-12 <= lam / 0.003 <= LONG_FIT_LIMIT + 1e-12
    assert lam / 0.003 == pytest.approx(LONG_FIT_LIMIT ** (1 if scale > 1 else -1))


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
    expected = plain.predict(f1, r, 0.003) * k ** (-RATE_POWER * RESPONSE[f0])
    assert moved.predict(f1, r * done, 0.003) == pytest.approx(expected, rel=1e-9)
    assert moved.predict(f1, r * done, 0.003) < plain.predict(f1, r, 0.003)


def test_the_rate_estimate_prices_a_small_images_network_lower() -> None:
    """quantize_network spends fewer bits per weight on a small image: the fit's estimate (what
    the steer's probes see) follows, and stays at 9 bits on Kodak-sized images, where the
    short-fit steer was calibrated with it."""
    from dappled.models.field.fit import NET_BITS_PER_PARAM, image_config, net_bits_per_param

    sizes = [64 * 64, 128 * 128, 256 * 256, 384 * 256, 768 * 512]
    bits = [net_bits_per_param(n) for n in sizes]
    assert all(a <= b for a, b in itertools.pairwise(bits)) and bits[0] < bits[-1]
    assert bits[-1] == NET_BITS_PER_PARAM and 5.0 <= bits[0]
    assert image_config(0.002, 600, 128 * 128).net_bits_per_param == net_bits_per_param(128 * 128)


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


def _on_trend(steer: object, target: float, lam0: float = 0.004) -> list[tuple[float, float]]:
    """Probe rates of a fixed-lambda fit (at lam0) that each decision predicts to end exactly on
    target."""
    from dappled.models.field.rate import TrendSteer

    assert isinstance(steer, TrendSteer)
    rates: dict[float, float] = {}
    for d in steer.decisions:  # R(ref) = 1.1 R(at); R(at) exp(a + b log(1/1.1) + c log lam0) = target
        rates[d.at] = target / math.exp(d.a - d.b * math.log(1.1) + d.c * math.log(lam0))
        rates[d.ref] = rates[d.at] * 1.1
    return sorted(rates.items())


def test_a_short_fit_at_a_higher_first_lambda_is_predicted_to_fall_further() -> None:
    """The same probe rates in a fit that started at a higher lambda (a lower target) predict a
    lower final rate at 35 %, so lambda comes down: session 12's constants, without the term,
    landed 0.125 bpp 5.8 % low on average over the 24 Kodak images."""
    from dappled.models.field.rate import TrendSteer

    assert TrendSteer(0.3).decisions[-1].c < 0
    ends = []
    for lam0 in (0.002, 0.02):
        steer, lam = TrendSteer(0.3), lam0
        for f, r in _on_trend(steer, 0.3, 0.002):
            lam = steer(f, r, lam)
        ends.append(lam / lam0)
    assert ends[0] == 1.0  # on its trend at its own lambda: nothing moves
    assert ends[1] < 1.0  # the same rates from a 10x higher lambda: predicted low, lambda down


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

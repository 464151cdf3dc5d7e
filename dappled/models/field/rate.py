"""Rate control for the field fit: hit a bits-per-pixel target without leaving the fixed-lambda
rate-distortion curve.

A fit at a fixed lambda lands on the codec's curve; moving lambda by large factors late in a fit
does not (the latents and the entropy model settle for one lambda, then are squeezed to another:
up to 3 dB lost, measured in issue 20). So lambda is chosen before the fit and only nudged:

1. :func:`predict_lambda`: lambda is the slope of the rate-distortion curve at the target rate.
   The image's own curve is measured cheaply with WebP at a few qualities (~1 s of one core for
   768x512); the field's curve is parallel to WebP's to first order, and the calibration maps
   WebP's slope and the target to the field's lambda.
2. :class:`RateSteer`: at a few early points of the fit, the rate the hard-rounded latents would
   cost is measured; with the fall still to come (calibrated: larger at a higher lambda and in a
   shorter fit) that predicts the final rate, and lambda moves by a bounded factor (wider early,
   narrow later).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np

# log lambda = A + B log(WebP slope at the target) + C log(target bpp); least squares over the 96
# default-effort Kodak points of docs/data/kodak-field-default-v2 (leave-one-image-out error
# 0.26 in log lambda, ~17 % in rate), before the steer corrects the rest
_A, _B, _C = -2.078, 0.673, -0.188
WEBP_QUALITIES = (4, 13, 29, 57, 80, 90)
ITERATION_POWER = 0.14  # rate ~ iterations**-ITERATION_POWER at a fixed lambda
LAMBDA_RANGE = (1e-5, 1.0)  # what the fit is ever asked to use (the presets span 5e-4 .. 0.064)
RATE_POWER = 0.67  # d log bpp / d log lambda, measured within Kodak images (sd 0.13)
# _A, _B, _C were fitted to fits of the sessions 1-10 recipe. Session 11's coarser steps and softer
# rounding (fit.image_config) land 15 % lower at the same lambda in 1000-iteration fits (five
# 384x256 Kodak crop cases at lambda 0.0005-0.008: -10 to -23 %, mean log -0.167), so a long fit's
# lambda is scaled by exp(-0.167 / RATE_POWER) to land where it did (RateSteer corrects the rest):
# 0.78. Session 12's noise 0.5 (fit.IMAGE_NOISE) lands lower again; base_lambda's fixed-lambda
# fits of 128x128 and 256x256 crops at 150-600 iterations land -0.10 in log rate (sd 0.23), 1000-
# iteration 384x256 crops ~x0.73 of the rate without the noise: 0.72 sits between.
LONG_LAMBDA_SCALE = 0.72

# The steer's probes (fractions of the fit). R(p) is the hard-rounded rate at probe p (the
# latents' bits plus the network's estimate, fit.net_bits_per_param). FINAL: the final payload
# rate of a fixed-lambda fit is predicted as log(final / R(p)) = a + b log(lambda) + c
# log(iterations): the rate falls further after the probes at a higher lambda and in a shorter
# fit. Session 12 (noise 0.5 before the second rounding, fit.IMAGE_NOISE): least squares over 34
# fixed-lambda fits (128x128 crops at 150 and 600 iterations, 256x256 at 300 and 425, 384x256 at
# 1000; docs/data/field-rate-s12/traj-small.jsonl and field-recipe-s11/long-traj-noise05.jsonl),
# leave-one-image-out rms 0.149 / 0.092 / 0.053 in log rate at 10 / 20 / 35 %. (Before: DRIFT
# 0.733 and TREND 0.92, 0.41, a fall-so-far model; with the noise its residuals grew and a 128x128
# crop at 600 iterations landed +36 %.) RESPONSE: the share of a lambda move's full effect on the
# final rate when it is made at p (x4 at 0.15: 0.91; at 0.3: 0.6; at 0.5: 0.17); RESPONSE_LEFT:
# what of it is still to come at a later probe. LIMITS: the largest lambda factor at p, and the
# predicted miss within which lambda stays; LONG_FIT_LIMIT: lambda stays within this factor of the
# predicted one.
PROBES = (0.1, 0.2, 0.35)
FINAL = {0.1: (-0.682, -0.054, 0.0), 0.2: (-1.058, -0.072, 0.065), 0.35: (-0.728, -0.051, 0.048)}
# FINAL's iteration term holds up to its longest fits (1000 iterations): the default effort's
# 1,800-iteration fits of whole images land lower than at 1,000, not higher as the term extrapolated
# says (session 13, `--bpp` kodim05 0.5 / kodim23 0.25 / kodim19 1.0: -4.5 / -7.6 / -3.8 % against
# +1.0 / -6.7 / -1.1 % at 1,000), so longer fits are predicted as 1,000-iteration ones.
FINAL_MAX_ITERATIONS = 1000
RESPONSE = {0.1: 0.95, 0.2: 0.85, 0.35: 0.5}
RESPONSE_LEFT = {0.1: {0.2: 0.25, 0.35: 0.07}, 0.2: {0.35: 0.12}, 0.35: {}}
LIMITS = {0.1: (2.0, 1.25), 0.2: (2.0, 1.03), 0.35: (1.3, 1.03)}
LONG_FIT_LIMIT = 4.0
# The steer's constants hold for fits of >= 250 iterations on crops and 1000 on whole images. A
# 200-iteration (fast effort) whole-image fit of kodim01 falls much further after its probes
# (at a fixed lambda, final / R(0.1) = 0.43 and final / R(0.35) = 0.71, against 0.48-0.86 and
# 0.78-0.97 calibrated; kodim05, 15 and 23 stay inside), so the steer tripled lambda and landed
# 60 % under the target (0.125 / 0.25 / 0.5 landed 0.031 / 0.100 / 0.358). Without a steer the
# predicted lambda alone landed kodim01 25-28 % over (0.160 / 0.313 for 0.125 / 0.25) and a
# 128x128 crop 12.5 % over.
# On small images short fits steer well (a 128x128 crop at 150 iterations lands 0.4 and 1.2 bpp
# within 10 %; 384x256 crops at 250 iterations within 5-14 %). So RateSteer serves long fits and
# small images; a short fit on a large image (fit.is_short_fit: the boundary lies between the
# two measured cases, 98 k pixels steered well, 393 k did not) runs the short recipe
# (fit.SHORT_LR_NET) and is steered by TrendSteer, calibrated on such fits.


def webp_curve(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, MSE on [0, 1]) of the image through WebP (method 6) at WEBP_QUALITIES."""
    from PIL import Image

    pil = Image.fromarray(image)
    ref = image.astype(np.float64)
    rates, mses = [], []
    for q in WEBP_QUALITIES:
        buf = io.BytesIO()
        pil.save(buf, "WEBP", quality=q, method=6)
        rates.append(8.0 * buf.tell() / (image.shape[0] * image.shape[1]))
        buf.seek(0)
        rec = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float64)
        mses.append(max(float(np.mean((rec - ref) ** 2)) / 255.0**2, 1e-12))
    return np.array(rates), np.array(mses)


def curve_slope(rates: np.ndarray, mses: np.ndarray, bpp: float) -> float:
    """-dMSE/dbpp of a measured curve at bpp: a line in log-log through its 3 nearest points
    (extrapolated beyond its ends)."""
    lb, lm = np.log(rates), np.log(mses)
    x = math.log(bpp)
    near = np.argsort(np.abs(lb - x))[:3]
    if len(set(lb[near].round(9))) < 2:
        return math.exp(lm.mean()) / bpp
    b, a = np.polyfit(lb[near], lm[near], 1)
    mse = math.exp(a + b * x)
    return max(-b, 0.05) * mse / bpp


def base_lambda(image: np.ndarray, bpp: float, iterations: int = 1000) -> float:
    """The lambda of the calibration (_A, _B, _C) for `bpp`, before a recipe's scale: what the
    rate control's calibrations (benchmarks/field_rate_calibrate.py) measure their landings
    against. Shorter fits spend more bits at the same lambda (rate ~ iterations**-0.14 around
    250..1000 iterations, measured on Kodak crops), so lambda grows for them."""
    if image.shape[0] * image.shape[1] < 64:  # too small for a curve: the Kodak-average guess
        lam = 0.002 * (0.6 / bpp) ** (1 / RATE_POWER)
    else:
        slope = curve_slope(*webp_curve(image), bpp)
        lam = math.exp(_A + _B * math.log(slope) + _C * math.log(bpp))
    return lam * (1000.0 / max(iterations, 1)) ** (ITERATION_POWER / RATE_POWER)


def predict_lambda(image: np.ndarray, bpp: float, iterations: int = 1000, short: bool = False) -> float:
    """The lambda whose fixed-lambda fit of this image should land near `bpp`: :func:`base_lambda`
    times the recipe's scale (a short fit, fit.is_short_fit: SHORT_LAMBDA_SCALE; a long one:
    LONG_LAMBDA_SCALE)."""
    lam = base_lambda(image, bpp, iterations) * (SHORT_LAMBDA_SCALE if short else LONG_LAMBDA_SCALE)
    return float(np.clip(lam, *LAMBDA_RANGE))


@dataclass
class RateSteer:
    """Moves lambda at the fit's probes so that the predicted final rate meets the target.

    A move early in the fit is free (lambda x4 at 15 % landed on the fixed-lambda curve) while a
    late one costs quality and moves the rate little (x4 at 50 %: -12 % rate for -0.6 dB against
    the curve; at 30 %: 0.2 to 0.4 dB lost on two Kodak crops). So the correction is made at
    10 % (gross misses) and 20 % of the fit, and a bounded one at 35 %, when the prediction is
    better. Each prediction first removes what earlier moves have already done to the rate
    (RESPONSE - RESPONSE_LEFT), adds the fixed-lambda fall still to come (FINAL), then adds back
    the full effect of the moves.
    """

    target: float
    iterations: int = 1000  # the fit's length (FINAL's prediction depends on it)
    log: list[tuple[float, float, float, float]] = field(default_factory=list)
    _lam0: float | None = None
    _moves: list[tuple[float, float]] = field(default_factory=list)

    probes: tuple[float, ...] = PROBES

    def predict(self, frac: float, rate: float, lam0: float) -> float:
        """The final rate at the lambda now, from the hard rate at `frac` of a fit that started
        at `lam0`."""
        done = sum(math.log(k) * (RESPONSE[f] - RESPONSE_LEFT[f].get(frac, 0.0)) for f, k in self._moves)
        full = sum(math.log(k) * RESPONSE[f] for f, k in self._moves)
        still = math.log(rate) + RATE_POWER * done  # the rate now, had lambda never moved
        a, b, c = FINAL[frac]
        n_it = min(max(self.iterations, 1), FINAL_MAX_ITERATIONS)  # not extrapolated past its fits
        final = still + a + b * math.log(lam0) + c * math.log(n_it)
        return math.exp(final - RATE_POWER * full)

    def __call__(self, frac: float, hard_bpp: float, lam: float) -> float:
        if self._lam0 is None:
            self._lam0 = lam
        miss = self.predict(frac, hard_bpp, self._lam0) / self.target
        limit, dead = LIMITS[frac]
        new = lam
        if abs(math.log(miss)) > math.log(dead):
            factor = float(np.clip(miss ** (1 / (RATE_POWER * RESPONSE[frac])), 1 / limit, limit))
            new = float(np.clip(lam * factor, *LAMBDA_RANGE))
            new = float(np.clip(new, self._lam0 / LONG_FIT_LIMIT, self._lam0 * LONG_FIT_LIMIT))
        if new != lam:
            self._moves.append((frac, new / lam))
        self.log.append((frac, hard_bpp, lam, new))
        return new


@dataclass(frozen=True)
class Decision:
    """One of TrendSteer's decisions: at probe `at`, the final rate of a fixed-lambda fit is
    predicted as R(at) * exp(a + b * log(R(at) / R(ref)) + c * log(lambda0)) (lambda0: the fit's
    first lambda), and lambda moves so that it meets the target; `response` is the share of a
    move's full effect on the final rate when made here (a move at the fit's start has all of
    it)."""

    at: float
    ref: float
    a: float
    b: float
    response: float
    limit: float  # the largest lambda factor of this move
    dead: float  # a predicted miss within this factor moves nothing
    c: float = 0.0  # a higher first lambda: the rate falls further after the probe


# Short fits on large images (fit.is_short_fit: the fast effort, 300 iterations at 768x512 with
# the networks at fit.SHORT_LR_NET), calibrated by benchmarks/field_rate_calibrate.py on
# fixed-lambda trajectories at 300 iterations, lambda from base_lambda for a target: session 11,
# with the coarser steps and softer rounding of fit.image_config, 24 fits of 18 Kodak images
# (docs/data/field-recipe-s11/trajectory-300-s11.jsonl; before: 48 fits of the 24 images,
# docs/data/field-fast-v4/trajectory-300.jsonl); the move responses and SHOWN come from lambda x2
# moves at 5, 15 and 35 % of 200-iteration fits of the session-3 recipe
# (field-fast-v3/moves-lrnet04.jsonl); docs/results.md, "Fast-effort rate control" and sessions
# 11-12. Session 12: with noise 0.5 before the second rounding (fit.IMAGE_NOISE), 24 fits of 18
# Kodak images (docs/data/field-recipe-s11/trajectory-300-noise05.jsonl). Final-rate prediction,
# leave one image out: rms 0.118 in log rate at 15 %, 0.047 at 35 % (without the noise 0.112 and
# 0.023; sessions 3-10 0.081 and 0.013: the rate falls longer after the probes now).
# The responses with the noise: lambda x2 at 15 % of 300-iteration fits of kodim05, 07 (and 18)
# 0.79 / 0.81 (0.84 before); at 35 % 0.57 / 0.55 / 0.85 (0.40 before): the noisier fit adapts for
# longer (docs/data/field-rate-s12/moves-v1.jsonl). Session 13: at 35 % the first lambda
# predicts too (a higher lambda, a lower target, falls further: the session-12 constants landed
# 0.125 bpp 5.8 % low on average over all 24 Kodak images): leave-one-image-out rms 0.047 ->
# 0.037 (at 15 % it does not help: 0.118 -> 0.127).
SHORT_DECISIONS = (
    Decision(0.15, 0.1, -0.181, 0.988, 0.80, 2.0, 1.02),
    Decision(0.35, 0.3, -0.239, 2.276, 0.65, 1.6, 1.015, c=-0.027),
)
# SHOWN[m][p]: the share of a move's effect on the final rate that the rate at probe p already
# shows, for a move made at m (the rest is still to come, and its arrival steepens the fall);
# the mean of kodim05 and kodim23
SHOWN = {0.15: {0.2: 0.38, 0.25: 0.61, 0.3: 0.77, 0.35: 0.86, 0.4: 0.92, 0.45: 0.95, 0.5: 0.97}}
# base_lambda times this centres where such fits land (0.665 in session 11, 0.83 before)
SHORT_LAMBDA_SCALE = 0.497
SHORT_FIT_LIMIT = 2.0  # lambda stays within this factor of the predicted one


def move_power(lam: float) -> float:
    """d log bpp / d log lambda of a lambda move in a short fit (the latent steps stay those of
    the first lambda): 0.85 on kodim05 at lambda 0.018 (0.24 bpp), 0.32 on kodim23 at 0.00035
    (0.67 bpp), lambda x2 at 5 % of the fit; linear in log lambda between, clipped."""
    t = (math.log(0.018) - math.log(lam)) / (math.log(0.018) - math.log(0.00035))
    return float(np.clip(0.85 + (0.32 - 0.85) * t, 0.3, 0.9))


@dataclass
class TrendSteer:
    """Rate control of a short fit: at each decision the final rate is predicted from the rate
    now and its local fall (a fast fall now means most of the fall is done), both cleared of what
    earlier moves are still doing to them, and lambda moves by a bounded factor."""

    target: float
    decisions: tuple[Decision, ...] = SHORT_DECISIONS
    max_total: float = SHORT_FIT_LIMIT
    log: list[tuple[float, float, float, float]] = field(default_factory=list)
    _rates: dict[float, float] = field(default_factory=dict)
    _lam0: float | None = None
    _moves: list[tuple[Decision, float, float]] = field(default_factory=list)  # (where, factor, power)

    @property
    def probes(self) -> tuple[float, ...]:
        """Where the fit measures its hard-rounded rate: each decision and its reference."""
        return tuple(sorted({p for d in self.decisions for p in (d.ref, d.at)}))

    def predict(self, d: Decision) -> float:
        """The final rate at the lambda now, had nothing more moved, from the probes up to d."""
        now, ref = self._rates[d.at], self._rates[d.ref]
        fall, still = math.log(now / ref), 0.0
        for m, k, power in self._moves:  # a move's full effect on the log rate
            effect = -power * m.response * math.log(k)
            shown = SHOWN.get(m.at, {})
            at, before = shown.get(d.at, 1.0), shown.get(d.ref, 1.0 if d.ref > m.at else 0.0)
            fall -= effect * (at - before)  # the fall the move caused between ref and at
            still += effect * (1.0 - at)
        lam0 = self._lam0 if self._lam0 is not None else 1.0
        return math.exp(math.log(now) + d.a + d.b * fall + d.c * math.log(lam0) + still)

    def __call__(self, frac: float, hard_bpp: float, lam: float) -> float:
        if self._lam0 is None:
            self._lam0 = lam
        self._rates[frac] = hard_bpp
        new = lam
        d = next((d for d in self.decisions if d.at == frac), None)
        if d is not None:
            miss = self.predict(d) / self.target
            power = move_power(lam)
            if abs(math.log(miss)) > math.log(d.dead):
                factor = float(np.clip(miss ** (1 / (power * d.response)), 1 / d.limit, d.limit))
                new = float(np.clip(lam * factor, *LAMBDA_RANGE))
                new = float(np.clip(new, self._lam0 / self.max_total, self._lam0 * self.max_total))
            if new != lam:
                self._moves.append((d, new / lam, power))
        self.log.append((frac, hard_bpp, lam, new))
        return new


def steer_for(target_bpp: float, short: bool, iterations: int = 1000) -> RateSteer | TrendSteer:
    """The rate steer of a fit towards `target_bpp` (payload bits per pixel): RateSteer's
    calibration holds for long fits and small images; a short fit on a large image
    (fit.is_short_fit) gets TrendSteer."""
    return TrendSteer(target_bpp) if short else RateSteer(target_bpp, iterations)

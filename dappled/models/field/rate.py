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
   cost is measured; times a calibrated drift (the rate keeps falling as the fit goes on), that
   predicts the final rate, and lambda moves by a bounded factor (wider early, narrow later).
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

# The steer's probes (fractions of the fit), measured on 384x256 Kodak crops at 250 and 1000
# iterations: DRIFT, the final rate over the hard rate then at a fixed lambda; RESPONSE, the
# share of a lambda move's full effect on the final rate when it is made then; RESPONSE_LEFT,
# what of a move's effect is still to come at a later probe; LIMITS, the largest factor and the
# miss below which lambda stays.
PROBES = (0.15, 0.3, 0.5, 0.7)
DRIFT = {0.15: 0.75, 0.3: 0.88, 0.5: 0.96, 0.7: 0.99}
RESPONSE = {0.15: 0.9, 0.3: 0.6, 0.5: 0.35, 0.7: 0.15}
RESPONSE_LEFT = {0.15: {0.3: 0.07, 0.5: 0.02}, 0.3: {0.5: 0.06, 0.7: 0.02}, 0.5: {0.7: 0.1}, 0.7: {}}
LIMITS = {0.15: (3.0, 1.1), 0.3: (2.0, 1.03), 0.5: (1.4, 1.02), 0.7: (1.25, 1.02)}


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


def predict_lambda(image: np.ndarray, bpp: float, iterations: int = 1000) -> float:
    """The lambda whose fixed-lambda fit of this image should land near `bpp`. Shorter fits spend
    more bits at the same lambda (rate ~ iterations**-0.14 around 250..1000 iterations, measured
    on Kodak crops), so lambda grows for them."""
    if image.shape[0] * image.shape[1] < 64:  # too small for a curve: the Kodak-average guess
        lam = 0.002 * (0.6 / bpp) ** (1 / RATE_POWER)
    else:
        slope = curve_slope(*webp_curve(image), bpp)
        lam = math.exp(_A + _B * math.log(slope) + _C * math.log(bpp))
    lam *= (1000.0 / max(iterations, 1)) ** (ITERATION_POWER / RATE_POWER)
    return float(np.clip(lam, *LAMBDA_RANGE))


@dataclass
class RateSteer:
    """Moves lambda at the fit's probes so that the predicted final rate meets the target.

    At 15 % of the fit a move is free (lambda x4 then landed on the fixed-lambda curve, 90 % of
    its full effect on the rate), so the big correction is made there, from the rate then times
    the typical drift (final/R(0.15) is 0.54 to 0.88 at a fixed lambda). At 30 % the final rate
    is known better (if lambda has not moved, extrapolated from how fast the rate fell since
    15 %: final/R(0.3) ~ (R(0.3)/R(0.15))**0.86), but a move then gets only ~60 % of its effect
    and a large one costs quality (lambda x4 at 30 % lost 0.1 to 0.7 dB on two Kodak crops), so
    the later moves are bounded, and narrower at each probe.
    """

    target: float
    log: list[tuple[float, float, float, float]] = field(default_factory=list)
    _rates: dict[float, float] = field(default_factory=dict)
    _moves: dict[float, float] = field(default_factory=dict)

    probes: tuple[float, ...] = PROBES

    def _predict(self, frac: float, rate: float) -> float:
        """Final rate if lambda stays as it is now."""
        if frac == 0.3 and 0.15 in self._rates and 0.15 not in self._moves:
            return rate * (rate / self._rates[0.15]) ** 0.86
        pending = 1.0  # the part of earlier moves' response still to come
        for f, k in self._moves.items():
            pending *= k ** (-RATE_POWER * RESPONSE_LEFT[f].get(frac, 0.0))
        return rate * DRIFT[frac] * pending

    def __call__(self, frac: float, hard_bpp: float, lam: float) -> float:
        self._rates[frac] = hard_bpp
        miss = self._predict(frac, hard_bpp) / self.target
        limit, dead = LIMITS[frac]
        factor = 1.0
        if abs(math.log(miss)) > math.log(dead):
            factor = float(np.clip(miss ** (1 / (RATE_POWER * RESPONSE[frac])), 1 / limit, limit))
        new = float(np.clip(lam * factor, *LAMBDA_RANGE))
        if new != lam:
            self._moves[frac] = new / lam
        self.log.append((frac, hard_bpp, lam, new))
        return new

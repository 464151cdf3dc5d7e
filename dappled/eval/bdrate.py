"""Bjøntegaard delta rate (BD-rate) and delta quality (BD-PSNR) between two rate-distortion curves.

Method (the piecewise-cubic variant used by current JVET/AOM common test conditions and by the
learned-compression literature, rather than the 2001 cubic-polynomial fit):

* rates are taken as log10(rate) (bpp or bytes; only ratios matter);
* BD-rate: for each curve, log-rate is interpolated as a function of quality (PSNR in dB, or
  any quality in dB) with a monotone piecewise cubic Hermite interpolant
  (``scipy.interpolate.PchipInterpolator``) through the measured points, sorted by quality;
  both interpolants are integrated exactly over the overlapping quality interval
  [max(min q_a, min q_t), min(max q_a, max q_t)]; the mean log-rate difference d (test minus
  anchor) over that interval gives BD-rate = (10**d - 1) * 100 %. Negative = the test codec
  needs fewer bits for the same quality.
* BD-PSNR: the same with the roles swapped: quality interpolated as a function of log-rate,
  integrated over the overlapping log-rate interval; the mean quality difference (test minus
  anchor) in dB. Positive = the test codec is better.

No extrapolation: only the overlapping range counts, and curves that do not overlap raise
ValueError (as do curves with fewer than two points or repeated abscissae).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator


def _curve(x: Sequence[float], y: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one curve and return it sorted by x."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"{what}: rate and quality lists differ in length")
    if len(xa) < 2:
        raise ValueError(f"{what}: need at least 2 rate points, got {len(xa)}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError(f"{what}: non-finite values")
    order = np.argsort(xa, kind="stable")
    xa, ya = xa[order], ya[order]
    if np.any(np.diff(xa) <= 0):
        raise ValueError(f"{what}: repeated values on the interpolation axis")
    return xa, ya


def _mean_gap(xa: np.ndarray, ya: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> tuple[float, float, float]:
    """Mean of (test - anchor) over the overlapping x interval, with the interval bounds."""
    lo = max(xa[0], xt[0])
    hi = min(xa[-1], xt[-1])
    if not hi > lo:
        raise ValueError(f"curves do not overlap (anchor {xa[0]:.4g}..{xa[-1]:.4g}, "
                         f"test {xt[0]:.4g}..{xt[-1]:.4g})")
    ia = PchipInterpolator(xa, ya).integrate(lo, hi)
    it = PchipInterpolator(xt, yt).integrate(lo, hi)
    return float((it - ia) / (hi - lo)), float(lo), float(hi)


def _log_rates(rates: Sequence[float], what: str) -> np.ndarray:
    r = np.asarray(rates, dtype=np.float64)
    if np.any(~np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"{what}: rates must be positive")
    return np.log10(r)


def bd_rate(anchor_rate: Sequence[float], anchor_quality: Sequence[float],
            test_rate: Sequence[float], test_quality: Sequence[float]) -> float:
    """BD-rate of test against anchor, in percent (negative: test saves bits)."""
    qa, ra = _curve(anchor_quality, _log_rates(anchor_rate, "anchor"), "anchor")
    qt, rt = _curve(test_quality, _log_rates(test_rate, "test"), "test")
    d, _, _ = _mean_gap(qa, ra, qt, rt)
    return float((10.0**d - 1.0) * 100.0)


def bd_quality(anchor_rate: Sequence[float], anchor_quality: Sequence[float],
               test_rate: Sequence[float], test_quality: Sequence[float]) -> float:
    """BD-PSNR (or BD of any dB quality) of test against anchor, in dB (positive: test better)."""
    ra, qa = _curve(_log_rates(anchor_rate, "anchor"), anchor_quality, "anchor")
    rt, qt = _curve(_log_rates(test_rate, "test"), test_quality, "test")
    d, _, _ = _mean_gap(ra, qa, rt, qt)
    return d


bd_psnr = bd_quality


def msssim_db(value: float) -> float:
    """MS-SSIM on the dB scale used for BD figures and plots: -10 log10(1 - MS-SSIM)."""
    return float(-10.0 * np.log10(max(1.0 - value, 1e-12)))

"""Conversions between the noise-level coordinates used by the papers.

Everything in diffrepro lives in the sigma-frame of EDM (x = x0 + sigma * eps). VP models
(DDPM, DDIM, cosine, Chen) use alpha_bar; x_vp = x / sqrt(1 + sigma^2).
Works on floats, numpy arrays and torch tensors alike.
"""

import math


def _sqrt(v):
    return math.sqrt(v) if isinstance(v, (int, float)) else v ** 0.5


def _log(v):
    return math.log(v) if isinstance(v, (int, float)) else v.log()


def sigma_from_alpha_bar(alpha_bar):
    # EDM (Karras 2022) Table 1 VP column: sigma^2 = (1 - abar) / abar
    return _sqrt((1 - alpha_bar) / alpha_bar)


def alpha_bar_from_sigma(sigma):
    return 1 / (1 + sigma ** 2)


def log_snr_from_sigma(sigma):
    # SNR = abar / (1 - abar) = 1 / sigma^2
    return -2 * _log(sigma)


def sigma_from_log_snr(log_snr):
    return (-log_snr / 2).exp() if hasattr(log_snr, "exp") else math.exp(-log_snr / 2)


def sqrt_alpha_bar(sigma):
    """The factor that maps a sigma-frame x to the VP frame: x_vp = x * sqrt_alpha_bar(sigma)."""
    return 1 / _sqrt(1 + sigma ** 2)

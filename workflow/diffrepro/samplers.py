"""Samplers: one signature for all, ``sampler(denoiser, x, sigmas, *, generator=None, **options)``.

``denoiser(x, sigma) -> x0_hat`` with sigma a [B] tensor; ``x`` is the initial noise already
multiplied by ``sigmas[0]``; ``sigmas`` is decreasing and ends with 0 (``ddim`` with eta = 0 also
runs on an increasing grid, which is DDIM's encoder). Per-step scalars are Python floats
(double precision whatever the dtype of x); tensors stay in the dtype of x.

Options every sampler takes: ``progress`` (tqdm bar) and ``callback(i, sigma_next, x_next,
x0_hat)``, called after step i with the new state and the denoised estimate the step used.
"""

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from .noise import alpha_bar_from_sigma


# ---------------------------------------------------------------- shared pieces

def _levels(sigmas):
    return sigmas.tolist() if torch.is_tensor(sigmas) else [float(s) for s in sigmas]


def _steps(levels, progress):
    pairs = list(zip(levels[:-1], levels[1:]))
    return tqdm(list(enumerate(pairs)), disable=not progress, leave=False)


def _denoise(denoiser, x, sigma):
    return denoiser(x, x.new_full((x.shape[0],), sigma))


def _noise(x, generator):
    # Drawn where the generator lives (the CPU for sample sets), then moved: the random numbers
    # of a seed are the same whichever device runs the network.
    device = x.device if generator is None else generator.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)


def _clip(x0, clip_x0):
    return x0 if clip_x0 is None else x0.clamp(*clip_x0)


def _report(callback, i, sigma_next, x, x0):
    if callback is not None:
        callback(i, sigma_next, x, x0)


def _posterior_step(x, x0, sigma, sigma_next, variance, noise):
    """One step of the chain sub-sampled at (sigma, sigma_next), in the VP frame: the mean of
    q(x' | x, x0) (DDPM Eq. 7) plus noise of variance beta ('large') or beta_tilde ('small')."""
    a, a_next = alpha_bar_from_sigma(sigma), alpha_bar_from_sigma(sigma_next)
    beta = 1 - a / a_next  # the sub-sampled chain's beta
    x_vp = x * math.sqrt(a)
    mean = (math.sqrt(a_next) * beta / (1 - a)) * x0 + (math.sqrt(1 - beta) * (1 - a_next) / (1 - a)) * x_vp
    if sigma_next > 0:  # DDPM Alg. 2: no noise on the step that returns x0
        var = beta if variance == "large" else beta * (1 - a_next) / (1 - a)  # DDPM Sec. 3.2
        mean = mean + math.sqrt(var) * noise()
    return mean / math.sqrt(a_next)


# ---------------------------------------------------------------- VP-frame samplers

def ddpm_ancestral(denoiser, x, sigmas, *, generator=None, variance="large", clip_x0=None,
                   progress=False, callback=None):
    """DDPM ancestral sampling (Ho 2020 Alg. 2) on the chain sub-sampled at ``sigmas``;
    ``variance`` is 'large' (sigma_t^2 = beta_t) or 'small' (beta_tilde_t); ``clip_x0=(lo, hi)``
    clips the predicted x0 as DDPM does for images."""
    if variance not in ("large", "small"):
        raise ValueError(f"variance must be 'large' or 'small', got {variance!r}")
    levels = _levels(sigmas)
    for i, (s, s_next) in _steps(levels, progress):
        x0 = _clip(_denoise(denoiser, x, s), clip_x0)
        x = _posterior_step(x, x0, s, s_next, variance, lambda: _noise(x, generator))
        _report(callback, i, s_next, x, x0)
    return x


def ddim(denoiser, x, sigmas, *, generator=None, eta=0.0, sigma_hat=False, clip_x0=None,
         eps_from_clipped_x0=True, progress=False, callback=None):
    """DDIM (Song 2021 Eq. 12) driven by sigmas. eta = 0 is deterministic (and equals Euler in the
    sigma-frame); eta = 1 matches the DDPM posterior. ``sigma_hat=True`` is the paper's sigma_hat
    run: its noise sqrt(1 - a/a') exceeds sqrt(1 - a') near the end, where Eq. 12 has no real
    coefficient, so (as in the DDIM authors' code) the step is the posterior mean with variance
    beta of the sub-sampled chain, i.e. ``ddpm_ancestral(variance='large')``.

    ``clip_x0=(lo, hi)`` clips x0_hat; with ``eps_from_clipped_x0`` (the default) the direction
    term uses the eps that the clipped x0_hat implies for the current x, so the step is built
    from (clipped x0_hat, x) exactly as DDPM's posterior step is, and eta = 1 equals
    ``ddpm_ancestral(variance='small')``. ``eps_from_clipped_x0=False`` keeps the network's own
    eps next to the clipped x0_hat (diffusers' DDIMScheduler default, the course's DDIM): that
    step no longer matches the state it starts from."""
    if sigma_hat:
        return ddpm_ancestral(denoiser, x, sigmas, generator=generator, variance="large",
                              clip_x0=clip_x0, progress=progress, callback=callback)
    levels = _levels(sigmas)
    if eta > 0 and levels[-1] > levels[0]:
        raise ValueError("DDIM runs on an increasing grid (encoding) only with eta = 0")
    for i, (s, s_next) in _steps(levels, progress):
        denoised = _denoise(denoiser, x, s)
        x0 = _clip(denoised, clip_x0)
        eps = (x - (x0 if eps_from_clipped_x0 else denoised)) / s
        a, a_next = alpha_bar_from_sigma(s), alpha_bar_from_sigma(s_next)
        # Song 2021 Eq. 16: sigma_tau(eta); zero when eta = 0 (also on an increasing grid)
        noise_std = eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next)) if eta > 0 else 0.0
        x_vp = math.sqrt(a_next) * x0 + math.sqrt(max(1 - a_next - noise_std ** 2, 0.0)) * eps
        if noise_std > 0:
            x_vp = x_vp + noise_std * _noise(x, generator)
        x = x_vp / math.sqrt(a_next)
        _report(callback, i, s_next, x, x0)
    return x


def clamp_to_median(alpha_bar, factor=2.0):
    """fast.ai lesson 22: keep each image's predicted abar within [median/factor, median*factor]
    of the batch, so one badly predicted noise level cannot blow up its x0 estimate."""
    median = alpha_bar.median()
    return torch.minimum(torch.maximum(alpha_bar, median / factor), median * factor)


def tfree_ddim(denoiser, x, sigmas, *, generator=None, noise_level_predictor=None, eta=1.0,
               clamp_median=True, clip_x0=(-2.0, 2.0), eps_from_clipped_x0=True, progress=False,
               callback=None):
    """The fast.ai course's t-free DDIM step (lesson 22; docs/papers.md §0).

    The network never sees the noise level, so the denoiser is called at the *scheduled* sigma,
    which for a wrapped eps-network makes eps_hat = (x - D(x, sigma)) / sigma its output exactly.
    ``noise_level_predictor(x_vp) -> abar [B]`` sees the VP-frame image (what it was trained on);
    its abar (clamped to the batch median's [1/2, 2] band when ``clamp_median``) replaces the
    scheduled one in x0_hat = (x_vp - sqrt(1 - abar) eps_hat) / sqrt(abar), which is clamped to
    ``clip_x0``. With no predictor the scheduled abar is used (the course's naive baseline).
    Re-noising goes to the scheduled next abar with DDIM's sigma(eta) from the schedule, set to 0
    when within 0.01 of the remaining variance 1 - a'. The course's default is eta = 1.
    ``eps_from_clipped_x0`` as in ``ddim``: the direction term uses the eps that the clipped
    x0_hat implies for x_vp under the abar that formed x0_hat (the course kept the network's eps)."""
    levels = _levels(sigmas)
    for i, (s, s_next) in _steps(levels, progress):
        eps = (x - _denoise(denoiser, x, s)) / s
        a, a_next = alpha_bar_from_sigma(s), alpha_bar_from_sigma(s_next)
        x_vp = x * math.sqrt(a)  # the course's x_t
        abar = a  # a float, or one value per image when predicted
        if noise_level_predictor is not None:
            abar = noise_level_predictor(x_vp).reshape(-1).to(x)
            abar = (clamp_to_median(abar) if clamp_median else abar).reshape(-1, *([1] * (x.ndim - 1)))
        x0 = _clip((x_vp - (1 - abar) ** 0.5 * eps) / abar ** 0.5, clip_x0)
        if eps_from_clipped_x0 and clip_x0 is not None:
            eps = (x_vp - abar ** 0.5 * x0) / (1 - abar) ** 0.5
        noise_std = eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))  # Song 2021 Eq. 16
        if 1 - a_next <= noise_std ** 2 + 0.01:
            noise_std = 0.0
        x_vp = math.sqrt(a_next) * x0 + math.sqrt(1 - a_next - noise_std ** 2) * eps
        if noise_std > 0:
            x_vp = x_vp + noise_std * _noise(x, generator)
        x = x_vp / math.sqrt(a_next)
        _report(callback, i, s_next, x, x0)
    return x


# ---------------------------------------------------------------- sigma-frame ODE/SDE solvers

def euler(denoiser, x, sigmas, *, generator=None, progress=False, callback=None):
    """Euler on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (Karras 2022 Eq. 3)."""
    levels = _levels(sigmas)
    for i, (s, s_next) in _steps(levels, progress):
        denoised = _denoise(denoiser, x, s)
        x = x + (s_next - s) / s * (x - denoised)
        _report(callback, i, s_next, x, denoised)
    return x


def ancestral_split(sigma, sigma_next, eta=1.0):
    """(sigma_down, sigma_up): a deterministic move to sigma_down, then fresh noise sigma_up, with
    sigma_down^2 + sigma_up^2 = sigma_next^2; eta = 1 is the DDPM posterior's noise (course lesson 23)."""
    if sigma_next == 0:
        return 0.0, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2))
    return math.sqrt(sigma_next ** 2 - up ** 2), up


def euler_ancestral(denoiser, x, sigmas, *, generator=None, eta=1.0, progress=False, callback=None):
    """Euler to sigma_down, then add noise sigma_up (see ``ancestral_split``)."""
    levels = _levels(sigmas)
    for i, (s, s_next) in _steps(levels, progress):
        denoised = _denoise(denoiser, x, s)
        down, up = ancestral_split(s, s_next, eta)
        x = x + (down - s) / s * (x - denoised)
        if up > 0:
            x = x + up * _noise(x, generator)
        _report(callback, i, s_next, x, denoised)
    return x


def heun(denoiser, x, sigmas, *, generator=None, s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"),
         s_noise=1.0, progress=False, callback=None):
    """Karras 2022 Alg. 2 (Alg. 1 when s_churn = 0): 2nd-order Heun with optional churn; the step
    onto sigma = 0 is Euler, so N steps cost 2N - 1 evaluations."""
    levels = _levels(sigmas)
    steps = len(levels) - 1
    for i, (s, s_next) in _steps(levels, progress):
        gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_tmin <= s <= s_tmax else 0.0
        s_hat = s * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(s_hat ** 2 - s ** 2) * s_noise * _noise(x, generator)
        denoised = _denoise(denoiser, x, s_hat)
        slope = (x - denoised) / s_hat
        x_next = x + (s_next - s_hat) * slope
        if s_next > 0:
            denoised = _denoise(denoiser, x_next, s_next)
            x_next = x + (s_next - s_hat) * (slope + (x_next - denoised) / s_next) / 2
        x = x_next
        _report(callback, i, s_next, x, denoised)
    return x


def lms_coefficients(history, sigma_next):
    """Weights of the derivatives at sigma levels ``history`` (newest first) for a linear multistep
    step to sigma_next: the integral over [history[0], sigma_next] of each Lagrange basis
    polynomial. Gauss-Legendre with len(history) nodes is exact for these polynomials."""
    nodes, weights = np.polynomial.legendre.leggauss(max(len(history), 1))
    lo, hi = history[0], sigma_next
    tau = (hi - lo) / 2 * nodes + (hi + lo) / 2
    coefficients = []
    for j, s_j in enumerate(history):
        basis = np.ones_like(tau)
        for m, s_m in enumerate(history):
            if m != j:
                basis *= (tau - s_m) / (s_j - s_m)
        coefficients.append(float((hi - lo) / 2 * np.dot(weights, basis)))
    return coefficients


def lms(denoiser, x, sigmas, *, generator=None, order=4, progress=False, callback=None):
    """Linear multistep (Adams-Bashforth in sigma) of the given order, lower order while the
    history fills up."""
    levels = _levels(sigmas)
    slopes = []
    for i, (s, s_next) in _steps(levels, progress):
        denoised = _denoise(denoiser, x, s)
        slopes = [(x - denoised) / s] + slopes[: order - 1]
        weights = lms_coefficients(levels[i::-1][: len(slopes)], s_next)
        x = x + sum(w * d for w, d in zip(weights, slopes))
        _report(callback, i, s_next, x, denoised)
    return x


def dpmpp_2m(denoiser, x, sigmas, *, generator=None, progress=False, callback=None):
    """DPM-Solver++(2M) (Lu 2022, Alg. 2) in the sigma-frame, where lambda = -ln sigma and the
    data-prediction update reads x' = (s'/s) x + (1 - s'/s) D. First order on the first step and
    on the step onto sigma = 0 (h is infinite there)."""
    levels = _levels(sigmas)
    previous, previous_h = None, None
    for i, (s, s_next) in _steps(levels, progress):
        denoised = _denoise(denoiser, x, s)
        if s_next == 0:
            x = denoised
        else:
            h = math.log(s / s_next)
            corrected = denoised
            if previous is not None:
                r = previous_h / h
                corrected = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (s_next / s) * x + (1 - s_next / s) * corrected
            previous_h = h
        previous = denoised
        _report(callback, i, s_next, x, denoised)
    return x


# ---------------------------------------------------------------- registry

SAMPLERS = {
    "ddpm_ancestral": ddpm_ancestral,
    "ddim": ddim,
    "tfree_ddim": tfree_ddim,
    "euler": euler,
    "euler_ancestral": euler_ancestral,
    "heun": heun,
    "lms": lms,
    "dpmpp_2m": dpmpp_2m,
}


def sampler_function(name: str):
    """The library's sampler of that name, or a user's `module:function` (validated when the
    configuration is loaded: diffrepro.catalog.user_sampler)."""
    if name in SAMPLERS:
        return SAMPLERS[name]
    from .catalog import import_path

    return import_path(name)


class CountedDenoiser:
    """``denoiser`` that counts its calls: a sampler's NFE is what it actually evaluated, whatever
    the sampler (no formula per sampler to forget or get wrong)."""

    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.denoiser(x, sigma)

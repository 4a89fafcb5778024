"""Training losses, written over the denoiser where possible: weight(sigma) * ||D(x, sigma) - x0||^2.

Every entry of LOSSES is fn(denoiser, x0, sigma, noise, **options) -> scalar tensor, with
x = x0 + sigma * noise formed inside; sigma is [B] (or a scalar). Squared errors are averaged
over all elements (per-example mean over dimensions, then mean over the batch).

The denoiser weights follow from the parameterisations (x = x0 + sigma eps, s = 1/sqrt(1+sigma^2)):
  eps: D = x - sigma eps_hat             => ||eps - eps_hat||^2 = ||D - x0||^2 / sigma^2
  v:   D = s^2 x - sigma s v_hat,
       v = s eps - sigma s x0            => ||v - v_hat||^2 = (1 + sigma^2) / sigma^2 ||D - x0||^2
  edm: lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 (EDM eq. 8) = 1 / c_out^2.

The variational bound (vlb, hybrid, bits_per_dim_bound) needs a discrete-chain denoiser
(denoisers.DiscreteChain: DiscreteVP, MeanPrediction, EpsLearnedVariance, SohlDickstein).
"""

import math

import torch
from torch.special import log_ndtr

from .denoisers import DiscreteChain, as_batch_sigma, per_example
from .noise import log_snr_from_sigma, sqrt_alpha_bar


def mean_per_example(t):
    return t.flatten(1).mean(dim=1)


def noised(x0, sigma, noise):
    return x0 + per_example(sigma, x0) * noise


# ---------------------------------------------------------------------------------------------
# denoising losses


def eps_weight(sigma):
    # ||eps - eps_hat||^2 = ||D - x0||^2 / sigma^2 (derived in the module docstring)
    return sigma**-2


def v_weight(sigma):
    # ||v - v_hat||^2 = (1 + sigma^2) / sigma^2 ||D - x0||^2 (derived in the module docstring)
    return (1 + sigma**2) / sigma**2


def edm_weight(sigma, sigma_data):
    # EDM (Karras 2022) eq. 8: lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def weighted_denoising_loss(denoiser, x0, sigma, noise, weight):
    """mean over the batch of weight(sigma) * mean_dims (D(x0 + sigma noise, sigma) - x0)^2."""
    sigma = as_batch_sigma(sigma, x0)
    err = mean_per_example((denoiser(noised(x0, sigma, noise), sigma) - x0) ** 2)
    return (weight(sigma) * err).mean()


def simple_loss(denoiser, x0, sigma, noise):
    # DDPM (Ho 2020) eq. 14, L_simple = ||eps - eps_theta||^2
    return weighted_denoising_loss(denoiser, x0, sigma, noise, eps_weight)


def x0_loss(denoiser, x0, sigma, noise):
    return weighted_denoising_loss(denoiser, x0, sigma, noise, torch.ones_like)


def v_loss(denoiser, x0, sigma, noise):
    return weighted_denoising_loss(denoiser, x0, sigma, noise, v_weight)


def edm_loss(denoiser, x0, sigma, noise, sigma_data=0.5):
    return weighted_denoising_loss(denoiser, x0, sigma, noise, lambda s: edm_weight(s, sigma_data))


def noise_level_loss(predictor, x0, sigma, noise):
    """The course's t-predictor loss: MSE between predictor(x_vp) and logit(abar).

    predictor is a denoisers.NoiseLevelPredictor (x_vp -> [B] logits), not a denoiser; sigma is
    the noise level of each example (the course draws abar ~ U(0, 1): pass
    sigma_from_alpha_bar(abar)). logit(abar) = log(abar / (1 - abar)) = log SNR = -2 ln sigma.
    """
    sigma = as_batch_sigma(sigma, x0)
    x_vp = noised(x0, sigma, noise) * per_example(sqrt_alpha_bar(sigma), x0)
    return ((predictor(x_vp) - log_snr_from_sigma(sigma)) ** 2).mean()


# ---------------------------------------------------------------------------------------------
# the variational bound


def gaussian_kl(mean1, log_var1, mean2, log_var2):
    """KL(N(mean1, var1) || N(mean2, var2)) elementwise, in nats."""
    return 0.5 * (log_var2 - log_var1 + (log_var1 - log_var2).exp() + (mean1 - mean2) ** 2 * (-log_var2).exp() - 1)


def _log_standard_normal_mass(lo, hi):
    """log(Phi(hi) - Phi(lo)) for finite lo < hi, accurate in both tails."""
    flip = lo > 0  # the mirror interval [-hi, -lo] has the same mass and lives in the precise lower tail
    lo, hi = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
    log_hi = log_ndtr(hi)
    mass_ratio = -torch.expm1(log_ndtr(lo) - log_hi)  # 1 - Phi(lo)/Phi(hi)
    return log_hi + mass_ratio.clamp_min(torch.finfo(mass_ratio.dtype).tiny).log()


def discretised_gaussian_log_likelihood(x0, mean, log_var):
    """log P(x0) of N(mean, var) integrated over x0's bin, for 8-bit data scaled to [-1, 1].

    DDPM §3.3 eq. 13: bins [x - 1/255, x + 1/255], the outermost extended to -inf and +inf, so
    the 256 masses sum to 1.
    """
    inv_std = (-0.5 * log_var).exp()
    hi = (x0 - mean + 1 / 255) * inv_std
    lo = (x0 - mean - 1 / 255) * inv_std
    bottom, top = x0 < -1 + 1 / 255, x0 > 1 - 1 / 255
    interior = _log_standard_normal_mass(lo, hi)  # finite edges everywhere, so no NaN gradient leaks through where
    return torch.where(bottom, log_ndtr(hi), torch.where(top, log_ndtr(-lo), interior))


def gaussian_log_density(x0, mean, log_var):
    return -0.5 * (math.log(2 * math.pi) + log_var + (x0 - mean) ** 2 * (-log_var).exp())


DECODERS = {"discretised": discretised_gaussian_log_likelihood, "gaussian": gaussian_log_density}


def _require_chain(model):
    if not isinstance(model, DiscreteChain):
        raise TypeError(f"the variational bound needs a discrete-chain denoiser (DiscreteChain), got {type(model).__name__}")
    return model


def prior_kl(chain, x0):
    """L_T = KL(q(x_T | x0) || N(0, I)) per example, nats per dimension (DDPM eq. 5)."""
    abar = chain.alpha_bars[-1].to(x0.dtype)
    zero = torch.zeros_like(x0)
    return mean_per_example(gaussian_kl(abar.sqrt() * x0, (1 - abar).log() + zero, zero, zero))


def bound_terms(chain, kernel, x0, x_vp, i, decoder="discretised"):
    """Per example, nats per dimension: L_{t-1} = KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) at
    levels i > 0 and the decoder term L_0 = -log p(x0 | x_1) at i = 0 (DDPM eq. 5)."""
    true_mean, true_log_var = chain.posterior(x0, x_vp, i)
    kl = mean_per_example(gaussian_kl(true_mean, true_log_var, kernel.mean, kernel.log_var))
    nll = -mean_per_example(DECODERS[decoder](x0, kernel.mean, kernel.log_var))
    return torch.where(i == 0, nll, kl)


def _x_vp_at_level(chain, x0, i, noise):
    sigma_i = chain.level_sigmas[i].to(x0.dtype)
    return sigma_i, noised(x0, sigma_i, noise) * per_example(sqrt_alpha_bar(sigma_i), x0)


def _level_and_x_vp(chain, x0, sigma, noise):
    """sigma selects the nearest level i; the bound is evaluated exactly at that level."""
    i = chain.level(as_batch_sigma(sigma, x0))
    return (i, *_x_vp_at_level(chain, x0, i, noise))


def _one_level_bound_bits(chain, kernel, x0, x_vp, i, decoder):
    # with t uniform on 1..T, T * L_{t-1} estimates sum_t L_{t-1}; L_T is added exactly
    nats = chain.num_steps * bound_terms(chain, kernel, x0, x_vp, i, decoder) + prior_kl(chain, x0)
    return nats / math.log(2)


def vlb_loss(denoiser, x0, sigma, noise, decoder="discretised"):
    """The variational bound in bits per dimension, estimated with one level per example.

    sigma must come from the chain's levels drawn uniformly (schedule.sigmas[t], t ~ U{0..T-1});
    decoder "discretised" for 8-bit data in [-1, 1] (DDPM), "gaussian" for continuous data
    (a density, e.g. Sohl-Dickstein's swiss roll).
    """
    chain = _require_chain(denoiser)
    i, sigma_i, x_vp = _level_and_x_vp(chain, x0, sigma, noise)
    kernel = chain.reverse(x_vp, sigma_i)
    return _one_level_bound_bits(chain, kernel, x0, x_vp, i, decoder).mean()


def hybrid_loss(denoiser, x0, sigma, noise, vlb_weight=0.001, decoder="discretised"):
    # improved DDPM (Nichol & Dhariwal 2021) §3.1: L_simple + 0.001 L_vlb, no L_vlb gradient into the mean
    chain = _require_chain(denoiser)
    i, sigma_i, x_vp = _level_and_x_vp(chain, x0, sigma, noise)
    kernel = chain.reverse(x_vp, sigma_i)
    simple = (eps_weight(sigma_i) * mean_per_example((kernel.x0_hat - x0) ** 2)).mean()
    frozen_mean = kernel._replace(mean=kernel.mean.detach())
    return simple + vlb_weight * _one_level_bound_bits(chain, frozen_mean, x0, x_vp, i, decoder).mean()


@torch.no_grad()
def bits_per_dim_bound(model, x0, *, num_timesteps=None, generator=None, decoder="discretised"):
    """The bound L_T + sum_{t>1} L_{t-1} + L_0 on -log p(x0), per example, in bits per dimension.

    The chain (its T levels) is the model's own. Each KL term uses one draw of x_t ~ q(x_t | x0).
    num_timesteps=K < T-1 evaluates L_T and L_0 exactly and K of the T-1 KL terms, drawn
    uniformly without replacement and weighted (T-1)/K: an unbiased estimate of the full sum.
    Returns a [B] tensor.
    """
    chain = _require_chain(model)
    T = chain.num_steps
    if num_timesteps is None or num_timesteps >= T - 1:
        kl_levels, weight = range(1, T), 1.0
    else:
        device = generator.device if generator is not None else "cpu"
        kl_levels = (1 + torch.randperm(T - 1, generator=generator, device=device)[:num_timesteps]).tolist()
        weight = (T - 1) / num_timesteps

    def term(level):
        i = torch.full((x0.shape[0],), level, dtype=torch.long, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        sigma_i, x_vp = _x_vp_at_level(chain, x0, i, noise)
        return bound_terms(chain, chain.reverse(x_vp, sigma_i), x0, x_vp, i, decoder)

    nats = prior_kl(chain, x0) + term(0) + weight * sum(term(level) for level in kl_levels)
    return nats / math.log(2)


LOSSES = {
    "simple": simple_loss,
    "x0": x0_loss,
    "v": v_loss,
    "edm": edm_loss,
    "vlb": vlb_loss,
    "hybrid": hybrid_loss,
    "noise_level": noise_level_loss,
}

"""Losses against direct forms and the variational bound against closed forms.

Direct forms are written in the VP frame the papers use: x_t = sqrt(abar) x0 + sqrt(1 - abar) eps,
target eps (DDPM eq. 14), x0, or v = sqrt(abar) eps - sqrt(1 - abar) x0; EDM's loss with its
preconditioning is ||F - (x0 - c_skip x) / c_out||^2 because lambda(sigma) c_out^2 = 1.
"""

import itertools
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from diffrepro.denoisers import C_NOISE, DiscreteVP, EpsLearnedVariance, DataMultiplied, NoiseLevelPredictor, Preconditioned
from diffrepro.losses import (
    LOSSES,
    bits_per_dim_bound,
    discretised_gaussian_log_likelihood,
    edm_weight,
    gaussian_kl,
    gaussian_log_density,
)
from diffrepro.schedules import SCHEDULES

F64 = torch.float64
LN2 = math.log(2)


def column(v, like):
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def linear_alpha_bars(T=20, beta_max=0.3):
    return torch.cumprod(1 - torch.linspace(1e-4, beta_max, T, dtype=F64), 0)


def grid_sigmas(ab):
    return ((1 - ab) / ab).sqrt()


def some_net(x_vp, time):
    """An arbitrary smooth network of input and time."""
    return torch.sin(3 * x_vp) + 0.01 * column(time, x_vp) * x_vp


def eight_bit(shape, gen):
    """Data on the 256-level grid of [-1, 1], both edges included."""
    x0 = torch.randint(0, 256, shape, generator=gen).to(F64) * 2 / 255 - 1
    x0.view(-1)[:2] = torch.tensor([-1.0, 1.0], dtype=F64)
    return x0


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1)


# ------------------------------------------------------------------ denoising losses


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_denoiser_weighted_losses_equal_direct_mse(prediction, gen):
    ab = linear_alpha_bars(T=50)
    i = torch.randint(0, 50, (16,), generator=gen)
    x0 = torch.rand(16, 2, 3, 3, generator=gen, dtype=F64) * 2 - 1
    noise = torch.randn(x0.shape, generator=gen, dtype=F64)
    a, c = column(ab[i].sqrt(), x0), column((1 - ab[i]).sqrt(), x0)
    out = some_net(a * x0 + c * noise, i.to(F64))
    target = {"eps": noise, "x0": x0, "v": a * noise - c * x0}[prediction]
    direct = ((out - target) ** 2).mean()
    loss = LOSSES[{"eps": "simple"}.get(prediction, prediction)](DiscreteVP(some_net, ab, prediction), x0, grid_sigmas(ab)[i], noise)
    torch.testing.assert_close(loss, direct, rtol=1e-10, atol=0)


def test_edm_loss_is_unit_weighted_mse_on_the_network_output(gen):
    sd = 0.5
    assert edm_weight(torch.tensor(sd), sd).item() == pytest.approx(2 / sd**2)
    sigma = (torch.randn(32, generator=gen, dtype=F64) * 1.2 - 1.2).exp()
    x0 = torch.rand(32, 4, generator=gen, dtype=F64) * 2 - 1
    noise = torch.randn(x0.shape, generator=gen, dtype=F64)
    f = lambda y, c_noise: torch.tanh(y) + column(c_noise, y)  # noqa: E731
    x = x0 + column(sigma, x0) * noise
    total = column(sigma**2 + sd**2, x)
    c_skip, c_out, c_in = sd**2 / total, column(sigma, x) * sd / total.sqrt(), 1 / total.sqrt()
    direct = ((f(c_in * x, sigma.log() / 4) - (x0 - c_skip * x) / c_out) ** 2).mean()
    torch.testing.assert_close(LOSSES["edm"](Preconditioned(f, "edm", C_NOISE["log"], sigma_data=sd), x0, sigma, noise, sigma_data=sd), direct, rtol=1e-10, atol=0)


def test_eps_loss_is_unchanged_by_input_scaling(gen):
    # Chen 2023 trains on x_t = sqrt(g) b x0 + sqrt(1 - g) eps with target eps; the unit-space
    # wrapper sees sigma_unit = sigma_b / b.
    b = 0.4
    schedule = SCHEDULES["chen_cosine"]()
    t = torch.rand(16, generator=gen, dtype=F64) * 0.98 + 0.01
    g = schedule.alpha_bar_fn(t)
    x0 = torch.rand(16, 3, 4, generator=gen, dtype=F64) * 2 - 1
    noise = torch.randn(x0.shape, generator=gen, dtype=F64)
    x_t = column(g.sqrt(), x0) * b * x0 + column((1 - g).sqrt(), x0) * noise
    direct = ((some_net(x_t, t) - noise) ** 2).mean()
    d = DataMultiplied(Preconditioned(some_net, "eps", schedule.t_from_sigma), b)
    sigma_b = ((1 - g) / g).sqrt()
    torch.testing.assert_close(LOSSES["simple"](d, x0, sigma_b / b, noise), direct, rtol=1e-8, atol=0)


def test_noise_level_loss_regresses_logit_alpha_bar(gen):
    abar = torch.rand(64, generator=gen, dtype=F64) * 0.98 + 0.01
    x0 = torch.rand(64, 1, 4, 4, generator=gen, dtype=F64)
    noise = torch.randn(x0.shape, generator=gen, dtype=F64)
    seen = []
    predictor = NoiseLevelPredictor(lambda x_vp: seen.append(x_vp) or torch.full((64, 1), 0.7, dtype=F64))
    loss = LOSSES["noise_level"](predictor, x0, ((1 - abar) / abar).sqrt(), noise)
    torch.testing.assert_close(loss, ((0.7 - (abar / (1 - abar)).log()) ** 2).mean())
    torch.testing.assert_close(seen[0], column(abar.sqrt(), x0) * x0 + column((1 - abar).sqrt(), x0) * noise)


# ------------------------------------------------------------------ pieces of the bound


def test_gaussian_kl_closed_forms(gen):
    zero = torch.zeros((), dtype=F64)
    assert gaussian_kl(zero, zero, zero + 1, zero).item() == pytest.approx(0.5)
    # KL(N(1, 4) || N(0, 1)) = (ln 1 - ln 4 + 4 + 1 - 1) / 2
    assert gaussian_kl(zero + 1, zero + math.log(4), zero, zero).item() == pytest.approx((4 - math.log(4)) / 2)
    m1, m2 = torch.randn(2, 50, generator=gen, dtype=F64)
    lv1, lv2 = torch.randn(2, 50, generator=gen, dtype=F64)
    expected = kl_divergence(Normal(m1, (lv1 / 2).exp()), Normal(m2, (lv2 / 2).exp()))
    torch.testing.assert_close(gaussian_kl(m1, lv1, m2, lv2), expected)


@pytest.mark.parametrize("mean,std", [(0.0, 0.3), (0.37, 1e-3), (-0.9, 0.02), (5.0, 0.1), (-0.2, 10.0)])
def test_discretised_decoder_sums_to_one_over_256_bins(mean, std):
    x = torch.linspace(-1, 1, 256, dtype=F64)
    log_p = discretised_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.full_like(x, 2 * math.log(std)))
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (log_p <= 0).all()


def test_discretised_decoder_matches_normal_cdf_and_has_finite_gradients(gen):
    x0 = eight_bit((200,), gen)
    mean = (x0 + torch.randn(200, generator=gen, dtype=F64) * 0.05).requires_grad_()
    log_var = torch.full_like(x0, 2 * math.log(0.05), requires_grad=True)
    log_p = discretised_gaussian_log_likelihood(x0, mean, log_var)
    cdf = Normal(mean.detach(), 0.05).cdf
    upper = torch.where(x0 > 1 - 1 / 255, torch.ones_like(x0), cdf(x0 + 1 / 255))
    lower = torch.where(x0 < -1 + 1 / 255, torch.zeros_like(x0), cdf(x0 - 1 / 255))
    torch.testing.assert_close(log_p.exp(), upper - lower)
    log_p.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_var.grad).all()


def test_gaussian_decoder_is_the_normal_log_density(gen):
    x, m, lv = torch.randn(3, 10, generator=gen, dtype=F64)
    torch.testing.assert_close(gaussian_log_density(x, m, lv), Normal(m, (lv / 2).exp()).log_prob(x))


# ------------------------------------------------------------------ the bound itself


def hand_chain(ab):
    """beta, beta_tilde (with beta_tilde_1 clipped to beta_tilde_2) and the posterior-mean x0 coefficient."""
    prev = torch.cat([torch.ones(1, dtype=F64), ab[:-1]])
    beta = 1 - ab / prev
    beta_tilde = (1 - prev) / (1 - ab) * beta
    beta_tilde[0] = beta_tilde[1]
    return beta, beta_tilde, prev.sqrt() * beta / (1 - ab)


def prior_nats(ab, x0):
    # KL(N(sqrt(abar_T) x0, 1 - abar_T) || N(0, 1)) per dimension
    a = ab[-1]
    return (0.5 * (a * x0**2 + (1 - a) - 1 - (1 - a).log())).flatten(1).mean(1)


def decoder_nats(x0, mean, std):
    cdf = Normal(mean, std).cdf
    upper = torch.where(x0 > 1 - 1 / 255, torch.ones_like(x0), cdf(x0 + 1 / 255))
    lower = torch.where(x0 < -1 + 1 / 255, torch.zeros_like(x0), cdf(x0 - 1 / 255))
    return -(upper - lower).log().flatten(1).mean(1)


def eps_oracle(ab, x0, offset=0.0):
    """A network that knows x0: it returns the exact noise of x_vp (plus a constant offset)."""

    def net(x_vp, time):
        abar = column(ab[time.long()], x_vp)
        return (x_vp - abar.sqrt() * x0) / (1 - abar).sqrt() + offset

    return net


def test_vlb_of_the_exact_posterior_is_prior_plus_decoder(gen):
    # x0_hat = x0 and variance beta_tilde make p(x_{t-1}|x_t) = q(x_{t-1}|x_t,x0): every KL term is 0
    T, ab = 20, linear_alpha_bars(T=20)
    _, beta_tilde, _ = hand_chain(ab)
    x0 = eight_bit((6, 1, 3, 3), gen)
    d = DiscreteVP(eps_oracle(ab, x0), ab, "eps", variance="small")
    i = torch.tensor([0, 0, 1, 5, 13, 19])
    noise = torch.randn(x0.shape, generator=gen, dtype=F64)
    # at level 0 the kernel is centred on x0 with the clipped variance beta_tilde_2
    nll = decoder_nats(x0, x0, beta_tilde[0].sqrt())
    expected = (torch.where(i == 0, T * nll, 0 * nll) + prior_nats(ab, x0)).mean() / LN2
    torch.testing.assert_close(LOSSES["vlb"](d, x0, grid_sigmas(ab)[i], noise), expected)
    full = bits_per_dim_bound(d, x0, generator=gen)
    torch.testing.assert_close(full, (nll + prior_nats(ab, x0)) / LN2)


def offset_model_terms(ab, x0, delta):
    """Closed form of each bound term (nats/dim) for eps_hat = eps + delta with variance beta:
    x0_hat = x0 - sigma delta, so the mean is off the true posterior mean by coef_x0 sigma delta.
    The decoder (t = 1) has variance beta_tilde_2, as in DDPM's code."""
    beta, beta_tilde, coef_x0 = hand_chain(ab)
    sigma = grid_sigmas(ab)
    kl = 0.5 * (beta.log() - beta_tilde.log() + beta_tilde / beta + (coef_x0 * sigma * delta) ** 2 / beta - 1)
    nll = decoder_nats(x0, x0 - sigma[0] * delta, beta_tilde[0].sqrt())
    return kl, nll


def test_vlb_of_an_offset_gaussian_model_matches_closed_form(gen):
    T, ab, delta = 20, linear_alpha_bars(T=20), 0.3
    x0 = eight_bit((5, 2, 2), gen)
    d = DiscreteVP(eps_oracle(ab, x0, delta), ab, "eps", variance="large")
    kl, nll = offset_model_terms(ab, x0, delta)
    i = torch.tensor([0, 2, 7, 11, 19])
    noise = torch.randn(x0.shape, generator=gen, dtype=F64)
    expected = (torch.where(i == 0, T * nll, T * kl[i]) + prior_nats(ab, x0)).mean() / LN2
    torch.testing.assert_close(LOSSES["vlb"](d, x0, grid_sigmas(ab)[i], noise), expected)

    full = (prior_nats(ab, x0) + nll + kl[1:].sum()) / LN2
    torch.testing.assert_close(bits_per_dim_bound(d, x0, generator=gen), full)
    torch.testing.assert_close(bits_per_dim_bound(d, x0, num_timesteps=T - 1, generator=gen), full)


@pytest.mark.parametrize("k", [1, 2])
def test_bound_on_a_subset_of_levels_is_reweighted_exactly(k, gen):
    # T = 4: the KL terms at levels 1, 2, 3; a subset of k of them, each weighted 3 / k, must give
    # one of the C(3, k) values below, and each subset is equally likely (so the mean is the full bound)
    T, ab, delta = 4, linear_alpha_bars(T=4), 0.5
    x0 = eight_bit((3, 4), gen)
    d = DiscreteVP(eps_oracle(ab, x0, delta), ab, "eps", variance="large")
    kl, nll = offset_model_terms(ab, x0, delta)
    base = prior_nats(ab, x0) + nll
    subsets = list(itertools.combinations([1, 2, 3], k))
    outcomes = torch.stack([(base + (T - 1) / k * kl[list(s)].sum()) / LN2 for s in subsets])
    seen = set()
    for _ in range(40):
        estimate = bits_per_dim_bound(d, x0, num_timesteps=k, generator=gen)
        match = [j for j, o in enumerate(outcomes) if torch.allclose(estimate, o, rtol=1e-12, atol=0)]
        assert len(match) == 1, (estimate, outcomes)
        seen.add(match[0])
    assert seen == set(range(len(subsets)))
    torch.testing.assert_close(outcomes.mean(0), (base + kl[1:].sum()) / LN2)


def test_hybrid_gives_the_mean_no_vlb_gradient(gen):
    ab = linear_alpha_bars(T=20)
    w_eps = torch.tensor(0.8, dtype=F64, requires_grad=True)
    w_v = torch.tensor(0.3, dtype=F64, requires_grad=True)

    def net(x_vp, time):
        return torch.cat([w_eps * x_vp, w_v * torch.tanh(x_vp)], 1)

    d = EpsLearnedVariance(net, ab)
    x0 = eight_bit((8, 2), gen)
    sigma = grid_sigmas(ab)[torch.randint(0, 20, (8,), generator=gen)]
    noise = torch.randn(x0.shape, generator=gen, dtype=F64)
    hybrid = LOSSES["hybrid"](d, x0, sigma, noise)
    simple, vlb = LOSSES["simple"](d, x0, sigma, noise), LOSSES["vlb"](d, x0, sigma, noise)
    torch.testing.assert_close(hybrid, simple + 0.001 * vlb)
    g_hybrid = torch.autograd.grad(hybrid, (w_eps, w_v))
    g_simple = torch.autograd.grad(simple, (w_eps, w_v))
    g_vlb = torch.autograd.grad(vlb, (w_eps, w_v))
    torch.testing.assert_close(g_hybrid[0], g_simple[0])  # although the full vlb does reach the mean:
    assert g_simple[1] == 0 and g_vlb[0] != 0
    torch.testing.assert_close(g_hybrid[1], 0.001 * g_vlb[1])


def test_vlb_needs_a_discrete_chain(gen):
    with pytest.raises(TypeError, match="discrete-chain"):
        LOSSES["vlb"](Preconditioned(lambda y, c: y, "edm", C_NOISE["log"], sigma_data=0.5), torch.zeros(2, 3), torch.ones(2), torch.zeros(2, 3))

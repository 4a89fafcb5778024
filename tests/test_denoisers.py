"""Denoiser wrappers against closed forms.

Oracles are written in the VP frame from first principles: for x0 ~ N(mu, s^2) and
x_vp = a x0 + c eps (a = sqrt(abar), c = sqrt(1 - abar)), E[x0 | x_vp] = mu + a s^2 /
(a^2 s^2 + c^2) (x_vp - a mu). The expected output is the sigma-frame posterior mean
E[x0 | x0 + sigma eps = x] = mu + s^2 / (s^2 + sigma^2) (x - mu), sigma = c / a.
The two agree only if a wrapper converts frames and parameterisations correctly.
"""

import math

import pytest
import torch

from diffrepro.denoisers import (
    C_NOISE,
    PARAMETERISATIONS,
    PRECONDITIONING,
    DiscreteVP,
    EpsLearnedVariance,
    DataMultiplied,
    MeanPrediction,
    NoiseLevelPredictor,
    Preconditioned,
    SohlDickstein,
    build_denoiser,
    nearest_level,
    preconditioning,
)
from diffrepro.schedules import SCHEDULES, DiscreteSchedule, EDMSchedule

F64 = torch.float64
MU, S = 0.3, 0.7


def column(v, like):
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def exact_denoiser(x, sigma, mu=MU, s=S):
    return mu + column(s**2 / (s**2 + sigma**2), x) * (x - mu)


def vp_oracle(alpha_bar_of_time, prediction, mu=MU, s=S):
    def net(x_vp, time):
        abar = column(alpha_bar_of_time(time), x_vp)
        a, c = abar.sqrt(), (1 - abar).sqrt()
        x0 = mu + a * s**2 / (a**2 * s**2 + c**2) * (x_vp - a * mu)
        eps = (x_vp - a * x0) / c
        return {"eps": eps, "x0": x0, "v": a * eps - c * x0}[prediction]

    return net


def linear_alpha_bars(T=100, beta_max=0.2):
    return torch.cumprod(1 - torch.linspace(1e-4, beta_max, T, dtype=F64), 0)


def grid_sigmas(alpha_bars):
    return ((1 - alpha_bars) / alpha_bars).sqrt()


class Spy(torch.nn.Module):
    """Records its inputs and returns a fixed function of them."""

    def __init__(self, fn=lambda x, t: torch.zeros_like(x)):
        super().__init__()
        self.fn, self.calls = fn, []

    def forward(self, x, t):
        self.calls.append((x.detach().clone(), t.detach().clone()))
        return self.fn(x, t)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# ------------------------------------------------------------------ VP wrappers


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_discrete_vp_with_oracle_is_exact_denoiser(prediction, gen):
    ab = linear_alpha_bars()

    def abar_of_index(time):
        assert torch.equal(time, time.round()), "discrete nets must get integer levels"
        return ab[time.long()]

    d = DiscreteVP(vp_oracle(abar_of_index, prediction), ab, prediction)
    i = torch.tensor([0, 1, 17, 50, 98, 99])
    sigma = grid_sigmas(ab)[i]
    x = torch.randn(6, 3, 4, 4, generator=gen, dtype=F64) * 3
    torch.testing.assert_close(d(x, sigma), exact_denoiser(x, sigma), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_continuous_vp_with_oracle_is_exact_denoiser(prediction, gen):
    schedule = SCHEDULES["course_cosine"]()
    # the course's cosine: abar(t) = cos(t pi / 2)^2
    d = Preconditioned(vp_oracle(lambda t: torch.cos(t * math.pi / 2) ** 2, prediction), prediction, schedule.t_from_sigma)
    sigma = torch.tensor([1e-3, 0.1, 1.0, 7.0, 80.0], dtype=F64)
    x = torch.randn(5, 2, 3, generator=gen, dtype=F64)
    torch.testing.assert_close(d(x, sigma), exact_denoiser(x, sigma), rtol=1e-9, atol=1e-9)


def test_continuous_vp_with_bisection_schedule(gen):
    schedule = SCHEDULES["chen_sigmoid"](start=-3, end=3, tau=1.1)
    abar_fn = schedule.alpha_bar_fn
    d = Preconditioned(vp_oracle(abar_fn, "eps"), "eps", schedule.t_from_sigma)
    sigma = torch.tensor([0.05, 0.5, 3.0], dtype=F64)
    x = torch.randn(3, 8, generator=gen, dtype=F64)
    torch.testing.assert_close(d(x, sigma), exact_denoiser(x, sigma), rtol=1e-9, atol=1e-9)


def test_scalar_sigma_broadcasts_over_batch(gen):
    ab = linear_alpha_bars()
    d = DiscreteVP(vp_oracle(lambda t: ab[t.long()], "eps"), ab)
    x = torch.randn(4, 5, generator=gen, dtype=F64)
    sigma = grid_sigmas(ab)[10]
    torch.testing.assert_close(d(x, sigma), d(x, sigma.expand(4)))


def test_float32_input_gives_float32_output(gen):
    ab = linear_alpha_bars()
    d = DiscreteVP(Spy(lambda x, t: x * 0.5), ab, "v")
    x = torch.randn(3, 2, generator=gen)
    out = d(x, torch.tensor([0.1, 1.0, 3.0]))
    assert out.dtype == torch.float32 and d.net.calls[0][1].dtype == torch.float32


# ------------------------------------------------------------------ discrete lookup


def test_nearest_level_hits_every_grid_level():
    ab = linear_alpha_bars(T=1000, beta_max=0.02)
    levels = grid_sigmas(ab)
    assert torch.equal(nearest_level(levels, levels), torch.arange(1000))
    assert torch.equal(nearest_level(levels.float(), levels), torch.arange(1000))


def test_nearest_level_is_nearest_in_log_sigma_and_agrees_with_schedule(gen):
    schedule = DiscreteSchedule(linear_alpha_bars(T=200))
    levels = schedule.sigmas
    # just either side of the geometric midpoint between levels 40 and 41
    mid = (levels[40] * levels[41]).sqrt()
    below_above = torch.stack([mid * (1 - 1e-9), mid * (1 + 1e-9)])
    assert nearest_level(below_above, levels).tolist() == [40, 41]
    assert nearest_level(torch.tensor([0.0, 1e9], dtype=F64), levels).tolist() == [0, 199]
    sigma = (torch.rand(500, generator=gen, dtype=F64) * 14 - 7).exp()
    assert torch.equal(nearest_level(sigma, levels), schedule.timestep(sigma))


# ------------------------------------------------------------------ EDM


def edm(net, sigma_data=0.5, c_noise="log"):
    return Preconditioned(net, "edm", C_NOISE[c_noise], sigma_data=sigma_data)


def test_edm_coefficients_at_hand_points():
    sd = 0.5
    sigma = torch.tensor([sd, 0.0, 1e6], dtype=F64)
    c_skip, c_out, c_in = PRECONDITIONING["edm"](sigma, sd)
    torch.testing.assert_close(c_skip, torch.tensor([0.5, 1.0, sd**2 / (1e12 + sd**2)], dtype=F64))
    torch.testing.assert_close(c_out, torch.tensor([sd / math.sqrt(2), 0.0, 1e6 * sd / math.sqrt(1e12 + sd**2)], dtype=F64))
    torch.testing.assert_close(c_in, torch.tensor([1 / (sd * math.sqrt(2)), 1 / sd, 1 / math.sqrt(1e12 + sd**2)], dtype=F64))
    sigma = torch.tensor([math.exp(4.0), 2.0], dtype=F64)
    torch.testing.assert_close(C_NOISE["log"](sigma), torch.tensor([1.0, math.log(2) / 4], dtype=F64))
    torch.testing.assert_close(C_NOISE["sigma"](sigma), sigma)
    with pytest.raises(ValueError, match="c_noise"):
        build_denoiser(Spy(), {"name": "edm", "c_noise": "sqrt"})


def test_vp_rows_at_hand_points():
    # sigma = 1: abar = 1/2, c_in = 1/sqrt(2); sigma = 0: the network sees x itself
    sigma = torch.tensor([1.0, 0.0], dtype=F64)
    half, r = torch.tensor([1 / math.sqrt(2), 1.0], dtype=F64), torch.tensor([0.5, 1.0], dtype=F64)
    rows = {"eps": (torch.ones(2, dtype=F64), -sigma, half), "x0": (torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64), half),
            "v": (r, -sigma * half, half)}
    for name, expected in rows.items():
        for got, want in zip(PRECONDITIONING[name](sigma, 1.0), expected):
            torch.testing.assert_close(got, want)


def test_v_row_is_the_edm_row_at_unit_data_std_with_the_output_negated(gen):
    sigma = (torch.randn(50, generator=gen, dtype=F64) * 2).exp()
    (vs, vo, vi), (es, eo, ei) = PRECONDITIONING["v"](sigma, 1.0), PRECONDITIONING["edm"](sigma, 1.0)
    torch.testing.assert_close(vs, es)
    torch.testing.assert_close(vo, -eo)
    torch.testing.assert_close(vi, ei)


def test_unknown_row_names_the_allowed_ones():
    with pytest.raises(ValueError, match="eps.*x0.*v.*edm"):
        preconditioning("score", torch.ones(1), torch.ones(1, 2))


@pytest.mark.parametrize("sigma", [0.01, 0.5, 2.0, 80.0])
def test_edm_network_input_has_unit_variance(sigma, gen):
    sd, n = 0.66, 20000
    # uniform data with std sd (not Gaussian, so only the second moment is matched)
    x0 = (torch.rand(n, 1, generator=gen, dtype=F64) * 2 - 1) * math.sqrt(3) * sd
    x = x0 + sigma * torch.randn(n, 1, generator=gen, dtype=F64)
    spy = Spy()
    edm(spy, sd)(x, torch.full((n,), sigma, dtype=F64))
    y2 = spy.calls[0][0].square()
    se = y2.std() / math.sqrt(n)
    assert abs(y2.mean().item() - 1) < 5 * se.item()


@pytest.mark.parametrize("kind", ["log", "sigma"])
def test_edm_with_oracle_network_is_exact_denoiser(kind, gen):
    sd = 0.5

    def oracle_f(y, c_noise):
        sigma = c_noise.exp() ** 4 if kind == "log" else c_noise
        total = column(sigma**2 + sd**2, y)
        x = y * total.sqrt()  # y = c_in x, EDM Table 1
        c_skip, c_out = sd**2 / total, column(sigma, y) * sd / total.sqrt()
        return (exact_denoiser(x, sigma) - c_skip * x) / c_out

    sigma = torch.tensor([0.002, 0.3, 5.0, 80.0], dtype=F64)
    x = torch.randn(4, 3, generator=gen, dtype=F64) * 2
    torch.testing.assert_close(edm(oracle_f, sd, kind)(x, sigma), exact_denoiser(x, sigma), rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ Chen 2023: normalisation and data multiplier


@pytest.mark.parametrize("discrete", [False, True])
def test_normalisation_gives_unit_std_network_input(discrete, gen):
    spy = Spy()
    if discrete:
        ab = linear_alpha_bars()
        d = DiscreteVP(spy, ab, "eps", normalise=True)
        sigma = grid_sigmas(ab)[torch.tensor([3, 40, 90])]
    else:
        d = Preconditioned(spy, "eps", SCHEDULES["course_cosine"]().t_from_sigma, normalise=True)
        sigma = torch.tensor([0.05, 1.0, 20.0], dtype=F64)
    x0 = torch.rand(3, 1, 6, 6, generator=gen, dtype=F64) * 2 - 1
    x = x0 + column(sigma, x0) * torch.randn(x0.shape, generator=gen, dtype=F64)
    out = d(x, sigma)
    net_in = spy.calls[0][0]
    torch.testing.assert_close(net_in.flatten(1).std(dim=1, correction=0), torch.ones(3, dtype=F64))
    # normalisation is a per-example positive rescaling of x_vp = x / sqrt(1 + sigma^2)
    ratio = net_in / (x / column((1 + sigma**2).sqrt(), x))
    torch.testing.assert_close(ratio, ratio[:, :1, :1, :1].expand_as(ratio))
    torch.testing.assert_close(out, x)  # eps_hat = 0: x0_hat = x, from the un-normalised x


@pytest.mark.parametrize("b", [0.25, 0.5, 1.0, 2.0])
def test_input_scaling_round_trips_to_unit_space_denoiser(b, gen):
    # the inner model is exact for the b-scaled data b * x0 ~ N(b MU, (b S)^2)
    schedule = SCHEDULES["course_cosine"]()
    inner = Preconditioned(vp_oracle(lambda t: torch.cos(t * math.pi / 2) ** 2, "eps", mu=b * MU, s=b * S),
                           "eps", schedule.t_from_sigma)
    d = DataMultiplied(inner, b)
    sigma = torch.tensor([0.01, 0.4, 3.0, 30.0], dtype=F64)  # unit-space sigmas
    x = torch.randn(4, 5, generator=gen, dtype=F64)
    torch.testing.assert_close(d(x, sigma), exact_denoiser(x, sigma), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError):
        DataMultiplied(inner, 0.0)


# ------------------------------------------------------------------ t-free and the noise-level predictor


def test_tfree_net_never_sees_the_noise_level(gen):
    spy = Spy(lambda x, t: torch.full_like(x, 0.25))
    x = torch.randn(3, 4, generator=gen, dtype=F64)
    sigma = torch.tensor([0.1, 1.0, 10.0], dtype=F64)
    out = build_denoiser(spy, {"name": "tfree"}, SCHEDULES["course_cosine"]())(x, sigma)
    net_in, t = spy.calls[0]
    assert torch.equal(t, torch.zeros(3, dtype=F64))
    torch.testing.assert_close(net_in, x / column((1 + sigma**2).sqrt(), x))
    torch.testing.assert_close(out, x - 0.25 * column(sigma, x))


def test_noise_level_predictor():
    logits = torch.tensor([-2.0, 0.0, 3.0], dtype=F64)
    p = NoiseLevelPredictor(lambda x: logits[:, None])
    x = torch.zeros(3, 1, 2, 2, dtype=F64)
    abar = 1 / (1 + (-logits).exp())
    torch.testing.assert_close(p(x), logits)
    torch.testing.assert_close(p.predict_alpha_bar(x), abar)
    torch.testing.assert_close(p.predict_sigma(x), ((1 - abar) / abar).sqrt())


# ------------------------------------------------------------------ discrete chains


def hand_posterior(ab, i, x0, x_vp):
    """DDPM eq. 7 written out: mean and variance of q(x_{t-1} | x_t, x0) at 0-based level i >= 0."""
    prev = torch.cat([torch.ones(1, dtype=F64), ab[:-1]])[i]
    beta = 1 - ab[i] / prev
    mean = column(prev.sqrt() * beta / (1 - ab[i]), x0) * x0 + column((1 - beta).sqrt() * (1 - prev) / (1 - ab[i]), x0) * x_vp
    return mean, (1 - prev) / (1 - ab[i]) * beta, beta


def knows_x0(ab, x0, output):
    """A network that knows x0 and returns output(x0, x_vp, level) for the level it is given."""
    return lambda x_vp, time: output(x0, x_vp, time.long())


def chain_input(ab, i, x0, noise):
    sigma = grid_sigmas(ab)[i]
    return sigma, x0 + column(sigma, x0) * noise


def test_posterior_matches_ddpm_eq7_and_inverts(gen):
    ab = linear_alpha_bars(T=30)
    d = DiscreteVP(Spy(), ab)
    i = torch.tensor([0, 1, 12, 29])
    x0, x_vp = torch.randn(2, 4, 3, generator=gen, dtype=F64)
    mean, log_var = d.posterior(x0, x_vp, i)
    hand_mean, hand_var, _ = hand_posterior(ab, i, x0, x_vp)
    torch.testing.assert_close(mean, hand_mean)
    clipped = hand_var.clone()
    clipped[0] = hand_posterior(ab, torch.tensor([1]), x0[:1], x_vp[:1])[1]  # beta_tilde_1 = 0 is clipped
    torch.testing.assert_close(log_var, column(clipped.log(), x0).expand_as(x0))
    torch.testing.assert_close(d.x0_from_mean(mean, x_vp, i), x0)


def test_sohl_dickstein_variance_and_mean(gen):
    ab = linear_alpha_bars(T=40)
    T, i = 40, torch.tensor([0, 5, 20, 39])
    z = torch.zeros(4, 6, dtype=F64)
    d = SohlDickstein(lambda x, t: z, ab)
    x_vp = torch.randn(4, 3, generator=gen, dtype=F64)
    kernel = d.reverse(x_vp, grid_sigmas(ab)[i])
    beta = 1 - ab[i] / torch.cat([torch.ones(1, dtype=F64), ab[:-1]])[i]
    torch.testing.assert_close(kernel.log_var, column(beta.log(), x_vp).expand_as(x_vp))
    torch.testing.assert_close(kernel.mean, x_vp * column((1 - beta).sqrt(), x_vp))

    z_var = torch.randn(4, 3, generator=gen, dtype=F64) * 10
    d = SohlDickstein(lambda x, t: torch.cat([torch.zeros_like(x), z_var], 1), ab)
    var = d.reverse(x_vp, grid_sigmas(ab)[i]).log_var.exp()
    assert ((var > 0) & (var < 1)).all()
    logit_beta = column((beta / (1 - beta)).log(), z_var)
    torch.testing.assert_close(var, 1 / (1 + (-(z_var / math.sqrt(T) + logit_beta)).exp()))


def test_sohl_dickstein_and_mu_recover_x0_from_the_true_posterior_mean(gen):
    ab = linear_alpha_bars(T=40)
    i = torch.tensor([0, 1, 9, 25, 39])
    x0 = torch.rand(5, 3, generator=gen, dtype=F64) * 2 - 1
    sigma, x = chain_input(ab, i, x0, torch.randn(5, 3, generator=gen, dtype=F64))

    def true_mean(x0, x_vp, level):
        return hand_posterior(ab, level, x0, x_vp)[0]

    def sohl_z(x0, x_vp, level):
        beta = column(hand_posterior(ab, level, x0, x_vp)[2], x_vp)
        z_mu = (true_mean(x0, x_vp, level) - x_vp * (1 - beta).sqrt()) / beta.sqrt()
        return torch.cat([z_mu, torch.zeros_like(z_mu)], 1)

    torch.testing.assert_close(SohlDickstein(knows_x0(ab, x0, sohl_z), ab)(x, sigma), x0)
    torch.testing.assert_close(MeanPrediction(knows_x0(ab, x0, true_mean), ab)(x, sigma), x0)


def test_learned_variance_interpolates_log_beta_and_log_beta_tilde(gen):
    ab = linear_alpha_bars(T=30)
    i = torch.tensor([1, 7, 29])
    x_vp = torch.randn(3, 2, generator=gen, dtype=F64)
    _, beta_tilde, beta = hand_posterior(ab, i, x_vp, x_vp)
    for v, expected in [(0.0, beta_tilde), (1.0, beta), (0.5, (beta * beta_tilde).sqrt())]:
        d = EpsLearnedVariance(lambda x, t, v=v: torch.cat([torch.zeros_like(x), torch.full_like(x, v)], 1), ab)
        kernel = d.reverse(x_vp, grid_sigmas(ab)[i])
        torch.testing.assert_close(kernel.log_var.exp(), column(expected, x_vp).expand_as(x_vp))
        torch.testing.assert_close(kernel.x0_hat, x_vp * column((1 / ab[i]).sqrt(), x_vp))  # eps_hat = 0


# ------------------------------------------------------------------ build_denoiser


def test_build_denoiser_maps_names_to_wrappers():
    discrete = DiscreteSchedule(linear_alpha_bars(T=20))
    continuous = SCHEDULES["course_cosine"]()
    net = Spy()
    cases = [
        ({"name": "eps"}, discrete, DiscreteVP),
        ({"name": "v", "variance": "small"}, discrete, DiscreteVP),
        ({"name": "x0"}, continuous, Preconditioned),
        ({"name": "edm", "sigma_data": 0.66, "c_noise": "sigma"}, EDMSchedule(), Preconditioned),
        ({"name": "eps", "data_multiplier": 0.5, "normalise": True}, continuous, DataMultiplied),
        ({"name": "tfree"}, continuous, Preconditioned),
        ({"name": "sohl_dickstein"}, discrete, SohlDickstein),
        ({"name": "mu"}, discrete, MeanPrediction),
        ({"name": "eps_learned_variance"}, discrete, EpsLearnedVariance),
    ]
    for cfg, schedule, cls in cases:
        assert isinstance(build_denoiser(net, cfg, schedule), cls), cfg
    assert {cfg["name"] for cfg, _, _ in cases} == set(PARAMETERISATIONS)

    v = build_denoiser(net, {"name": "v", "variance": "small"}, discrete)
    assert (v.prediction, v.variance) == ("v", "small")
    edm = build_denoiser(net, {"name": "edm", "sigma_data": 0.66, "c_noise": "sigma"}, None)
    assert (edm.row, edm.sigma_data, edm.c_noise) == ("edm", 0.66, C_NOISE["sigma"])
    scaled = build_denoiser(net, {"name": "eps", "data_multiplier": 0.5, "normalise": True}, continuous)
    assert scaled.data_multiplier == 0.5 and scaled.inner.normalise


def test_build_denoiser_rejects_bad_configs():
    discrete = DiscreteSchedule(linear_alpha_bars(T=20))
    with pytest.raises(ValueError) as err:
        build_denoiser(Spy(), {"name": "epsilon"}, discrete)
    assert all(name in str(err.value) for name in PARAMETERISATIONS)
    with pytest.raises(ValueError, match="sigma_dat"):
        build_denoiser(Spy(), {"name": "edm", "sigma_dat": 0.5}, None)
    with pytest.raises(ValueError, match="discrete"):
        build_denoiser(Spy(), {"name": "sohl_dickstein"}, SCHEDULES["course_cosine"]())
    with pytest.raises(ValueError, match="VP schedule"):
        build_denoiser(Spy(), {"name": "eps"}, EDMSchedule())
    with pytest.raises(ValueError, match="variance"):
        build_denoiser(Spy(), {"name": "eps", "variance": "huge"}, discrete)


@pytest.mark.parametrize("cls", [MeanPrediction, DiscreteVP])
def test_learned_log_variance_head_is_the_last_c_channels(cls, gen):
    # DDPM Table 2 "learned diagonal Sigma": the net outputs [mean-side output, log sigma_t^2]
    ab = linear_alpha_bars(T=30)
    i = torch.tensor([0, 4, 29])
    x0 = torch.rand(3, 2, generator=gen, dtype=F64) * 2 - 1
    sigma, x = chain_input(ab, i, x0, torch.randn(3, 2, generator=gen, dtype=F64))
    log_var = torch.randn(3, 2, generator=gen, dtype=F64)

    def first_half(x0, x_vp, level):
        if cls is MeanPrediction:
            return hand_posterior(ab, level, x0, x_vp)[0]
        abar = column(ab[level], x_vp)
        return (x_vp - abar.sqrt() * x0) / (1 - abar).sqrt()  # the exact eps

    d = cls(knows_x0(ab, x0, lambda *a: torch.cat([first_half(*a), log_var], 1)), ab, variance="learned")
    kernel = d.reverse(x / column((1 + sigma**2).sqrt(), x), sigma)
    torch.testing.assert_close(kernel.log_var, log_var)
    torch.testing.assert_close(kernel.x0_hat, x0)
    with pytest.raises(ValueError, match="variance"):
        cls(Spy(), ab, variance="fixed")


def test_fixed_variances_follow_ddpm_including_the_first_step():
    """'large' is beta_t except at t = 1, where (as DDPM's code) the decoder uses beta_tilde_2;
    'small' is beta_tilde_t with beta_tilde_1 = 0 replaced by beta_tilde_2."""
    ab = linear_alpha_bars()
    betas = 1 - ab / torch.cat([ab.new_ones(1), ab[:-1]])
    tilde = (1 - ab[:-1]) / (1 - ab[1:]) * betas[1:]  # beta_tilde_t for t = 2..T
    d = DiscreteVP(lambda x, t: x, ab, "eps")
    like = torch.zeros(len(ab), 1, dtype=torch.float64)
    i = torch.arange(len(ab))
    large, small = d.fixed_log_var("large", i, like).exp()[:, 0], d.fixed_log_var("small", i, like).exp()[:, 0]
    assert torch.allclose(large[1:], betas[1:], rtol=1e-12) and large[0] == pytest.approx(float(tilde[0]), rel=1e-12)
    assert torch.allclose(small[1:], tilde, rtol=1e-12) and small[0] == pytest.approx(float(tilde[0]), rel=1e-12)

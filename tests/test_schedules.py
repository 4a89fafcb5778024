"""Schedules against their formulas at hand-computed points (expected values written out by hand)."""

import math

import pytest
import torch

from diffrepro import schedules as S
from diffrepro.noise import sigma_from_alpha_bar

F64 = torch.float64


# ---------------------------------------------------------------- discrete alpha-bar arrays

def test_linear_beta_first_two_levels_by_hand():
    abar = S.linear_beta_alpha_bar(1000, 1e-4, 0.02)
    beta_2 = 1e-4 + (0.02 - 1e-4) / 999  # linspace step (beta_max - beta_min) / (T - 1)
    assert abar.dtype == F64 and abar.shape == (1000,)
    assert abar[0].item() == pytest.approx(1 - 1e-4, rel=1e-15)
    assert abar[1].item() == pytest.approx((1 - 1e-4) * (1 - beta_2), rel=1e-15)
    assert abar[1].item() == pytest.approx(0.99978009207, rel=1e-10)


def test_linear_beta_last_level_from_series():
    # ln abar_T = sum ln(1 - b) = -sum b - sum b^2 / 2 - sum b^3 / 3 - ...; for a linear ramp
    # sum b = T (b0 + b1) / 2, sum b^2 ~ T (b0^2 + b0 b1 + b1^2) / 3, sum b^3 ~ T b1^3 / 4.
    T, b0, b1 = 1000, 1e-4, 0.02
    series = -(T * (b0 + b1) / 2) - T * (b0 ** 2 + b0 * b1 + b1 ** 2) / 6 - T * b1 ** 3 / 12
    assert math.log(S.linear_beta_alpha_bar(T, b0, b1)[-1].item()) == pytest.approx(series, abs=2e-4)
    assert series == pytest.approx(-10.05 - 0.0670017 - 0.0006667, abs=1e-6)  # abar_T ~ 4.0e-5


def test_betas_round_trip():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    abar = S.alpha_bar_from_betas(betas)
    assert torch.allclose(S.betas_from_alpha_bar(abar), betas, rtol=1e-9, atol=1e-15)
    assert torch.allclose(S.DiscreteSchedule(abar).betas, betas, rtol=1e-9, atol=1e-15)


def test_iddpm_cosine_matches_formula_and_clips_betas():
    T, s = 1000, 0.008
    abar = S.iddpm_cosine_alpha_bar(T, s, 0.999)
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    for t in (1, 250, 500, 900):
        expected = math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 / f0
        assert abar[t - 1].item() == pytest.approx(expected, rel=1e-12)
    betas = S.betas_from_alpha_bar(abar)
    assert betas.max().item() <= 0.999 + 1e-12
    assert betas[-1].item() == pytest.approx(0.999)  # unclipped it would be 1 (f(T) = 0)
    assert torch.all(abar[1:] < abar[:-1])


def test_sohl_dickstein_betas_by_hand():
    T = 40
    betas = S.sohl_dickstein_betas(T)
    # sigmoid(logit(b)) = b, squeezed into [min_beta, 1 - 1e-5]; step 1 has 1e-3 extra floor
    first_floor = 1e-6 + 1e-3
    assert betas[0].item() == pytest.approx(first_floor + (1 / T) * (1 - first_floor - 1e-5), rel=1e-12)
    assert betas[-1].item() == pytest.approx(1e-6 + 0.5 * (1 - 1e-6 - 1e-5), rel=1e-12)
    middle = 1 / (T - (T - 2) * 20 / (T - 1))  # linspace(T, 2, T)[20]
    assert betas[20].item() == pytest.approx(1e-6 + middle * (1 - 1e-6 - 1e-5), rel=1e-12)
    abar = S.sohl_dickstein_alpha_bar(T)
    assert abar[-1].item() == pytest.approx(torch.prod(1 - betas).item(), rel=1e-12)


# ---------------------------------------------------------------- continuous

def test_course_cosine_and_its_inverse():
    assert S.course_cosine_alpha_bar(0.0).item() == 1.0
    assert S.course_cosine_alpha_bar(0.5).item() == pytest.approx(0.5, rel=1e-15)  # cos(pi/4)^2
    assert S.course_cosine_alpha_bar(1 / 3).item() == pytest.approx(0.75, rel=1e-14)  # cos(pi/6)^2
    t = torch.linspace(0, 1, 101, dtype=F64)
    assert torch.allclose(S.course_cosine_t(S.course_cosine_alpha_bar(t)), t, atol=1e-7)
    assert torch.allclose(S.course_cosine_t(S.course_cosine_alpha_bar(t[1:-1])), t[1:-1], atol=1e-12)


def test_chen_families_endpoints_and_points():
    for gamma in (S.chen_simple_linear, S.chen_cosine, S.chen_sigmoid,
                  lambda t: S.chen_cosine(t, 0.2, 1.0, 1.0), lambda t: S.chen_sigmoid(t, 0.0, 3.0, 0.9)):
        assert gamma(0.0).item() == pytest.approx(1.0, rel=1e-12)
        assert gamma(1.0).item() == pytest.approx(1e-9, rel=1e-6)  # clipped at 1e-9
        t = torch.linspace(0, 1, 50, dtype=F64)
        assert torch.all(gamma(t)[1:] <= gamma(t)[:-1])
    assert S.chen_simple_linear(0.25).item() == pytest.approx(0.75)
    assert S.chen_cosine(0.5).item() == pytest.approx(0.5, rel=1e-12)  # cos(pi/4)^2
    assert S.chen_sigmoid(0.5).item() == pytest.approx(0.5, rel=1e-12)  # symmetric around 0
    # sigmoid(-3, 3, 1) at t = 1/3: x = -1; (s(3) - s(-1)) / (s(3) - s(-3))
    sig = lambda v: 1 / (1 + math.exp(-v))
    assert S.chen_sigmoid(1 / 3).item() == pytest.approx((sig(3) - sig(-1)) / (sig(3) - sig(-3)), rel=1e-12)
    # cosine(0.2, 1, 2) at t = 0.5: x = 0.6, v(x) = cos(0.3 pi)^4, v(1) = 0
    assert S.chen_cosine(0.5, 0.2, 1.0, 2.0).item() == pytest.approx(
        math.cos(0.3 * math.pi) ** 4 / math.cos(0.1 * math.pi) ** 4, rel=1e-12)


# ---------------------------------------------------------------- EDM

def test_edm_grid_endpoints_and_middle():
    sigmas = S.edm_sigmas(3, 0.002, 80.0, 7.0)
    assert sigmas.tolist()[0] == pytest.approx(80.0, rel=1e-14)
    assert sigmas.tolist()[2] == pytest.approx(0.002, rel=1e-12)
    assert sigmas.tolist()[3] == 0.0 and len(sigmas) == 4
    assert sigmas[1].item() == pytest.approx(((80 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7, rel=1e-14)
    assert torch.allclose(S.edm_sigmas(5, 1.0, 5.0, 1.0), torch.tensor([5.0, 4, 3, 2, 1, 0], dtype=F64))


def test_edm_training_sigma_is_log_normal():
    n = 20000
    log_sigma = S.edm_training_sigma(n, -1.2, 1.2, torch.Generator().manual_seed(0)).log()
    assert abs(log_sigma.mean().item() + 1.2) < 5 * 1.2 / math.sqrt(n)
    assert abs(log_sigma.std().item() / 1.2 - 1) < 5 * math.sqrt(1 / (2 * n))


# ---------------------------------------------------------------- schedule objects and grids

def test_discrete_timestep_inverts_sigmas_exactly():
    schedule = S.SCHEDULES["linear_beta"](T=1000)
    assert torch.equal(schedule.timestep(schedule.sigmas), torch.arange(1000))
    # halfway in log-sigma between levels 10 and 11 (0-based), a hair towards 11
    between = (schedule.sigmas[10].log() * 0.49 + schedule.sigmas[11].log() * 0.51).exp()
    assert schedule.timestep(between).item() == 11


def test_uniform_grid_full_chain_and_subsequences():
    schedule = S.SCHEDULES["linear_beta"](T=1000)
    full = schedule.sampling_sigmas(1000, "uniform")
    assert torch.equal(full, torch.cat([schedule.sigmas.flip(0), torch.zeros(1, dtype=F64)]))
    assert S.uniform_timesteps(1000, 10).tolist() == list(range(100, 1001, 100))
    assert S.uniform_timesteps(1000, 3).tolist() == [333, 666, 1000]  # floor(1000 i / 3)
    grid = schedule.sampling_sigmas(10)
    assert torch.equal(grid[:-1], schedule.sigmas[torch.arange(999, 0, -100)])
    assert grid[0].item() == schedule.sigmas[-1].item() and grid[-1].item() == 0


def test_quadratic_grid():
    assert S.quadratic_timesteps(1000, 10).tolist() == [10 * i * i for i in range(1, 11)]
    taus = S.quadratic_timesteps(1000, 100)  # c = 0.1: small i collide and get pushed up
    assert taus[0].item() == 1 and taus[-1].item() == 1000
    assert torch.all(taus[1:] > taus[:-1])
    assert taus[50].item() == 260  # floor(0.1 * 51^2) = 260, far from the pushed-up start


def test_strided_grids_are_the_ddim_codes_0_based_strides():
    # range(0, 1000, 100) in 0-based t is 1, 101, ..., 901 here (1-based): no level at T
    assert S.strided_timesteps(1000, 10).tolist() == list(range(1, 1000, 100))
    assert S.strided_timesteps(1000, 3).tolist() == [1, 334, 667]  # stride 1000 // 3 = 333
    # floor((i sqrt(800) / 9)^2) for i = 0..9, then + 1: tops out at 0.8 T
    expected = [1, 10, 40, 89, 159, 247, 356, 484, 633, 801]
    assert S.quadratic_strided_timesteps(1000, 10).tolist() == expected and expected[-1] == 801
    taus = S.quadratic_strided_timesteps(1000, 100)  # small i collide and get pushed up
    assert taus[0].item() == 1 and torch.all(taus[1:] > taus[:-1]) and taus[-1].item() == 801
    with pytest.raises(ValueError):
        S.quadratic_strided_timesteps(1000, 801)
    schedule = S.SCHEDULES["linear_beta"](T=1000)
    grid = schedule.sampling_sigmas(10, "strided")
    assert torch.equal(grid[:-1], schedule.sigmas[torch.arange(900, -1, -100)]) and grid[-1].item() == 0


def test_continuous_schedule_grid_and_inverse():
    schedule = S.SCHEDULES["chen_sigmoid"](start=-3.0, end=3.0, tau=1.1)
    grid = schedule.sampling_sigmas(10)
    assert len(grid) == 11 and grid[-1].item() == 0
    assert torch.all(grid[1:] < grid[:-1])
    assert grid[0].item() == pytest.approx(schedule.sigma(1.0).item())
    assert grid[5].item() == pytest.approx(schedule.sigma(0.5).item())
    t = torch.tensor([0.01, 0.3, 0.5, 0.9, 0.99], dtype=F64)
    assert torch.allclose(schedule.t_from_sigma(schedule.sigma(t)), t, atol=1e-12)


def test_course_cosine_schedule_closed_form_inverse():
    schedule = S.SCHEDULES["course_cosine"]()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    assert torch.allclose(schedule.t_from_sigma(schedule.sigma(t)), t, atol=1e-12)
    assert schedule.sigma(0.5).item() == pytest.approx(1.0)  # abar = 1/2 -> sigma^2 = 1
    assert schedule.sampling_sigmas(4)[0].item() == pytest.approx(
        sigma_from_alpha_bar(math.cos(0.999 * math.pi / 2) ** 2))
    numeric = S.ContinuousSchedule(S.course_cosine_alpha_bar, 0.0, 0.999)
    assert torch.allclose(numeric.t_from_sigma(schedule.sigma(t)), t, atol=1e-12)


@pytest.mark.parametrize("name", sorted(S.SCHEDULES))
def test_every_registered_schedule_trains_and_samples(name):
    schedule = S.SCHEDULES[name]()
    sigma = schedule.sample_sigma(256, torch.Generator().manual_seed(0))
    assert sigma.shape == (256,) and torch.all(torch.isfinite(sigma)) and torch.all(sigma >= 0)
    grid = schedule.sampling_sigmas(20)
    assert grid[-1].item() == 0 and len(grid) == 21 and torch.all(grid[1:] < grid[:-1])


def test_build_schedule_from_yaml_mapping():
    schedule = S.build_schedule({"name": "linear_beta", "T": 1000, "beta_min": 1e-4, "beta_max": 0.01})
    assert schedule.betas[-1].item() == pytest.approx(0.01, rel=1e-9)
    edm = S.build_schedule({"name": "edm", "sigma_min": 0.01, "sigma_max": 80, "rho": 7})
    assert edm.sampling_sigmas(8)[-2].item() == pytest.approx(0.01)
    discrete_draws = S.SCHEDULES["linear_beta"]().sample_sigma(100, torch.Generator().manual_seed(1))
    assert torch.all(torch.isin(discrete_draws, S.SCHEDULES["linear_beta"]().sigmas))


def test_input_scaled_schedule_shifts_log_snr_by_2_ln_b():
    # Chen 2023: scaling data by b multiplies SNR by b^2, i.e. divides every sigma by b.
    from diffrepro.noise import log_snr_from_sigma
    from diffrepro.schedules import DataMultipliedSchedule, build_schedule

    inner = build_schedule({"name": "chen_cosine"})
    scaled = DataMultipliedSchedule(inner, 0.5)
    grid, inner_grid = scaled.sampling_sigmas(10), inner.sampling_sigmas(10)
    shift = log_snr_from_sigma(grid[:-1]) - log_snr_from_sigma(inner_grid[:-1])
    torch.testing.assert_close(shift, torch.full_like(shift, 2 * math.log(0.5)))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(scaled.sample_sigma(5, g1), inner.sample_sigma(5, g2) / 0.5)


def test_log_snr_at_quantile_matches_each_training_distribution():
    build_schedule, DataMultipliedSchedule = S.build_schedule, S.DataMultipliedSchedule
    linear = build_schedule({"name": "linear_beta"})
    assert float(linear.log_snr_at_quantile(0.0)) == pytest.approx(math.log(1e-4 ** -1 - 1), rel=1e-3)
    cosine = build_schedule({"name": "chen_cosine"})  # abar = cos^2(pi t / 2): log SNR = -2 ln tan(pi t / 2)
    assert float(cosine.log_snr_at_quantile(0.5)) == pytest.approx(0.0, abs=1e-9)
    assert float(cosine.log_snr_at_quantile(0.25)) == pytest.approx(-2 * math.log(math.tan(math.pi / 8)), rel=1e-9)
    edm = build_schedule({"name": "edm", "p_mean": -1.2, "p_std": 1.2})  # median sigma = exp(p_mean)
    assert float(edm.log_snr_at_quantile(0.5)) == pytest.approx(2.4, rel=1e-9)
    assert float(edm.log_snr_at_quantile(0.8413447460685429)) == pytest.approx(-2 * (-1.2 + 1.2), abs=1e-9)
    scaled = DataMultipliedSchedule(cosine, 0.5)  # Chen 2023: scaling x0 by b shifts log SNR by 2 ln b
    assert float(scaled.log_snr_at_quantile(0.3)) == pytest.approx(float(cosine.log_snr_at_quantile(0.3)) + 2 * math.log(0.5))

"""Samplers on Gaussian data N(mu, sd^2), where everything is known in closed form.

Exact denoiser: D(x, sigma) = (sd^2 x + sigma^2 mu) / (sd^2 + sigma^2). Exact probability-flow
ODE solution: x(sigma) = mu + (x(sigma_max) - mu) sqrt((sd^2 + sigma^2) / (sd^2 + sigma_max^2)).
Everything runs in float64. Run with -s to see the fitted convergence slopes.
"""

import math

import numpy as np
import pytest
import torch

from diffrepro import samplers as M
from diffrepro import schedules as S

F64 = torch.float64
MU = torch.tensor([1.0, -0.5, 0.3], dtype=F64)
SD = torch.tensor([1.0, 0.5, 0.2], dtype=F64)


def gaussian_denoiser(mu=MU, sd=SD):
    def denoise(x, sigma):
        s2 = sigma[:, None] ** 2
        return (sd ** 2 * x + s2 * mu) / (sd ** 2 + s2)
    return denoise


def exact_flow(x_start, sigma_start, sigma):
    return MU + (x_start - MU) * torch.sqrt((SD ** 2 + sigma ** 2) / (SD ** 2 + sigma_start ** 2))


def start_from_marginal(n, sigma_max, seed=0, mu=MU, sd=SD):
    """Draws from the exact noisy marginal N(mu, sd^2 + sigma_max^2), so that an exact sampler's
    output is exactly the data distribution (plain sigma_max * z would bias the mean by ~mu sd / sigma_max)."""
    z = torch.randn(n, len(mu), generator=torch.Generator().manual_seed(seed), dtype=F64)
    return mu + torch.sqrt(sd ** 2 + sigma_max ** 2) * z


def counting(denoiser):
    def wrapped(x, sigma):
        wrapped.calls += 1
        assert sigma.shape == (x.shape[0],)
        return denoiser(x, sigma)
    wrapped.calls = 0
    return wrapped


# ---------------------------------------------------------------- convergence order

STEP_COUNTS = [8, 16, 32, 64, 128]


def errors_at_sigma_min(name, sigma_min=0.002, **options):
    """Max error of the state at sigma_min (the step before the final jump to 0) against the
    exact ODE solution, for each N in STEP_COUNTS on the EDM rho = 7 grid from sigma_max = 80."""
    x_start = start_from_marginal(64, 80.0, seed=1)
    errors = []
    for n in STEP_COUNTS:
        states = {}
        M.SAMPLERS[name](gaussian_denoiser(), x_start.clone(), S.edm_sigmas(n, sigma_min, 80.0),
                         callback=lambda i, s, x, d: states.__setitem__(i, (s, x)), **options)
        sigma, x = states[n - 2]
        assert sigma == pytest.approx(sigma_min)
        errors.append((x - exact_flow(x_start, 80.0, sigma_min)).abs().max().item())
    return errors


def fitted_order(errors):
    return -np.polyfit(np.log(STEP_COUNTS), np.log(errors), 1)[0]


@pytest.mark.parametrize("name, options, lo, hi", [
    ("euler", {}, 0.8, 1.2),
    ("ddim", {"eta": 0.0}, 0.8, 1.2),
    ("heun", {}, 1.7, 2.3),
    ("dpmpp_2m", {}, 1.7, 2.3),
    ("lms", {"order": 2}, 1.7, 2.3),
    ("lms", {"order": 3}, 1.7, 3.5),
    ("lms", {"order": 4}, 1.7, 4.5),
])
def test_convergence_order(name, options, lo, hi):
    errors = errors_at_sigma_min(name, **options)
    order = fitted_order(errors)
    print(f"\n{name} {options}: errors {['%.2e' % e for e in errors]}, fitted order {order:.2f}")
    assert lo <= order <= hi
    assert all(a > b for a, b in zip(errors, errors[1:]))
    if name == "lms":  # the warm-up steps of lower order fade: the last halving shows the full order
        assert math.log2(errors[-2] / errors[-1]) >= options["order"] - 0.4


def test_ddim_eta0_is_euler_in_sigma_frame():
    x = start_from_marginal(16, 80.0)
    grid = S.edm_sigmas(12)
    assert torch.allclose(M.ddim(gaussian_denoiser(), x, grid), M.euler(gaussian_denoiser(), x, grid),
                          rtol=1e-12, atol=1e-12)


def test_ddim_encode_decode_reconstruction_improves_with_steps():
    x0 = MU + SD * torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    schedule = S.SCHEDULES["linear_beta"]()
    mse = []
    for steps in (10, 50, 100, 500):
        grid = schedule.sampling_sigmas(steps)
        encoded = M.ddim(gaussian_denoiser(), x0.clone(), grid[:-1].flip(0))  # sigma_1 .. sigma_T
        decoded = M.ddim(gaussian_denoiser(), encoded, grid)
        mse.append(((decoded - x0) ** 2).mean().item())
    print(f"\nDDIM encode/decode MSE at 10/50/100/500 steps: {['%.2e' % m for m in mse]}")
    assert all(a > b for a, b in zip(mse, mse[1:]))
    assert mse[-1] < 1e-4
    assert mse[1] / mse[-1] > 30  # first-order integrator: error ~ 1/N, MSE ~ 1/N^2 (100x)
    with pytest.raises(ValueError):  # a stochastic step has no meaning on an increasing grid
        M.ddim(gaussian_denoiser(), x0, grid[:-1].flip(0), eta=0.5)


# ---------------------------------------------------------------- stochastic samplers

# Settings with enough steps: the ancestral/churn samplers are only first order in the step
# size, so with few steps their output variance is biased (DDPM 'small' and DDIM eta > 0 too low,
# DDPM 'large' too high unless the data variance is 1 in the VP frame: Ho 2020 Sec. 3.2). With the
# steps below the bias is below 2% of the variance (measured with 4e5 samples), which is less than
# 2 standard errors at n = 20000, while the tolerance is 5 SE.
STOCHASTIC = [
    ("ddpm_ancestral", "linear_beta", 1000, {"variance": "large"}),
    ("ddpm_ancestral", "linear_beta", 1000, {"variance": "small"}),
    ("ddim", "linear_beta", 1000, {"eta": 1.0}),
    ("ddim", "linear_beta", 500, {"eta": 0.5}),
    ("euler_ancestral", "edm", 1000, {"eta": 1.0}),
    ("heun", "edm", 128, {"s_churn": 40.0}),
    ("tfree_ddim", "course_cosine", 1000, {"eta": 1.0, "clip_x0": None}),
]


@pytest.mark.parametrize("name, schedule, steps, options", STOCHASTIC)
def test_stochastic_sampler_reproduces_mean_and_variance(name, schedule, steps, options):
    torch.set_num_threads(1)
    mu, sd, n = MU[:2], SD[:2], 20000
    grid = S.SCHEDULES[schedule]().sampling_sigmas(steps)
    x = start_from_marginal(n, grid[0], seed=2, mu=mu, sd=sd)
    out = M.SAMPLERS[name](gaussian_denoiser(mu, sd), x, grid, generator=torch.Generator().manual_seed(3),
                           **options)
    mean_se = sd / math.sqrt(n)
    var_se = sd ** 2 * math.sqrt(2 / (n - 1))
    print(f"\n{name} {options} {steps} steps: mean error / SE {((out.mean(0) - mu) / mean_se).tolist()}, "
          f"variance error / SE {((out.var(0) - sd ** 2) / var_se).tolist()}")
    assert torch.all((out.mean(0) - mu).abs() < 5 * mean_se)
    assert torch.all((out.var(0) - sd ** 2).abs() < 5 * var_se)


def first_step_state(sampler, sigma, sigma_next, **options):
    """The state after one step from x = 0 with a denoiser that answers 0: only the added noise."""
    states = {}
    zero = lambda x, s: torch.zeros_like(x)
    sampler(zero, torch.zeros(1000, 2, dtype=F64), torch.tensor([sigma, sigma_next, 0.0], dtype=F64),
            generator=torch.Generator().manual_seed(0),
            callback=lambda i, s, x, d: states.setdefault(i, x), **options)
    return states[0]


def test_ddpm_and_ddim_step_noise_by_hand():
    # sigma 2 -> 1: a = 1/5, a' = 1/2, beta = 1 - a/a' = 0.6, beta_tilde = (1 - a')/(1 - a) beta = 0.375;
    # VP noise std s becomes s / sqrt(a') = s sqrt(2) in the sigma-frame.
    z = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    large = first_step_state(M.ddpm_ancestral, 2.0, 1.0, variance="large")
    small = first_step_state(M.ddpm_ancestral, 2.0, 1.0, variance="small")
    assert torch.allclose(large, math.sqrt(1.2) * z, rtol=1e-12)
    assert torch.allclose(small, math.sqrt(0.75) * z, rtol=1e-12)
    # DDIM Eq. 16: s(eta) = eta sqrt(beta_tilde); eta = 1 gives DDPM's small variance
    assert torch.allclose(first_step_state(M.ddim, 2.0, 1.0, eta=1.0), small, rtol=1e-12)
    assert torch.allclose(first_step_state(M.ddim, 2.0, 1.0, eta=0.5), math.sqrt(0.1875) * z, rtol=1e-12)
    assert torch.allclose(first_step_state(M.ddim, 2.0, 1.0, sigma_hat=True), large, rtol=1e-12)
    # Euler ancestral: sigma_up^2 = s'^2 (s^2 - s'^2) / s^2 = 0.75 for eta = 1
    assert torch.allclose(first_step_state(M.euler_ancestral, 2.0, 1.0, eta=1.0), math.sqrt(0.75) * z,
                          rtol=1e-12)


def test_ancestral_split_by_hand():
    down, up = M.ancestral_split(2.0, 1.0, eta=1.0)
    assert up == pytest.approx(math.sqrt(0.75)) and down == pytest.approx(0.5)
    down, up = M.ancestral_split(2.0, 1.0, eta=0.5)
    assert up == pytest.approx(0.5 * math.sqrt(0.75)) and down ** 2 + up ** 2 == pytest.approx(1.0)
    assert M.ancestral_split(2.0, 1.0, eta=10.0) == (0.0, 1.0)  # sigma_up capped at sigma_next
    assert M.ancestral_split(2.0, 0.0) == (0.0, 0.0)


def test_ddim_eta1_trajectory_equals_ddpm_small():
    grid = S.SCHEDULES["linear_beta"]().sampling_sigmas(25)
    x = start_from_marginal(32, grid[0])
    a = M.ddim(gaussian_denoiser(), x, grid, eta=1.0, generator=torch.Generator().manual_seed(5))
    b = M.ddpm_ancestral(gaussian_denoiser(), x, grid, variance="small", generator=torch.Generator().manual_seed(5))
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)


def test_ddim_eta1_with_clipping_equals_ddpm_small_with_clipping():
    """DDPM's step is the posterior mean of (clipped x0_hat, x_t). DDIM with eta = 1 takes the same
    step only when its eps is the one the clipped x0_hat implies; keeping the network's eps next to
    the clipped x0_hat (diffusers' default) leaves the chain. A denoiser that overshoots the data
    range ([-0.2, 0.2] here) makes clipping bite on every step."""
    grid = S.SCHEDULES["linear_beta"]().sampling_sigmas(25)
    x = start_from_marginal(32, grid[0])
    overshooting = lambda x_, s: 3.0 * gaussian_denoiser()(x_, s)
    clip = (-0.2, 0.2)
    ddpm = M.ddpm_ancestral(overshooting, x, grid, variance="small", clip_x0=clip,
                            generator=torch.Generator().manual_seed(5))
    ddim = M.ddim(overshooting, x, grid, eta=1.0, clip_x0=clip, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(ddim, ddpm, rtol=1e-9, atol=1e-9)
    raw_eps = M.ddim(overshooting, x, grid, eta=1.0, clip_x0=clip, eps_from_clipped_x0=False,
                     generator=torch.Generator().manual_seed(5))
    assert (raw_eps - ddpm).abs().max() > 1e-2


def test_clipping_that_does_not_bite_leaves_ddim_unchanged():
    grid = S.SCHEDULES["linear_beta"]().sampling_sigmas(10)
    x = start_from_marginal(16, grid[0])
    unclipped = M.ddim(gaussian_denoiser(), x, grid, eta=0.0)
    for rederive in (True, False):
        clipped = M.ddim(gaussian_denoiser(), x, grid, eta=0.0, clip_x0=(-1e6, 1e6), eps_from_clipped_x0=rederive)
        assert torch.allclose(clipped, unclipped, rtol=1e-12, atol=1e-12)


def test_tfree_eps_from_clipped_x0_is_consistent_with_the_state():
    """Step onto a level where the t-free DDIM step with eta = 0 and exact abar equals DDIM's:
    with eps re-derived from the clipped x0_hat both samplers agree under clipping."""
    grid = S.SCHEDULES["linear_beta"]().sampling_sigmas(10)
    x = start_from_marginal(16, grid[0])
    overshooting = lambda x_, s: 3.0 * gaussian_denoiser()(x_, s)
    clip = (-0.2, 0.2)
    tfree = M.tfree_ddim(overshooting, x, grid, eta=0.0, clip_x0=clip)
    ddim = M.ddim(overshooting, x, grid, eta=0.0, clip_x0=clip)
    assert torch.allclose(tfree, ddim, rtol=1e-9, atol=1e-9)
    tfree_raw = M.tfree_ddim(overshooting, x, grid, eta=0.0, clip_x0=clip, eps_from_clipped_x0=False)
    ddim_raw = M.ddim(overshooting, x, grid, eta=0.0, clip_x0=clip, eps_from_clipped_x0=False)
    assert torch.allclose(tfree_raw, ddim_raw, rtol=1e-9, atol=1e-9)
    assert (tfree_raw - tfree).abs().max() > 1e-2


def test_deterministic_limits_of_stochastic_samplers():
    x = start_from_marginal(16, 80.0)
    grid = S.edm_sigmas(10)
    euler_out = M.euler(gaussian_denoiser(), x, grid)
    assert torch.allclose(M.euler_ancestral(gaussian_denoiser(), x, grid, eta=0.0), euler_out, atol=1e-12)
    heun_out = M.heun(gaussian_denoiser(), x, grid)
    outside = M.heun(gaussian_denoiser(), x, grid, s_churn=40.0, s_tmin=100.0, s_tmax=200.0)
    assert torch.allclose(outside, heun_out, atol=1e-12)
    assert not torch.allclose(M.heun(gaussian_denoiser(), x, grid, s_churn=40.0,
                                     generator=torch.Generator().manual_seed(0)), heun_out, atol=1e-3)


def test_ddpm_clips_x0():
    five = lambda x, s: torch.full_like(x, 5.0)
    grid = S.SCHEDULES["linear_beta"]().sampling_sigmas(10)
    out = M.ddpm_ancestral(five, start_from_marginal(8, grid[0]), grid, clip_x0=(-1.0, 1.0),
                           generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, torch.ones_like(out))  # the last step returns the clipped x0


# ---------------------------------------------------------------- t-free DDIM

def test_clamp_to_median_keeps_band():
    abar = torch.rand(101, generator=torch.Generator().manual_seed(0), dtype=F64)
    abar[:5] = torch.tensor([1e-6, 1e-3, 0.999, 0.9999, 1.0], dtype=F64)
    clamped = M.clamp_to_median(abar)
    median = abar.median()
    assert torch.all(clamped >= median / 2) and torch.all(clamped <= 2 * median)
    inside = (abar >= median / 2) & (abar <= 2 * median)
    assert torch.equal(clamped[inside], abar[inside])
    assert torch.all(clamped[abar < median / 2] == median / 2)


def test_tfree_uses_predicted_alpha_bar():
    """Images noised to their own abar (0.3, 0.5, 0.7) while the schedule says 0.5 for all:
    with an exact eps-network and a predictor returning the true abar, x0_hat is exact."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 16, generator=g, dtype=F64) * 2 - 1
    eps = torch.randn(3, 16, generator=g, dtype=F64)
    true_abar = torch.tensor([0.3, 0.5, 0.7], dtype=F64)
    x_vp = true_abar.sqrt()[:, None] * x0 + (1 - true_abar).sqrt()[:, None] * eps
    scheduled_sigma = 1.0  # abar = 1/2
    x = x_vp * math.sqrt(2)  # the sigma-frame state at the scheduled level
    eps_network = lambda x_, sigma: x_ - sigma[:, None] * eps  # t-free: the same eps at any sigma

    def predictor(image_vp):
        assert torch.allclose(image_vp, x_vp)  # it sees the VP-frame image it was trained on
        return true_abar

    grid = torch.tensor([scheduled_sigma, 0.0], dtype=F64)
    out = M.tfree_ddim(eps_network, x, grid, noise_level_predictor=predictor, clamp_median=False)
    assert torch.allclose(out, x0, atol=1e-12)
    naive = M.tfree_ddim(eps_network, x, grid, noise_level_predictor=None)
    assert torch.allclose(naive[1], x0[1], atol=1e-12)  # the image that was at the scheduled level
    assert not torch.allclose(naive[0], x0[0], atol=1e-2)


def test_tfree_clamps_x0_and_drops_small_noise():
    eps_network = lambda x_, sigma: x_ - sigma[:, None] * 3.0  # eps = 3 everywhere
    x = torch.zeros(4, 8, dtype=F64)
    out = M.tfree_ddim(eps_network, x, torch.tensor([1.0, 0.0], dtype=F64))
    assert torch.equal(out, torch.full_like(out, -2.0))  # x0_hat = (0 - sqrt(1/2) 3) / sqrt(1/2) = -3 -> -2
    # sigma 1 -> 0.05: 1 - a' = 0.0025 < 0.01, so the eta = 1 noise is dropped: seeds do not matter
    grid = torch.tensor([1.0, 0.05, 0.0], dtype=F64)
    runs = [M.tfree_ddim(eps_network, x, grid, eta=1.0, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    assert torch.equal(runs[0], runs[1])
    grid = torch.tensor([1.0, 0.5, 0.0], dtype=F64)  # 1 - a' = 0.2 > s^2 + 0.01 = 0.16: noise stays
    states = [{}, {}]
    for seed, st in zip((0, 1), states):
        M.tfree_ddim(eps_network, x, grid, eta=1.0, generator=torch.Generator().manual_seed(seed),
                     callback=lambda i, s, x_, d, st=st: st.setdefault(i, x_))
    assert not torch.equal(states[0][0], states[1][0])


def test_tfree_without_predictor_or_clamps_is_ddim():
    grid = S.SCHEDULES["course_cosine"]().sampling_sigmas(20)
    x = start_from_marginal(16, grid[0])
    a = M.tfree_ddim(gaussian_denoiser(), x, grid, eta=0.0, clip_x0=None)
    b = M.ddim(gaussian_denoiser(), x, grid, eta=0.0)
    assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- bookkeeping

NFE_CASES = [
    ("ddpm_ancestral", {"variance": "small"}), ("ddim", {"eta": 0.5}), ("ddim", {"sigma_hat": True}),
    ("tfree_ddim", {"noise_level_predictor": lambda x: torch.full((x.shape[0],), 0.5, dtype=x.dtype)}),
    ("euler", {}), ("euler_ancestral", {"eta": 0.5}), ("heun", {}), ("heun", {"s_churn": 10.0}),
    ("lms", {"order": 3}), ("dpmpp_2m", {}),
]


@pytest.mark.parametrize("name, options", NFE_CASES)
@pytest.mark.parametrize("grid", [S.edm_sigmas(7), S.SCHEDULES["linear_beta"]().sampling_sigmas(10)])
def test_nfe_counts_actual_calls(name, options, grid):
    """The counted evaluations are the known costs: one per step, plus Heun's corrector on every
    step that does not end at sigma = 0."""
    denoiser = M.CountedDenoiser(counting(gaussian_denoiser()))
    M.SAMPLERS[name](denoiser, start_from_marginal(4, grid[0]), grid, generator=torch.Generator().manual_seed(0),
                     **options)
    assert denoiser.calls == denoiser.denoiser.calls
    assert denoiser.calls == (2 * (len(grid) - 1) - 1 if name == "heun" else len(grid) - 1)


@pytest.mark.parametrize("name", sorted(M.SAMPLERS))
def test_samplers_keep_dtype_and_show_progress(name):
    x = start_from_marginal(4, 80.0).float()
    out = M.SAMPLERS[name](gaussian_denoiser(MU.float(), SD.float()), x, S.edm_sigmas(4), progress=True,
                           generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and torch.all(torch.isfinite(out))


def test_sampler_options_clip_x0_maps_to_the_data_range_or_off():
    from diffrepro.build import sampler_options
    spec = lambda clip: {"name": "tfree_ddim", "options": {"eta": 1.0, "clip_x0": clip}}
    assert sampler_options(spec(True), "centered")["clip_x0"] == (-0.5, 0.5)
    assert sampler_options(spec(True), "unit")["clip_x0"] == (0.0, 1.0)
    assert sampler_options(spec(False), "centered")["clip_x0"] is None
    assert "clip_x0" not in sampler_options({"name": "tfree_ddim", "options": {"eta": 1.0}}, "centered")


def test_round_to_levels_snaps_an_edm_grid_to_the_discrete_levels():
    from diffrepro.build import sampling_sigmas
    schedule = S.SCHEDULES["linear_beta"]()
    grid = sampling_sigmas(schedule, 18, {"spacing": "edm", "round_to_levels": True})
    free = sampling_sigmas(schedule, 18, {"spacing": "edm"})
    levels = set(schedule.sigmas.tolist())
    assert grid[-1].item() == 0 and all(s in levels for s in grid[:-1].tolist())
    assert grid[0].item() == min(levels, key=lambda level: abs(level - 80.0))  # EDM's sigma_max
    # each snapped level is the nearest one to the free grid's value
    for s, f in zip(grid[:-1].tolist(), free[:-1].tolist()):
        assert abs(s - f) == min(abs(level - f) for level in levels)
    with pytest.raises(ValueError, match="discrete"):
        sampling_sigmas(S.SCHEDULES["chen_cosine"](), 5, {"spacing": "edm", "round_to_levels": True})


def test_an_inference_schedule_places_the_grid_in_the_same_input_scale():
    from diffrepro.build import sampling_sigmas
    trained = S.DataMultipliedSchedule(S.SCHEDULES["chen_sigmoid"](), 0.5)
    grid = sampling_sigmas(trained, 10, {"schedule": {"name": "chen_cosine"}})
    assert torch.allclose(grid, S.SCHEDULES["chen_cosine"]().sampling_sigmas(10) / 0.5, rtol=1e-12)

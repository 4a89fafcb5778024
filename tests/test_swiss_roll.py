"""Sohl-Dickstein 2015 replication: the swiss roll data, the time readout, the bound of the chain,
its learned forward schedule, and the two stages (swiss roll; bits/dim bound of an image model) end
to end at toy size."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from diffrepro.schema import ConfigError, validate

from diffrepro.spec_hash import config_hash
from diffrepro.denoisers import SohlDickstein
from diffrepro.losses import bits_per_dim_bound, vlb_loss
from diffrepro.metrics_table import COLUMNS
from diffrepro.schedules import alpha_bar_from_betas, build_schedule, sohl_dickstein_alpha_bar, sohl_dickstein_betas
from diffrepro.stages import bound as bound_stage
from diffrepro.stages import swiss_roll as swiss_roll_stage
from diffrepro.toy import (LearnedBetas, LearnedScheduleChain, SwissRollNet, TimeReadout, bump_basis, chain_samples,
                           learned_chain_levels, per_step_basis, standardise, swiss_roll, mean_and_std)

F64 = torch.float64


# ------------------------------------------------------------------ data


def test_noise_free_swiss_roll_lies_on_the_spiral_r_equals_theta():
    points = swiss_roll(5000, noise=0.0, generator=torch.Generator().manual_seed(0))
    assert points.shape == (5000, 2) and points.dtype == F64
    r = points.norm(dim=1)
    # (t cos t, t sin t): the radius is t in [1.5 pi, 4.5 pi] and the polar angle is t mod 2 pi
    assert r.min() >= 1.5 * math.pi - 1e-9 and r.max() <= 4.5 * math.pi + 1e-9
    angle = torch.atan2(points[:, 1], points[:, 0])
    torch.testing.assert_close(torch.cos(angle - r), torch.ones_like(r))
    # t is uniform: about a third of the points in each third of the range
    thirds = torch.histc(r, bins=3, min=1.5 * math.pi, max=4.5 * math.pi) / len(r)
    torch.testing.assert_close(thirds, torch.full((3,), 1 / 3, dtype=F64), atol=0.03, rtol=0)


def test_swiss_roll_noise_is_isotropic_gaussian_of_the_given_std():
    clean = swiss_roll(20000, 0.0, torch.Generator().manual_seed(3))
    noisy = swiss_roll(20000, 0.5, torch.Generator().manual_seed(3))  # same positions t, same draws
    z = (noisy - clean) / 0.5
    torch.testing.assert_close(z.mean(0), torch.zeros(2, dtype=F64), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), torch.eye(2, dtype=F64), atol=0.03, rtol=0)


def test_mean_and_std_uses_one_constant_for_both_axes():
    points = swiss_roll(3000, 0.2, torch.Generator().manual_seed(1))
    mean, std = mean_and_std(points)
    x = standardise(points, mean, std)
    torch.testing.assert_close(x.mean(0), torch.zeros(2, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(x.pow(2).mean(), torch.tensor(1.0, dtype=F64))  # variance 1 on average
    # a single constant keeps the shape: the ratio of the axes' spreads is unchanged
    raw = points - points.mean(0)
    torch.testing.assert_close(x.std(0)[0] / x.std(0)[1], raw.std(0)[0] / raw.std(0)[1])


# ------------------------------------------------------------------ time readout


def test_bump_basis_rows_sum_to_one_and_neighbours_fall_by_e_squared():
    # T = 46, 10 bumps: level 5j sits exactly on centre j; the centre spacing is 2/9 and the width
    # half of it, so at a centre the next bump is down by exp(-(2/9)^2 / (2 (1/9)^2)) = exp(-2)
    basis = bump_basis(46, 10)
    assert basis.shape == (46, 10) and (basis > 0).all()
    torch.testing.assert_close(basis.sum(1), torch.ones(46, dtype=F64))
    assert basis.argmax(0).tolist() == [5 * j for j in range(10)]
    for j in range(9):
        torch.testing.assert_close(basis[5 * j, j + 1] / basis[5 * j, j], torch.tensor(math.exp(-2), dtype=F64))


def test_readout_is_per_step_with_one_hot_basis_and_constant_when_all_bumps_agree():
    gen = torch.Generator().manual_seed(0)
    h = torch.rand(6, 3, generator=gen, dtype=F64)
    levels = torch.tensor([0, 1, 4, 4, 7, 9])

    per_step = TimeReadout(3, 2, per_step_basis(10)).double()
    with torch.no_grad():
        per_step.weight.copy_(torch.randn(10, 3, 2, generator=gen))
        per_step.bias.copy_(torch.randn(10, 2, generator=gen))
    expected = torch.stack([h[b] @ per_step.weight[i] + per_step.bias[i] for b, i in enumerate(levels)])
    torch.testing.assert_close(per_step(h, levels), expected)

    bumps = TimeReadout(3, 2, bump_basis(10, 4)).double()
    w, b = torch.randn(3, 2, generator=gen, dtype=F64), torch.randn(2, generator=gen, dtype=F64)
    with torch.no_grad():  # the same readout under every bump: the mixture is that readout at every level
        bumps.weight.copy_(w.expand(4, 3, 2))
        bumps.bias.copy_(b.expand(4, 2))
    torch.testing.assert_close(bumps(h, levels), h @ w + b)


def test_untrained_network_is_the_forward_kernel_run_backwards():
    ab = sohl_dickstein_alpha_bar(40)
    chain = SohlDickstein(SwissRollNet(40), ab)
    x_vp = torch.randn(5, 2, dtype=F64)
    kernel = chain.reverse(x_vp, chain.level_sigmas[[0, 3, 10, 20, 39]])
    beta = chain.betas[[0, 3, 10, 20, 39]][:, None]
    torch.testing.assert_close(kernel.mean, x_vp * (1 - beta).sqrt())
    torch.testing.assert_close(kernel.log_var, beta.log().expand(5, 2))


# ------------------------------------------------------------------ the bound


def test_bound_is_tight_for_gaussian_data_and_the_untrained_chain():
    # Data x0 ~ N(0, I) is the forward chain's stationary distribution, whose reverse kernels are
    # exactly N(x_t sqrt(1 - beta_t), beta_t): the untrained chain. Then p(x_{1:T} | x0) = q(x_{1:T} | x0),
    # the KL gap of the bound is 0, and E[bound | x0] = -log N(x0; 0, I) for every x0 (the authors'
    # code checks the same: its objective is 0 for this isotropic Gaussian model).
    T, draws = 10, 20000
    chain = SohlDickstein(SwissRollNet(T), sohl_dickstein_alpha_bar(T)).double()
    x0 = torch.tensor([[0.0, 0.0], [1.0, -0.5], [2.0, 1.5]], dtype=F64)
    bits = bits_per_dim_bound(chain, x0.repeat_interleave(draws, 0), generator=torch.Generator().manual_seed(0),
                              decoder="gaussian").reshape(3, draws)
    exact = 0.5 * (x0.pow(2) + math.log(2 * math.pi)).mean(1) / math.log(2)  # -log2 N(x0; 0, I) per dim
    se = bits.std(1) / math.sqrt(draws)
    assert (se < 0.01).all()
    assert ((bits.mean(1) - exact).abs() < 5 * se).all(), (bits.mean(1), exact, se)


def test_chain_samples_of_the_untrained_chain_are_standard_normal():
    # the untrained chain leaves N(0, I) invariant, so its samples are N(0, I) again
    chain = SohlDickstein(SwissRollNet(40), sohl_dickstein_alpha_bar(40))
    x = chain_samples(chain, 5000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(0), torch.zeros(2, dtype=F64), atol=0.06, rtol=0)  # ~4 standard errors
    torch.testing.assert_close(torch.cov(x.T), torch.eye(2, dtype=F64), atol=0.08, rtol=0)


def test_edge_ceiling_of_the_fixed_t40_schedule_is_below_the_papers_k():
    # K <= -H_q(X^1|X^0) + H_q(X^T|X^0) - H_p(X^T) = log2((1 - abar_T) / (2 pi e beta_1)) for 2-D data
    betas = torch.tensor([0.01, 0.5, 0.5], dtype=F64)
    expected = math.log2((1 - 0.99 * 0.25) / (2 * math.pi * math.e * 0.01))
    assert swiss_roll_stage.edge_ceiling_bits(betas) == pytest.approx(expected, rel=1e-12)
    assert swiss_roll_stage.edge_ceiling_bits(sohl_dickstein_betas(40)) < 2.35


# ------------------------------------------------------------------ the learned forward schedule


def random_net(T, seed=0, dtype=torch.float32):
    """A SwissRollNet with random (non-zero) readout weights, so the chain is not the forward kernel reversed."""
    gen = torch.Generator().manual_seed(seed)
    net = SwissRollNet(T, generator=gen).to(dtype)
    with torch.no_grad():
        net.readout.weight.copy_(torch.randn(net.readout.weight.shape, generator=gen))
        net.readout.bias.copy_(torch.randn(net.readout.bias.shape, generator=gen))
    return net


def learned_copy_of_fixed_chain(T=40):
    """(fixed SohlDickstein chain, LearnedScheduleChain frozen at the same betas), sharing one network."""
    net = random_net(T)
    fixed = SohlDickstein(net, sohl_dickstein_alpha_bar(T))
    betas = build_schedule({"name": "sohl_dickstein", "T": T}).betas
    return fixed, LearnedScheduleChain(net, LearnedBetas(betas[1:], beta_1=float(betas[0])))


def test_learned_betas_start_at_the_baseline_and_stay_in_zero_one():
    baseline = sohl_dickstein_betas(40)[1:]
    schedule = LearnedBetas(baseline, beta_1=1e-3)
    betas = schedule().detach()
    assert betas.shape == (40,) and betas.dtype == F64 and betas[0] == 1e-3
    # c = 0 is the authors' fixed schedule: their sigmoid(logit(1 / linspace(T, 2, T))) squeezed likewise
    torch.testing.assert_close(betas[1:], baseline, rtol=1e-12, atol=0)
    with torch.no_grad():  # whatever the optimiser does, the sigmoid keeps beta in [min_beta, 1 - 1e-5]
        schedule.coefficients.copy_(torch.linspace(-1e3, 1e3, 39, dtype=F64))
    betas = schedule().detach()
    assert (betas > 0).all() and (betas < 1).all() and torch.isfinite(learned_chain_levels(betas).log_var_tilde).all()
    assert betas[1] == pytest.approx(1e-6) and betas[-1] == pytest.approx(1 - 1e-5)


def test_only_beta_2_to_T_are_parameters_and_their_jacobian_is_the_sigmoid_slope():
    # d beta_t / d c_t = span * s (1 - s), s = (beta_t - min_beta) / span, for the per-step basis;
    # beta_1 is a buffer: no parameter moves it
    schedule = LearnedBetas(sohl_dickstein_betas(10)[1:], beta_1=1e-3)
    assert [name for name, _ in schedule.named_parameters()] == ["coefficients"]
    assert schedule.coefficients.shape == (9,)
    jacobian = torch.autograd.functional.jacobian(lambda c: torch.func.functional_call(
        schedule, {"coefficients": c}, ()), schedule.coefficients.detach())
    s = (schedule().detach()[1:] - schedule.min_beta) / schedule.span
    expected = torch.zeros(10, 9, dtype=F64)
    expected[1:] = torch.diag(schedule.span * s * (1 - s))
    torch.testing.assert_close(jacobian, expected, rtol=1e-12, atol=0)
    # with bumps, each learned beta moves with the bumps around it: the jacobian's first row is still 0
    bumps = LearnedBetas(sohl_dickstein_betas(10)[1:], beta_1=1e-3, basis="bumps", n_bumps=4)
    assert bumps.coefficients.shape == (4,)
    jacobian = torch.autograd.functional.jacobian(lambda c: torch.func.functional_call(
        bumps, {"coefficients": c}, ()), bumps.coefficients.detach())
    assert (jacobian[0] == 0).all() and (jacobian[1:].abs().sum(1) > 0).all()


def test_learned_chain_provides_every_level_buffer_of_a_discrete_chain():
    # the learned chain skips DiscreteChain.__init__; each level buffer the parent registers must be
    # one of its properties, or the bound would read a missing (or stale) quantity
    fixed, learned = learned_copy_of_fixed_chain(10)
    assert {name for name, _ in fixed.named_buffers() if "." not in name} <= set(learned.levels()._fields)
    for name in learned.levels()._fields:
        assert isinstance(getattr(type(learned), name), property)
    assert learned.num_steps == fixed.num_steps == 10


def test_learned_chain_frozen_at_the_fixed_schedule_reproduces_the_fixed_chain():
    fixed, learned = learned_copy_of_fixed_chain(40)
    for name in learned.levels()._fields:
        torch.testing.assert_close(getattr(learned, name).detach(), getattr(fixed, name), rtol=1e-10, atol=1e-14)
    x0 = torch.randn(300, 2, generator=torch.Generator().manual_seed(1))
    bits = [bits_per_dim_bound(c, x0, generator=torch.Generator().manual_seed(2), decoder="gaussian")
            for c in (fixed, learned)]
    torch.testing.assert_close(bits[1], bits[0], rtol=1e-5, atol=1e-5)
    level = torch.arange(300) % 40
    noise = torch.randn(300, 2, generator=torch.Generator().manual_seed(3))
    losses = [vlb_loss(c, x0, fixed.level_sigmas[level].float(), noise, decoder="gaussian") for c in (fixed, learned)]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-5)


def test_learned_chain_follows_its_current_betas_everywhere():
    # after the coefficients move, the chain must be the fixed chain of the new betas: the forward
    # draw of x_t, the posterior, the prior term and the reverse kernel all read the learned values
    _, learned = learned_copy_of_fixed_chain(12)
    with torch.no_grad():
        learned.schedule.coefficients.copy_(torch.randn(11, generator=torch.Generator().manual_seed(4), dtype=F64))
    betas = learned.schedule().detach()
    rebuilt = SohlDickstein(learned.net, alpha_bar_from_betas(betas))
    x0 = torch.randn(200, 2, generator=torch.Generator().manual_seed(5))
    bits = [bits_per_dim_bound(c, x0, generator=torch.Generator().manual_seed(6), decoder="gaussian")
            for c in (rebuilt, learned)]
    torch.testing.assert_close(bits[1], bits[0], rtol=1e-5, atol=1e-5)
    with learned.pinned_levels():  # the one-computation shortcut gives the same numbers
        pinned = bits_per_dim_bound(learned, x0, generator=torch.Generator().manual_seed(6), decoder="gaussian")
    torch.testing.assert_close(pinned, bits[1], rtol=0, atol=0)


def test_levels_resolvable_flags_learned_levels_float32_cannot_tell_apart():
    schedule = LearnedBetas(sohl_dickstein_betas(10)[1:], beta_1=1e-3, min_beta=1e-9)
    learned = LearnedScheduleChain(random_net(10), schedule)
    assert learned.levels_resolvable()
    with torch.no_grad():  # beta_6 at a floor of 1e-9: sigma_6 = sigma_5 (1 + ~1e-9), equal in float32
        schedule.coefficients[4] = -1e3
    assert not learned.levels_resolvable()


def full_bound_nats(chain, x0, noise):
    """sum_t L_{t-1} + L_T per example averaged, nats per dimension, one fixed noise draw per level,
    differentiable (vlb_loss at every level in turn: T L_{t-1} + L_T, divided by T)."""
    T = chain.num_steps
    total = 0
    for level in range(T):
        sigma = chain.level_sigmas[torch.full((len(x0),), level)].detach().to(x0.dtype)
        total = total + vlb_loss(chain, x0, sigma, noise[level], decoder="gaussian") * math.log(2) / T
    return total


def test_bound_gradient_reaches_every_learned_beta_and_matches_finite_differences():
    T = 8
    net = random_net(T, dtype=F64)
    chain = LearnedScheduleChain(net, LearnedBetas(sohl_dickstein_betas(T)[1:], beta_1=1e-3))
    gen = torch.Generator().manual_seed(7)
    x0 = torch.randn(64, 2, generator=gen, dtype=F64)
    noise = torch.randn(T, 64, 2, generator=gen, dtype=F64)
    full_bound_nats(chain, x0, noise).backward()
    grad = chain.schedule.coefficients.grad
    assert grad.shape == (T - 1,) and (grad.abs() > 1e-8).all()
    c0 = chain.schedule.coefficients.detach().clone()

    def bound_at(c):
        with torch.no_grad():
            chain.schedule.coefficients.copy_(c)
            return float(full_bound_nats(chain, x0, noise))

    h = 1e-6
    for j in (0, T // 2, T - 2):  # central differences of the same (fixed-noise) function
        step = torch.zeros(T - 1, dtype=F64)
        step[j] = h
        numeric = (bound_at(c0 + step) - bound_at(c0 - step)) / (2 * h)
        assert numeric == pytest.approx(float(grad[j]), rel=1e-5, abs=1e-9)


def test_bound_is_tight_for_gaussian_data_under_any_learned_schedule():
    # x0 ~ N(0, I) is stationary under every forward chain, and the untrained chain is then its exact
    # reverse (N(x_t sqrt(1 - beta_t), beta_t)) whatever the betas: E[bound | x0] = -log N(x0; 0, I)
    T, draws = 6, 20000
    chain = LearnedScheduleChain(SwissRollNet(T).double(), LearnedBetas(sohl_dickstein_betas(T)[1:], beta_1=1e-3))
    with torch.no_grad():
        chain.schedule.coefficients.copy_(torch.tensor([2.0, -1.0, 0.5, -2.0, 1.0], dtype=F64))
    x0 = torch.tensor([[0.0, 0.0], [1.0, -0.5]], dtype=F64)
    bits = bits_per_dim_bound(chain, x0.repeat_interleave(draws, 0), generator=torch.Generator().manual_seed(0),
                              decoder="gaussian").reshape(2, draws)
    exact = 0.5 * (x0.pow(2) + math.log(2 * math.pi)).mean(1) / math.log(2)
    se = bits.std(1) / math.sqrt(draws)
    assert ((bits.mean(1) - exact).abs() < 5 * se).all(), (bits.mean(1), exact, se)


def test_train_chain_moves_beta_2_to_T_only_and_is_repeatable():
    settings = copy.deepcopy(SMOKE)
    settings["train"]["steps"] = 15
    train_points, _ = swiss_roll_stage.make_data(settings["data"])
    runs = []
    for _ in range(2):
        chain = swiss_roll_stage.build_chain(settings)
        before = chain.schedule().detach().clone()
        losses = swiss_roll_stage.train_chain(chain, train_points, settings["train"])
        runs.append((chain.schedule().detach(), losses))
    after, losses = runs[0]
    assert after[0] == before[0] == settings["learned_betas"]["beta_1"]
    assert (after[1:] != before[1:]).all() and all(map(math.isfinite, losses))
    torch.testing.assert_close(runs[1][0], after, rtol=0, atol=0)
    assert runs[1][1] == losses
    frozen = {**settings, "learned_betas": {**settings["learned_betas"], "learn": False}}
    chain = swiss_roll_stage.build_chain(frozen)
    swiss_roll_stage.train_chain(chain, train_points, frozen["train"])
    torch.testing.assert_close(chain.schedule().detach(), before, rtol=0, atol=0)


def test_edge_ceiling_of_a_small_fixed_beta_1():
    # log2((1 - abar_T) / (2 pi e beta_1)) per 2-D point: beta_1 = 1e-3 allows 5.87 bits when abar_T -> 0
    betas = torch.tensor([1e-3] + [0.999] * 3, dtype=F64)
    assert swiss_roll_stage.edge_ceiling_bits(betas) == pytest.approx(math.log2(1 / (2 * math.pi * math.e * 1e-3)))


# ------------------------------------------------------------------ stages at toy size


SMOKE = {"paper": "sohl_dickstein_2015", "experiment": "swiss_roll",
         "data": {"n_train": 600, "n_test": 200, "noise": 0.01, "seed": 0},
         "schedule": {"name": "sohl_dickstein", "T": 40},
         "learned_betas": {"learn": True, "beta_1": 1e-3, "basis": "per_step"},
         "network": {"hidden": 16, "readout": "bumps", "n_bumps": 10},
         "train": {"steps": 30, "batch_size": 128, "lr": 0.03, "warmup": 5, "grad_clip": 1.0, "seed": 0},
         "eval": {"repeats": 1, "n_plot_samples": 100, "seed": 0}}


def test_replication_swiss_roll_settings_follow_the_schema():
    import yaml

    root = Path(__file__).resolve().parents[1]
    doc = yaml.safe_load((root / "replications" / "sohl_dickstein_2015.yaml").read_text())
    block = doc["stages"]["swiss_roll"]
    validate(block, "stages/swiss_roll.schema.yaml", "sohl_dickstein_2015.yaml")
    for scale in ("smoke", "quick", "paper"):
        assert block[scale]["network"]["hidden"] == 16 and block[scale]["network"]["readout"] == "per_step"
        assert block[scale]["learned_betas"]["learn"] is True
    for bad in ({"beta_1": 0.0}, {"beta_1": 1.0}, {"surprise": 1}):
        broken = copy.deepcopy(block)
        broken["quick"]["learned_betas"].update(bad)
        with pytest.raises(ConfigError):
            validate(broken, "stages/swiss_roll.schema.yaml", "sohl_dickstein_2015.yaml")


def test_swiss_roll_stage_writes_finite_contract_rows_and_samples(tmp_path):
    metrics, samples = tmp_path / "m.csv", tmp_path / "s.npz"
    swiss_roll_stage.main(["--settings", json.dumps(SMOKE), "--metrics", str(metrics), "--samples", str(samples)])
    table = pd.read_csv(metrics)
    assert list(table.columns) == COLUMNS
    values = dict(zip(table["metric"], table["value"]))
    assert {"bound_bits", "bound_bits_se", "bound_bits_train", "null_log_likelihood_bits", "bound_minus_null_bits",
            "bound_bits_edge_ceiling", "beta_1", "beta_2", "beta_T", "alpha_bar_T"} <= set(values)
    assert np.isfinite(table["value"]).all()
    assert values["bound_minus_null_bits"] == pytest.approx(values["bound_bits"] - values["null_log_likelihood_bits"])
    # the null model on unit-variance 2-D data: -log2(2 pi e) = -4.09 bits per point, up to sampling
    assert values["null_log_likelihood_bits"] == pytest.approx(-math.log2(2 * math.pi * math.e), abs=0.3)
    assert table["config_hash"].nunique() == 1 and table["config_hash"].iloc[0] == config_hash(SMOKE)
    with np.load(samples) as f:
        assert f["samples"].shape == (100, 2) and np.isfinite(f["samples"]).all()
        assert json.loads(str(f["meta"]))["frame"] == "unit_variance"
        betas = torch.from_numpy(f["betas"])
    # the rows describe the learned schedule saved next to the samples
    assert betas.shape == (40,) and betas[0] == SMOKE["learned_betas"]["beta_1"] == values["beta_1"]
    assert ((betas > 0) & (betas < 1)).all()
    assert (values["beta_2"], values["beta_T"]) == pytest.approx((float(betas[1]), float(betas[-1])))
    assert values["alpha_bar_T"] == pytest.approx(float(torch.prod(1 - betas)))
    assert values["bound_bits_edge_ceiling"] == pytest.approx(swiss_roll_stage.edge_ceiling_bits(betas))


def tiny_image_model(tmp_path, scaling="symmetric"):
    """An untrained Sohl-Dickstein UNet saved like the train stage does, and a small fake data file."""
    from diffrepro.build import build_model

    spec = {"paper": "sohl_dickstein_2015", "experiment": "fmnist_vlb", "input_scaling": scaling,
            "resolution": 32, "train_limit": 8, "schedule": {"name": "sohl_dickstein", "T": 100},
            "parameterisation": {"name": "sohl_dickstein"}, "loss": {"name": "vlb"},
            "unet": {"channels": [8], "blocks_per_level": 1, "attention_levels": [], "groups": 4, "dropout": 0.0,
                     "out_channels": 2},
            "train": {"steps": 1, "batch_size": 2, "lr": 1e-3, "seed": 0}}
    torch.manual_seed(0)
    _, _, chain = build_model(spec)
    model = tmp_path / "model.pt"
    torch.save({"spec": spec, "config_hash": config_hash(spec), "state_dict": chain.state_dict()}, model)
    rng = np.random.default_rng(0)
    data = tmp_path / "fmnist.npz"
    np.savez(data, train_images=rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), train_labels=np.zeros(4, np.int64),
             test_images=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), test_labels=np.zeros(6, np.int64))
    return spec, model, data


def test_bound_stage_rows_share_the_training_hash(tmp_path):
    spec, model, data = tiny_image_model(tmp_path)
    out = tmp_path / "bound.csv"
    bound_stage.main(["--model", str(model), "--data", str(data), "--out", str(out),
                      "--settings", json.dumps({"n_images": 5, "timesteps": 3, "batch_size": 2, "seed": 0})])
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS
    assert set(table["metric"]) == {"nll_bits_per_dim_bound", "nll_bits_per_dim_bound_se"}
    assert np.isfinite(table["value"]).all() and (table["n_samples"] == 5).all() and (table["nfe"] == 4).all()
    # the same hash as the experiment's FID rows, or aggregation would call the table stale
    assert (table["config_hash"] == config_hash(spec)).all()


def test_bound_stage_refuses_images_that_are_not_8_bit_in_minus_one_one(tmp_path):
    _, model, data = tiny_image_model(tmp_path, scaling="centered")
    with pytest.raises(ConfigError, match="8-bit images in \\[-1, 1\\]"):
        bound_stage.main(["--model", str(model), "--data", str(data), "--out", str(tmp_path / "b.csv"),
                          "--settings", json.dumps({"n_images": 2, "timesteps": 1, "batch_size": 2, "seed": 0})])


def test_bound_standard_error_comes_from_independent_batches():
    # batch means 2 and 6: their std is 2 sqrt 2, over sqrt 2 batches gives 2; one batch: from its images
    two_batches = [torch.tensor([1.0, 3.0], dtype=F64), torch.tensor([5.0, 7.0], dtype=F64)]
    mean, se = bound_stage.mean_and_standard_error(two_batches)
    assert (float(mean), float(se)) == pytest.approx((4.0, 2.0))
    mean, se = bound_stage.mean_and_standard_error([torch.tensor([1.0, 3.0, 5.0, 7.0], dtype=F64)])
    assert (float(mean), float(se)) == pytest.approx((4.0, math.sqrt(20 / 3) / 2))

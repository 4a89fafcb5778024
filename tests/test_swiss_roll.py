"""Sohl-Dickstein 2015 replication: the swiss roll data, the time readout, the bound of the chain,
and the two stages (swiss roll; bits/dim bound of an image model) end to end at toy size."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from diffrepro.config import ConfigError, config_hash
from diffrepro.denoisers import SohlDickstein
from diffrepro.losses import bits_per_dim_bound
from diffrepro.metrics_table import COLUMNS
from diffrepro.schedules import sohl_dickstein_alpha_bar, sohl_dickstein_betas
from diffrepro.stages import bound as bound_stage
from diffrepro.stages import swiss_roll as swiss_roll_stage
from diffrepro.toy import (SwissRollNet, TimeReadout, bump_basis, chain_samples, per_step_basis, standardise,
                           swiss_roll, unit_variance_scaling)

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


def test_unit_variance_scaling_uses_one_constant_for_both_axes():
    points = swiss_roll(3000, 0.2, torch.Generator().manual_seed(1))
    mean, scale = unit_variance_scaling(points)
    x = standardise(points, mean, scale)
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


# ------------------------------------------------------------------ stages at toy size


SMOKE = {"paper": "sohl_dickstein_2015", "experiment": "swiss_roll",
         "data": {"n_train": 600, "n_test": 200, "noise": 0.0, "seed": 0},
         "schedule": {"name": "sohl_dickstein", "T": 40},
         "network": {"hidden": 16, "readout": "bumps", "n_bumps": 10},
         "train": {"steps": 30, "batch_size": 128, "lr": 0.03, "warmup": 5, "grad_clip": 1.0,
                   "ema_halflife_images": 0, "seed": 0},
         "eval": {"repeats": 1, "n_plot_samples": 100, "seed": 0}}


def test_swiss_roll_stage_writes_finite_contract_rows_and_samples(tmp_path):
    metrics, samples = tmp_path / "m.csv", tmp_path / "s.npz"
    swiss_roll_stage.main(["--settings", json.dumps(SMOKE), "--metrics", str(metrics), "--samples", str(samples)])
    table = pd.read_csv(metrics)
    assert list(table.columns) == COLUMNS
    values = dict(zip(table["metric"], table["value"]))
    assert {"bound_bits", "null_log_likelihood_bits", "bound_minus_null_bits", "bound_bits_edge_ceiling"} <= set(values)
    assert np.isfinite(table["value"]).all()
    assert values["bound_minus_null_bits"] == pytest.approx(values["bound_bits"] - values["null_log_likelihood_bits"])
    # the null model on unit-variance 2-D data: -log2(2 pi e) = -4.09 bits per point, up to sampling
    assert values["null_log_likelihood_bits"] == pytest.approx(-math.log2(2 * math.pi * math.e), abs=0.3)
    assert table["config_hash"].nunique() == 1 and table["config_hash"].iloc[0] == config_hash(SMOKE)
    with np.load(samples) as f:
        assert f["samples"].shape == (100, 2) and np.isfinite(f["samples"]).all()
        assert json.loads(str(f["meta"]))["frame"] == "unit_variance"


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

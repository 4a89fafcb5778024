"""The t-free sampler's noise-level predictor: its baseline, that it learns, its file, its rule."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from diffrepro.denoisers import NoiseLevelPredictor
from diffrepro.metrics_table import COLUMNS
from diffrepro.noise_level import (CONSTANT_MSE, LOGIT_MAX, build_noise_level_predictor,
                                   evaluate_noise_level_predictor, load_noise_level_predictor, load_predictor,
                                   save_noise_level_predictor, train_noise_level_predictor)
from diffrepro.stages import noise_level as stage

# logit(U), U ~ U(0,1), is standard logistic: E X^2 = pi^2/3, E X^4 = 7 pi^4/15, so the mean of n
# squared logits has standard error sqrt((7 pi^4/15 - pi^4/9) / n).
FOURTH_MOMENT = 7 * math.pi**4 / 15


def standard_error(n):
    return math.sqrt((FOURTH_MOMENT - CONSTANT_MSE**2) / n)


def blocky_images(n, size=16, block=4, seed=0):
    """Piecewise-constant images in [-0.5, 0.5]: structure (smooth) a predictor can tell from noise (white)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, size // block, size // block, generator=g) - 0.5
    return coarse.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)


class ZeroNet(nn.Module):
    """Predicts logit(abar) = 0 for every image: the best constant."""

    def forward(self, x):
        return x.new_zeros(x.shape[0], 1)


def test_logit_of_uniform_moments_by_quadrature():
    # E f(logit U) = integral of f(x) * sigmoid'(x) dx over the real line (substitute u = sigmoid(x))
    x = torch.linspace(-60, 60, 400_001, dtype=torch.float64)
    density = torch.sigmoid(x) * torch.sigmoid(-x)
    assert float(torch.trapezoid(x**2 * density, x)) == pytest.approx(math.pi**2 / 3, rel=1e-9)
    assert float(torch.trapezoid(x**4 * density, x)) == pytest.approx(FOURTH_MOMENT, rel=1e-9)
    assert CONSTANT_MSE == pytest.approx(3.2899, abs=1e-4)
    # the course's 3.57 over one 512-image batch is 1.1 standard errors above pi^2/3
    assert (3.57 - CONSTANT_MSE) / standard_error(512) == pytest.approx(1.08, abs=0.01)


def test_constant_predictor_scores_pi2_over_3():
    images = torch.zeros(8000, 1, 4, 4)
    scores = evaluate_noise_level_predictor(NoiseLevelPredictor(ZeroNet()), images, seed=3)
    # the predictor's MSE and the baseline use the same targets: for the zero predictor they coincide
    assert scores["noise_level_mse"] == pytest.approx(scores["noise_level_mse_constant"], rel=1e-6)
    assert abs(scores["noise_level_mse_constant"] - CONSTANT_MSE) < 5 * standard_error(len(images))


def test_predictor_learns_well_below_the_constant_baseline():
    settings = {"width": 8, "steps": 150, "batch_size": 64, "lr": 3e-3, "warmup": 20, "grad_clip": 1.0, "seed": 0}
    predictor, log = train_noise_level_predictor(blocky_images(2048), settings)
    assert len(log) == 150 and not predictor.training
    scores = evaluate_noise_level_predictor(predictor, blocky_images(2000, seed=1), seed=5)
    assert abs(scores["noise_level_mse_constant"] - CONSTANT_MSE) < 5 * standard_error(2000)
    assert scores["noise_level_mse"] < 0.25 * CONSTANT_MSE, scores


def _trained_bn_predictor(width=4):
    """A predictor whose BatchNorm statistics differ from their initial values."""
    torch.manual_seed(0)
    predictor = build_noise_level_predictor(width)
    predictor.train()
    with torch.no_grad():
        for _ in range(3):
            predictor(torch.randn(16, 1, 16, 16) * 2 + 1)
    return predictor.eval()


def test_save_load_round_trip(tmp_path):
    predictor = _trained_bn_predictor()
    path = tmp_path / "predictor.pt"
    save_noise_level_predictor(predictor, path, {"noise_level_mse": 0.5, "spec": "{}"})
    loaded, meta = load_predictor(path)
    x = torch.randn(5, 1, 16, 16)
    assert torch.equal(loaded(x), predictor(x))
    assert meta == {"noise_level_mse": 0.5, "spec": "{}"}
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_loaded_callable_gives_abar_in_open_unit_interval(tmp_path):
    predictor = _trained_bn_predictor()
    path = tmp_path / "predictor.pt"
    save_noise_level_predictor(predictor, path)
    alpha_bar = load_noise_level_predictor(path)
    x = torch.randn(6, 1, 16, 16, dtype=torch.float64)
    abar = alpha_bar(x)
    assert abar.shape == (6,) and abar.dtype == torch.float64
    assert torch.allclose(abar, torch.sigmoid(predictor(x.float()).double()), atol=1e-6)
    # a wildly confident head still yields abar strictly inside (0, 1), at the training range's edge
    for bias, edge in ((1e4, torch.sigmoid(torch.tensor(LOGIT_MAX))), (-1e4, torch.sigmoid(torch.tensor(-LOGIT_MAX)))):
        with torch.no_grad():
            predictor.net.head.bias.fill_(bias)
        save_noise_level_predictor(predictor, path)
        abar = load_noise_level_predictor(path)(x.float())
        assert ((abar > 0) & (abar < 1)).all() and torch.allclose(abar, edge.expand(6))


def _fake_fashion_mnist(path, n_train=256, n_test=64):
    rng = np.random.default_rng(0)
    arrays = {f"{split}_{kind}": (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if kind == "images"
                                  else rng.integers(0, 10, n).astype(np.uint8))
              for split, n in (("train", n_train), ("test", n_test)) for kind in ("images", "labels")}
    np.savez(path, **arrays)


def test_stage_writes_predictor_and_metric_rows(tmp_path):
    _fake_fashion_mnist(tmp_path / "fmnist.npz")
    spec = {"paper": "tfree_fastai", "name": "noise_level", "input_scaling": "centered", "resolution": 16,
            "train_limit": None, "width": 4, "steps": 4, "batch_size": 16, "lr": 1e-3, "warmup": 1,
            "grad_clip": 1.0, "seed": 0, "eval_images": 50}
    out, metrics, losses = tmp_path / "p.pt", tmp_path / "m.csv", tmp_path / "l.csv"
    stage.main(["--spec", json.dumps(spec), "--data", str(tmp_path / "fmnist.npz"), "--out", str(out),
                "--metrics", str(metrics), "--losses", str(losses)])
    rows = pd.read_csv(metrics)
    assert list(rows.columns) == COLUMNS
    assert sorted(rows["metric"]) == ["noise_level_mse", "noise_level_mse_constant"]
    assert set(rows["experiment"]) == {"noise_level"} and set(rows["n_samples"]) == {50}
    assert len(pd.read_csv(losses)) == 4
    abar = load_noise_level_predictor(out)(torch.zeros(3, 1, 16, 16))
    assert abar.shape == (3,) and ((abar > 0) & (abar < 1)).all()


def _dry_run(project, *targets):
    cmd = [sys.executable, "-m", "snakemake", *targets, "-n", "--cores", "1", "--config", "scale=smoke"]
    return subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=300)


def test_rules_dry_run(project):
    sample = "results/smoke/samples/tfree_fastai/tfree/centered/tfree_eta1/5/seed0.npz"
    run = _dry_run(project, "results/smoke/metrics.csv", sample)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "rule tfree_fastai_noise_level" in out and "results/smoke/aux/tfree_fastai/noise_level.pt" in out
    assert "results/smoke/metrics/tfree_fastai/noise_level.csv" in out


def test_bad_stage_setting_fails_at_parse_time(project):
    path = project / "replications" / "tfree_fastai.yaml"
    path.write_text(path.read_text().replace("smoke: {width: 8,", "smoke: {width: 0,"))
    run = _dry_run(project)
    assert run.returncode != 0
    assert "tfree_fastai.yaml: stages.noise_level: smoke.width" in run.stdout + run.stderr

"""The training loop's learning-rate schedules and h-flip augmentation."""

import copy
import math

import pytest
import torch
import yaml

from diffrepro.config import load_config

from diffrepro.plan import Plan

from diffrepro.replications import load_replications
from diffrepro.training import lr_at, random_hflip, train

from conftest import ROOT


@pytest.mark.parametrize("decay", ["cosine", "constant"])
def test_warmup_is_linear_up_to_the_peak(decay):
    assert [lr_at(s, 100, 1.0, 4, decay) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_cosine_decay_halves_at_the_midpoint_and_ends_near_zero():
    peak, warmup, total = 2e-3, 10, 110
    assert lr_at(warmup, total, peak, warmup) == pytest.approx(peak)
    assert lr_at(warmup + 50, total, peak, warmup) == pytest.approx(peak / 2)
    assert lr_at(total - 1, total, peak, warmup) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 99 / 100)))


def test_constant_decay_holds_the_peak_to_the_end():
    assert {lr_at(s, 1000, 2e-4, 50, "constant") for s in range(50, 1000)} == {2e-4}


def test_hflip_mirrors_about_half_the_images_and_leaves_the_rest():
    x = torch.randn(4000, 1, 4, 4)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert abs(mirrored.float().mean().item() - 0.5) < 4 * 0.5 / math.sqrt(4000)


class _Schedule:
    def sample_sigma(self, n, generator=None):
        return torch.rand(n, generator=generator)


def _train(cfg, data):
    denoiser = torch.nn.Conv2d(1, 1, 1)
    torch.manual_seed(0)
    loss = lambda d, x0, sigma, noise: ((d(x0 + sigma[:, None, None, None] * noise) - x0) ** 2).mean()
    return train(denoiser, _Schedule(), loss, data, cfg, progress=False)


def test_training_logs_the_configured_schedule_and_flips_change_the_run():
    # an image that is not its own mirror, so flipping changes what the network sees
    data = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(8, 1, 1, 1) / 16
    cfg = {"steps": 12, "batch_size": 4, "lr": 1e-2, "warmup": 2, "seed": 0}
    _, cosine = _train(cfg, data)
    _, constant = _train({**cfg, "lr_decay": "constant"}, data)
    assert [r["lr"] for r in constant[2:]] == [1e-2] * 10
    assert cosine[-1]["lr"] < 1e-3
    _, flipped = _train({**cfg, "hflip": True}, data)
    assert [r["loss"] for r in flipped] != [r["loss"] for r in cosine]


def test_paper_settings_reach_only_the_paper_scale_training_specs(tmp_path):
    config = yaml.safe_load((ROOT / "workflow" / "config.yaml").read_text())
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.touch()  # the paper-scale Plan only asks whether the file is there
    config["inception_weights"] = str(weights)
    replications = load_replications(ROOT / "replications")
    for scale in ("smoke", "quick", "paper"):
        plan = Plan(load_config({**copy.deepcopy(config), "scale": scale}), replications)
        ddpm = plan.training_spec("ddpm_2020", "eps_simple", "symmetric")["train"]
        edm = plan.training_spec("karras_edm_2022", "edm", "symmetric")["train"]
        if scale == "paper":
            assert (ddpm["lr_decay"], ddpm["hflip"], edm["lr_decay"]) == ("constant", True, "constant")
            assert "hflip" not in edm  # EDM's own augmentation is not built; no flip in its place
        else:
            assert not {"lr_decay", "hflip"} & (ddpm.keys() | edm.keys())


def test_ema_decay_is_the_half_life_in_images_and_ramps_up_with_images_seen():
    from diffrepro.training import ema_decay
    assert ema_decay(64, 5000) == pytest.approx(0.5 ** (64 / 5000))
    assert ema_decay(64, 0) == 0.0
    # EDM's ramp-up: half-life capped at 5% of the images seen, so the first step keeps
    # 0.5^(1 / 0.05) of the initial weights and late steps use the full half-life
    assert ema_decay(64, 5000, images_seen=64, rampup_ratio=0.05) == pytest.approx(0.5 ** 20)
    assert ema_decay(64, 5000, images_seen=10 ** 6, rampup_ratio=0.05) == pytest.approx(0.5 ** (64 / 5000))


def test_ramp_up_leaves_no_trace_of_the_initial_weights():
    """Share of the initial weights in the average after 500 steps of 64 images
    with a 5,000-image half-life: prod of the decays. 0.5^(32000/5000) = 1.2% without the ramp-up."""
    from diffrepro.training import ema_decay
    without = math.prod(ema_decay(64, 5000) for _ in range(500))
    ramped = math.prod(ema_decay(64, 5000, (k + 1) * 64, 0.05) for k in range(500))
    assert without == pytest.approx(0.5 ** 6.4)
    assert ramped < 1e-6


def test_training_ema_tracks_the_trained_weights_with_ramp_up():
    """A 1x1 conv trained to the identity from a distant start: with a half-life far longer than
    the run, the plain EMA stays near the initial weights; with the ramp-up it follows training."""
    data = torch.rand(64, 1, 4, 4)
    cfg = {"steps": 60, "batch_size": 8, "lr": 5e-2, "seed": 0, "ema_halflife_images": 1e6}
    loss = lambda d, x0, sigma, noise: ((d(x0 + sigma[:, None, None, None] * noise) - x0) ** 2).mean()

    def run(**changes):
        torch.manual_seed(1)
        return train(torch.nn.Conv2d(1, 1, 1), _Schedule(), loss, data, {**cfg, **changes}, progress=False)[0]

    torch.manual_seed(1)
    init = torch.nn.Conv2d(1, 1, 1).weight.detach().clone()
    plain, ramped, raw = run(ema_rampup_ratio=0.0), run(), run(ema_halflife_images=0)  # default ramp-up: 0.05
    assert torch.allclose(plain["weight"], init, atol=1e-3)
    assert (ramped["weight"] - raw["weight"]).abs().max() < 0.3 * (init - raw["weight"]).abs().max()


def test_snapshots_are_the_ema_weights_at_every_snapshot_step_and_survive_a_resume(tmp_path):
    """snapshot_every 4 over 12 steps of 8 images, constant lr: snapshots after 32 and 64 images (the
    final weights are the model itself). With a constant lr the first 4 steps of any run are the same,
    so a 4-step run's final EMA is the first snapshot: a copy of the weights then, not the live tensors.
    A run resumed from a step-4 checkpoint keeps that snapshot and ends equal to an uninterrupted run."""
    data = torch.rand(64, 1, 4, 4)
    cfg = {"batch_size": 8, "lr": 5e-2, "lr_decay": "constant", "seed": 0, "ema_halflife_images": 16,
           "snapshot_every": 4, "checkpoint_every": 4}
    loss = lambda d, x0, sigma, noise: ((d(x0 + sigma[:, None, None, None] * noise) - x0) ** 2).mean()

    def run(steps, checkpoint=None):
        torch.manual_seed(1)
        snapshots = {}
        final, _ = train(torch.nn.Conv2d(1, 1, 1), _Schedule(), loss, data, {**cfg, "steps": steps},
                         checkpoint_path=checkpoint, progress=False, snapshots=snapshots)
        return final, snapshots

    final, snapshots = run(12)
    assert sorted(snapshots) == [32, 64]
    assert not torch.equal(snapshots[32]["weight"], snapshots[64]["weight"])
    assert torch.equal(run(4)[0]["weight"], snapshots[32]["weight"])
    checkpoint = tmp_path / "checkpoint.pt"
    run(8, checkpoint)  # leaves its step-4 checkpoint (the last step writes none), as a run killed after step 4
    resumed_final, resumed = run(12, checkpoint)
    assert sorted(resumed) == [32, 64] and torch.equal(resumed_final["weight"], final["weight"])
    assert all(torch.equal(resumed[k]["weight"], snapshots[k]["weight"]) for k in snapshots)


def test_no_snapshots_without_a_dict_or_an_interval():
    data = torch.rand(16, 1, 4, 4)
    loss = lambda d, x0, sigma, noise: ((d(x0 + sigma[:, None, None, None] * noise) - x0) ** 2).mean()
    snapshots = {}
    train(torch.nn.Conv2d(1, 1, 1), _Schedule(), loss, data, {"steps": 4, "batch_size": 4, "lr": 1e-2, "seed": 0},
          progress=False, snapshots=snapshots)
    assert snapshots == {}


def test_the_loss_log_is_on_disk_while_training_runs(tmp_path, monkeypatch):
    """The CSV is rewritten every LOG_EVERY steps: read from inside the run (a loss function that
    looks at it), it already holds the steps before the last rewrite; at the end, every step."""
    import pandas as pd
    from diffrepro import training

    monkeypatch.setattr(training, "LOG_EVERY", 3)
    path = tmp_path / "loss.csv"
    seen = []

    def loss(d, x0, sigma, noise):
        seen.append(len(pd.read_csv(path)) if path.exists() else 0)
        return ((d(x0 + sigma[:, None, None, None] * noise) - x0) ** 2).mean()

    train(torch.nn.Conv2d(1, 1, 1), _Schedule(), loss, torch.rand(16, 1, 4, 4),
          {"steps": 8, "batch_size": 4, "lr": 1e-2, "seed": 0}, progress=False, log_path=path)
    assert seen == [0, 0, 0, 3, 3, 3, 6, 6]
    log = pd.read_csv(path)
    assert list(log["step"]) == list(range(1, 9)) and list(log.columns) == ["step", "loss", "lr", "images_per_s"]

"""Experiments on CIFAR-10 at paper scale: the Plan routes data, image channels, network sizes,
sample counts and FID features by data set; the smoke and quick plans stay Fashion-MNIST with
unchanged specs; the paper DAG builds with the Inception rules and 50k-sample shard jobs, and
refuses to start without the Inception weights."""

import copy
import os
import re
import resource
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from conftest import ROOT, stage_paper_inputs

from diffrepro.build import build_model, build_network
from diffrepro.config import at_scale, load_config
from diffrepro.plan import Plan
from diffrepro.replications import load_replications
from diffrepro.schema import ConfigError
from diffrepro.models.unet import count_parameters
from diffrepro.sampling import draw_samples

CONFIG = yaml.safe_load((ROOT / "workflow" / "config.yaml").read_text())
REPLICATIONS = load_replications(ROOT / "replications")
CIFAR10_EXPERIMENTS = {("ddpm_2020", "eps_simple"), ("ddpm_2020", "mu_vlb_fixed"), ("ddpm_2020", "eps_vlb_fixed"),
                       ("karras_edm_2022", "edm"), ("karras_edm_2022", "on_ddpm"), ("ddim_2021", "on_ddpm")}


def plan(scale, replications=REPLICATIONS, **config):
    cfg = {**copy.deepcopy(CONFIG), "scale": scale, **config}
    return Plan(load_config(cfg), replications)


@pytest.fixture
def paper(tmp_path):
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.touch()  # the Plan only asks whether the file is there
    return plan("paper", inception_weights=str(weights))


def run(r) -> SimpleNamespace:
    return SimpleNamespace(**r)


@pytest.mark.parametrize("scale", ["smoke", "quick"])
def test_smoke_and_quick_train_on_fashion_mnist_with_specs_as_before(scale):
    p = plan(scale)
    runs = list(p.sample_runs())
    assert runs and p.datasets_in_use() == {"fashion_mnist"} and p.inception_weights is None
    for r in runs:
        assert "dataset" not in p.training_spec(r["paper"], r["experiment"], r["scaling"], r["seed"])
        assert p.data_file("results/data", run(r)) == "results/data/fashion_mnist.npz"
        assert p.extractor(r["paper"], r["experiment"]) == "fmnist-classifier"
    assert all(f.startswith("R/metrics/") for f in p.metric_files("R")) and not p.sharded()
    # the per-scale forms hand quick what the plain forms used to (EDM's network and loss)
    edm = p.training_spec("karras_edm_2022", "edm", "symmetric")
    assert edm["unet"] == {**CONFIG["scales"][scale]["unet"], "time_multiplier": 250.0}
    assert edm["parameterisation"] == {"name": "edm", "sigma_data": 0.66, "c_noise": "log"}
    assert edm["loss"] == {"name": "edm", "sigma_data": 0.66}
    # the scale's training, with EDM's quick-scale steps and the snapshots of its learning curve
    train = {**CONFIG["scales"][scale]["train"], **({"steps": 1200} if scale == "quick" else {})}
    assert edm["train"] == {**train, "snapshot_every": -(-train["steps"] // 6)}


def test_paper_routes_cifar10_experiments_and_keeps_the_others_on_fashion_mnist(paper):
    routed = {(r["paper"], r["experiment"]) for r in paper.runs() if paper.dataset(r["paper"], r["experiment"]) == "cifar10"}
    assert routed == CIFAR10_EXPERIMENTS  # experiments sampling the DDPM network (`model:`) follow it
    for r in paper.sample_runs():
        w, cifar = run(r), (r["paper"], r["experiment"]) in CIFAR10_EXPERIMENTS
        spec = paper.sample_spec(r["paper"], r["experiment"], r["scaling"], r["label"], r["steps"], r["seed"])
        assert spec["training"].get("dataset") == ("cifar10" if cifar else None)
        assert paper.data_file("D", w) == ("D/cifar10.npz" if cifar else "D/fashion_mnist.npz")
        assert (spec["n_samples"], paper.shards_of(r["paper"], r["experiment"])) == ((50000, 4) if cifar else (2048, 1))
        assert paper.extractor(r["paper"], r["experiment"]) == ("inception" if cifar else "fmnist-classifier")
    files = paper.metric_files("R")
    cifar_sets = sum((r["paper"], r["experiment"]) in CIFAR10_EXPERIMENTS for r in paper.sample_runs())
    assert sum(f.startswith("R/metrics_inception/") for f in files) == cifar_sets > 0
    assert paper.shard_files("R", run({"paper": "ddpm_2020", "experiment": "eps_simple", "scaling": "symmetric",
                                       "label": "ddpm_large", "steps": 1000, "seed": 0}))[-1] == \
        "R/sample_shards/ddpm_2020/eps_simple/symmetric/ddpm_large/1000/seed0/shard3of4.npz"
    course = paper.training_spec("tfree_fastai", "cosine_t", "centered")  # the course's 15.9M UNet stays
    assert course["unet"] == {**CONFIG["scales"]["paper"]["unet"], "time_multiplier": 1000} and "dataset" not in course


# The parameter counts the replication files state (counted by building the networks on CPU).
DDPM_CIFAR10_PARAMETERS = 35_746_307  # the paper: 35.7M
EDM_CIFAR10_PARAMETERS = 54_675_907  # the paper's DDPM++: ~56M


def test_cifar10_networks_have_three_channels_and_the_papers_sizes(paper):
    ddpm = paper.training_spec("ddpm_2020", "eps_simple", "symmetric")
    assert ddpm["unet"]["channels"] == [128, 256, 256, 256] and ddpm["unet"]["dropout"] == 0.1
    assert ddpm["train"]["batch_size"] == 128 and ddpm["train"]["steps"] == 800_000
    net = build_network(ddpm)
    assert net.conv_in.in_channels == net.conv_out.out_channels == 3
    assert count_parameters(net) == DDPM_CIFAR10_PARAMETERS
    assert abs(DDPM_CIFAR10_PARAMETERS - 35.7e6) / 35.7e6 < 0.005
    edm = paper.training_spec("karras_edm_2022", "edm", "symmetric")
    assert edm["parameterisation"]["sigma_data"] == edm["loss"]["sigma_data"] == 0.5  # EDM's CIFAR-10 value
    assert count_parameters(build_network(edm)) == EDM_CIFAR10_PARAMETERS
    assert abs(EDM_CIFAR10_PARAMETERS - 56e6) / 56e6 < 0.03
    assert build_network(paper.training_spec("tfree_fastai", "cosine_t", "centered")).conv_in.in_channels == 1


def test_sampling_draws_as_many_channels_as_the_data_set_has(paper):
    spec = paper.training_spec("ddpm_2020", "eps_simple", "symmetric")
    spec["unet"].update(channels=[8, 16], blocks_per_level=1, attention_levels=[], groups=8)
    net, _, denoiser = build_model(spec)
    sample_spec = {"seed": 0, "n_samples": 3, "batch_size": 2, "sampler": {
        "label": "ddim", "name": "ddim", "options": {"eta": 0.0}, "grid": {}, "steps": 2}}
    images, _ = draw_samples({"spec": spec, "state_dict": denoiser.state_dict()}, sample_spec, progress=False)
    assert images.shape == (3, 3, 32, 32)


def test_per_scale_values():
    assert at_scale({"paper": "cifar10"}, "quick", "fashion_mnist") == "fashion_mnist"
    assert at_scale({"smoke": "a", "paper": "b"}, "paper") == "b"
    assert at_scale({"time_multiplier": 250.0}, "paper") == {"time_multiplier": 250.0}  # not per scale: as it is
    assert at_scale("cifar10", "smoke") == "cifar10"


def test_a_data_set_without_its_scale_settings_or_weights_is_refused(tmp_path, monkeypatch):
    replications = copy.deepcopy(REPLICATIONS)
    replications["ddpm_2020"]["experiments"]["eps_simple"]["dataset"] = "cifar10"
    with pytest.raises(ConfigError, match=r"scales.quick.datasets.cifar10: not configured, .* \(ddim_2021/on_ddpm, ddpm_2020/eps_simple, "):
        plan("quick", replications)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # no weights in the hub cache
    with pytest.raises(ConfigError) as err:
        plan("paper")
    assert "inception_weights" in str(err.value) and "\n" not in str(err.value)


def test_schema_refuses_a_data_set_on_an_experiment_that_samples_another_network(tmp_path):
    doc = yaml.safe_load((ROOT / "replications" / "ddim_2021.yaml").read_text())
    doc["experiments"]["on_ddpm"]["dataset"] = "cifar10"
    (tmp_path / "ddim_2021.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="ddim_2021.yaml: experiments.on_ddpm"):
        load_replications(tmp_path)


# --- the paper DAG ---------------------------------------------------------------------------

def dry_run(project, *config, env=None):
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "all", "--config", "scale=paper",
                           *config], cwd=project, capture_output=True, text=True, timeout=120, env=env)


def job_counts(output: str) -> dict:
    table = output.split("Job stats:")[1].split("\n\n")[0]
    rows = (re.fullmatch(r"(\w+)\s+(\d+)", line.strip()) for line in table.splitlines())
    return {row[1]: int(row[2]) for row in rows if row and row[1] != "total"}


def test_paper_dag_scores_cifar10_with_inception_on_50k_samples_in_shards(project, paper):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = dry_run(project, *stage_paper_inputs(project))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) < 10  # CPU seconds
    counts = job_counts(result.stdout)
    cifar = sum((r["paper"], r["experiment"]) in CIFAR10_EXPERIMENTS for r in paper.sample_runs())
    others = sum(1 for _ in paper.sample_runs()) - cifar
    assert counts["cifar10"] == counts["inception_reference"] == 1
    assert counts["evaluate_inception"] == counts["merge_samples"] == cifar
    assert counts["sample_shard"] == 4 * cifar
    assert counts["sample"] == counts["evaluate"] == others
    assert "shard3of4.npz" in result.stdout and "results/paper/reference/cifar10_train_inception.npz" in result.stdout
    assert "--n 50000" in result.stdout


def test_paper_dag_without_inception_weights_fails_at_parse_time_in_one_line(project, tmp_path):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "empty_torch_home")}
    result = dry_run(project, env=env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    [line] = [line for line in output.splitlines() if "Inception-v3 FID weights not found" in line]
    assert line.startswith("invalid configuration:") and "inception_weights" in line
    assert "Job stats" not in output


def test_train_and_sample_stages_run_a_cifar10_experiment(paper, tmp_path):
    """The paper spec of ddpm_2020/eps_simple, shrunk to toy size, through the train and sample
    stages on a fake CIFAR-10 npz: a 3-channel network, 3-channel samples."""
    import json

    import numpy as np

    from diffrepro.stages import sample, train

    rng = np.random.default_rng(0)
    data = tmp_path / "cifar10.npz"
    np.savez(data, train_images=rng.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8),
             train_labels=rng.integers(0, 10, 16, dtype=np.uint8))
    spec = paper.training_spec("ddpm_2020", "eps_simple", "symmetric")
    spec["unet"].update(channels=[8, 16], blocks_per_level=1, attention_levels=[], groups=8)
    spec["train"].update(steps=2, batch_size=4, warmup=1, checkpoint_every=2, ema_halflife_images=0)
    spec.pop("performance")  # bf16/TF32/channels_last are for GPUs
    model = tmp_path / "model.pt"
    train.main(["--spec", json.dumps(spec), "--data", str(data), "--out", str(model), "--losses",
                str(tmp_path / "loss.csv")])
    sample_spec = paper.sample_spec("ddpm_2020", "eps_simple", "symmetric", "ddpm_large", 3, 0)
    sample_spec.update(training=spec, n_samples=3, batch_size=2)
    sample_spec.pop("performance")
    out = tmp_path / "samples.npz"
    sample.main(["--spec", json.dumps(sample_spec), "--model", str(model), "--out", str(out)])
    with np.load(out) as f:
        assert f["images"].shape == (3, 3, 32, 32)

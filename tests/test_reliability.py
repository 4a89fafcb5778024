"""Reliability of the train/sample stages: resume after kill -9 is bit-identical, sampling is
deterministic and shard-invariant, divergence and damaged files stop with one actionable line,
killed writes leave no trusted file, and results never go silently stale.

The stages run as real subprocesses (`python -m diffrepro.stages.*`) on a tiny spec, as
Snakemake would run them.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from diffrepro.build import build_loss, build_model
from diffrepro.plan import Plan
from diffrepro.spec_hash import config_hash
from diffrepro.io import atomic_save, load_checkpoint
from diffrepro.metrics_table import COLUMNS, StaleResults, check_single_config
from diffrepro.sampling import draw_samples
from diffrepro.training import TrainingDiverged, restore_rng, rng_state, train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "OMP_NUM_THREADS": "1"}
STEPS, EVERY = 40, 5
TRAIN_TARGET = "results/smoke/models/ddpm_2020/eps_simple/symmetric/model.pt"


def smoke_plan() -> Plan:
    config = yaml.safe_load((ROOT / "workflow" / "config.yaml").read_text())
    config["scale"] = "smoke"
    return Plan(config, {"ddpm_2020": yaml.safe_load((ROOT / "replications" / "ddpm_2020.yaml").read_text())})


def tiny_spec(**train) -> dict:
    """DDPM eps/L_simple at toy size; dropout and EMA on so their RNG/state are checkpointed too.

    256 images / batch 8 = 32 steps per epoch, so 40 steps cross an epoch (a reshuffle).
    """
    spec = smoke_plan().training_spec("ddpm_2020", "eps_simple", "symmetric")
    spec["train_limit"] = 256
    spec["unet"].update(channels=[8, 16], dropout=0.1)
    spec["train"] = {"steps": STEPS, "batch_size": 8, "lr": 2e-3, "warmup": 5, "grad_clip": 1.0,
                     "ema_halflife_images": 64, "checkpoint_every": EVERY, "seed": 0, **train}
    return spec


def sample_spec(seed=0) -> dict:
    # Ancestral sampling draws fresh noise every step, so the per-batch generator is exercised
    # beyond the initial noise; 10 images in batches of 4 include a short last batch.
    return {"training": tiny_spec(), "seed": seed, "n_samples": 10, "batch_size": 4,
            "sampler": {"label": "ddpm_large", "name": "ddpm_ancestral", "grid": {}, "steps": 3,
                        "options": {"variance": "large", "clip_x0": True}}}


def stage(name, *args) -> list:
    return [sys.executable, "-m", f"diffrepro.stages.{name}", *map(str, args)]


def train_cmd(spec, data, out_dir: Path) -> list:
    return stage("train", "--spec", json.dumps(spec), "--data", data, "--out", out_dir / "model.pt",
                 "--losses", out_dir / "loss.csv", "--checkpoint", out_dir / "train.ckpt")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, **kw)


def assert_one_line_error(result, *names):
    """The stage failed with a single `error:` line (no traceback) naming every `names`."""
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for name in names:
        assert str(name) in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def uninterrupted(fmnist_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = run(train_cmd(tiny_spec(), fmnist_npz, out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (out / "train.ckpt").exists(), "a finished training leaves no checkpoint behind"
    return out


# ------------------------------------------------------------------ resume after kill -9

def test_resume_after_sigkill_is_bit_identical(fmnist_npz, uninterrupted, tmp_path):
    cmd = train_cmd(tiny_spec(), fmnist_npz, tmp_path)
    ckpt = tmp_path / "train.ckpt"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "training ended before the kill; the test did not interrupt it"
    assert not (tmp_path / "model.pt").exists()

    # Everything in the checkpoint (numpy/python RNG states included) loads with weights_only=True.
    killed_at = load_checkpoint(ckpt, "training checkpoint")["step"]
    assert killed_at % EVERY == 0 and 0 < killed_at < STEPS

    rerun = run(cmd)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"from step {killed_at}" in rerun.stderr, "the rerun did not resume from the checkpoint"
    assert not ckpt.exists()

    resumed = load_checkpoint(tmp_path / "model.pt")["state_dict"]
    reference = load_checkpoint(uninterrupted / "model.pt")["state_dict"]
    assert resumed.keys() == reference.keys()
    different = [k for k in reference if not torch.equal(resumed[k], reference[k])]
    assert not different, f"resumed weights differ from the uninterrupted run in {different}"

    cols = ["step", "loss", "lr"]  # images_per_s is wall-clock, the rest must match exactly
    resumed_log, reference_log = pd.read_csv(tmp_path / "loss.csv"), pd.read_csv(uninterrupted / "loss.csv")
    assert resumed_log["step"].tolist() == list(range(1, STEPS + 1))
    pd.testing.assert_frame_equal(resumed_log[cols], reference_log[cols], check_exact=True)


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    def draw():
        return torch.rand(3, generator=generator), torch.rand(3), np.random.standard_normal(3), random.random()

    generator = torch.Generator().manual_seed(3)
    np.random.seed(1)
    np.random.standard_normal()  # numpy now holds a cached second gaussian, part of its state
    atomic_save(rng_state(generator), tmp_path / "rng.pt")
    expected = draw()
    generator.manual_seed(9)
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    restore_rng(load_checkpoint(tmp_path / "rng.pt"), generator)
    again = draw()
    assert torch.equal(expected[0], again[0]) and torch.equal(expected[1], again[1])
    assert np.array_equal(expected[2], again[2]) and expected[3] == again[3]


def test_trained_model_moved_from_init_and_names_its_config(uninterrupted):
    """Guards the resume test against passing trivially: training really changes the weights."""
    model = load_checkpoint(uninterrupted / "model.pt", required=("spec", "state_dict", "config_hash"))
    assert model["config_hash"] == config_hash(tiny_spec())
    torch.manual_seed(0)
    _, _, fresh = build_model(tiny_spec())
    trained = model["state_dict"]
    assert any(not torch.equal(fresh.state_dict()[k], trained[k]) for k in trained)


def test_corrupt_training_checkpoint_stops_with_one_line(fmnist_npz, uninterrupted, tmp_path):
    # Our choice: refuse, naming the file and telling the user to delete it (training.py says why).
    ckpt = tmp_path / "train.ckpt"
    good = (uninterrupted / "model.pt").read_bytes()
    ckpt.write_bytes(good[: len(good) // 2])
    result = run(train_cmd(tiny_spec(), fmnist_npz, tmp_path))
    line = assert_one_line_error(result, ckpt, "delete it")
    assert "truncated or corrupt" in line
    assert ckpt.exists() and not (tmp_path / "model.pt").exists()


def test_checkpoint_of_another_configuration_is_ignored(tmp_path):
    spec = tiny_spec(steps=4, checkpoint_every=2, ema_halflife_images=0)
    data = torch.rand(32, 1, 32, 32) * 2 - 1
    ckpt = tmp_path / "train.ckpt"
    atomic_save({"describe": "another config", "model": {}, "opt": {}, "ema": None, "step": 3, "log": [],
                 "order": None, "cursor": 0, "rng": {}}, ckpt)
    torch.manual_seed(0)
    _, schedule, denoiser = build_model(spec)
    _, log = train(denoiser, schedule, build_loss(spec), data, spec["train"], checkpoint_path=ckpt,
                   describe="this config", progress=False)
    assert [row["step"] for row in log] == [1, 2, 3, 4]  # started over instead of loading step 3


# ------------------------------------------------------------------ divergence

def test_nan_loss_stops_at_once_naming_step_value_and_config(tmp_path):
    spec = tiny_spec(steps=10, ema_halflife_images=0)
    data = torch.rand(32, 1, 32, 32) * 2 - 1
    torch.manual_seed(0)
    _, schedule, denoiser = build_model(spec)
    loss, calls = build_loss(spec), []

    def nan_at_third_step(*args):
        calls.append(1)
        value = loss(*args)
        return value * float("nan") if len(calls) == 3 else value

    with pytest.raises(TrainingDiverged) as err:
        train(denoiser, schedule, nan_at_third_step, data, spec["train"], describe="ddpm_2020/x config abc",
              progress=False)
    message = str(err.value)
    assert len(calls) == 3 and "\n" not in message
    assert "loss is nan at step 3 of 10" in message and "config abc" in message


def test_weights_that_blow_up_with_a_finite_loss_stop_training_and_sampling(tmp_path):
    """lr 1e9 for one step: the loss it logged was finite, the weights reach ~1e9."""
    spec = tiny_spec(steps=1, ema_halflife_images=0)
    spec["train"].update(lr=1e9, warmup=0, grad_clip=None)
    data = torch.rand(32, 1, 32, 32) * 2 - 1
    torch.manual_seed(0)
    _, schedule, denoiser = build_model(spec)
    with pytest.raises(TrainingDiverged, match=r"a weight reached \|w\| = .* at step 1 of 1 while the loss was "
                                               r"[0-9.]+ \(ddpm_2020/x config abc\)"):
        train(denoiser, schedule, build_loss(spec), data, spec["train"], describe="ddpm_2020/x config abc",
              progress=False)
    # a model file saved by a run that did not check its weights is refused before sampling
    state = denoiser.state_dict()
    model_file = {"spec": spec, "state_dict": state}
    with pytest.raises(TrainingDiverged, match=r"weights reach \|w\| = .*its training diverged \(ddpm_2020/"):
        draw_samples(model_file, sample_spec(), progress=False)


def test_a_first_batch_with_nan_stops_sampling_at_once(uninterrupted, monkeypatch):
    import diffrepro.samplers as samplers
    import diffrepro.sampling as sampling

    calls = []

    def diverging(network, x, sigmas, **options):
        calls.append(1)
        return x * float("nan")

    monkeypatch.setitem(samplers.SAMPLERS, "ddpm_ancestral", diverging)
    with pytest.raises(sampling.SamplingDiverged, match=r"non-finite pixels in the first batch \(batch 0\) of "
                                                         r"ddpm_large at 3 steps on ddpm_2020/eps_simple/symmetric"):
        draw_samples(torch.load(uninterrupted / "model.pt", weights_only=True), sample_spec(), progress=False)
    assert len(calls) == 1  # not the other two batches


def test_diverging_stage_exits_with_one_line(fmnist_npz, tmp_path):
    # Adam moves every weight by ~lr per step: lr 1e30 puts weights at ~1e30 after the first step
    # (the second step's loss would overflow float32); the weight check stops it at step 1.
    spec = tiny_spec(lr=1e30)
    result = run(train_cmd(spec, fmnist_npz, tmp_path))
    line = assert_one_line_error(result, "at step 1 of", config_hash(spec))
    assert "a weight reached |w| = " in line
    assert not (tmp_path / "model.pt").exists()


# ------------------------------------------------------------------ sampling

def sample(model, out, seed=0):
    result = run(stage("sample", "--spec", json.dumps(sample_spec(seed)), "--model", model, "--out", out))
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(out) as f:
        return f["images"]


def test_sampling_stage_is_deterministic_per_seed(uninterrupted, tmp_path):
    model = uninterrupted / "model.pt"
    first, again = sample(model, tmp_path / "a.npz"), sample(model, tmp_path / "b.npz")
    other_seed = sample(model, tmp_path / "c.npz", seed=1)
    assert first.shape == (10, 1, 32, 32)
    assert np.array_equal(first, again)
    flat = first.reshape(len(first), -1)
    assert len(np.unique(flat, axis=0)) == len(flat), "two images of one set are identical (a reused generator?)"
    assert not np.isclose(first, other_seed).all(axis=(1, 2, 3)).any(), "seed 1 repeats an image of seed 0"


def test_shards_concatenate_to_the_full_sample_set(uninterrupted):
    model, spec = load_checkpoint(uninterrupted / "model.pt"), sample_spec()
    full, _ = draw_samples(model, spec, progress=False)
    shard_a, _ = draw_samples(model, spec, progress=False, batches=[0])
    shard_b, _ = draw_samples(model, spec, progress=False, batches=range(1, 3))
    assert shard_a.shape[0] == 4 and shard_b.shape[0] == 6
    assert np.array_equal(np.concatenate([shard_a, shard_b]), full)


@pytest.mark.parametrize("damage, what_is_wrong", [
    ("truncated", "is truncated or corrupt (not a complete PyTorch zip archive)"),
    ("lfs_pointer", "is truncated or corrupt (not a complete PyTorch zip archive)"),
    ("pickled_numpy", "holds objects that safe (weights_only) loading refuses"),
    ("checkpoint_not_model", "lacks spec, state_dict"),
])
def test_damaged_model_file_gives_one_actionable_line(uninterrupted, tmp_path, damage, what_is_wrong):
    good = (uninterrupted / "model.pt").read_bytes()
    bad = tmp_path / "model.pt"
    if damage == "truncated":
        bad.write_bytes(good[: len(good) * 2 // 3])
    elif damage == "lfs_pointer":  # a clone without `git lfs pull`
        bad.write_text("version https://git-lfs.github.com/spec/v1\n")
    elif damage == "pickled_numpy":
        torch.save({"spec": {}, "state_dict": np.zeros(3)}, bad)
    else:
        torch.save({"describe": "x", "model": {}}, bad)
    result = run(stage("sample", "--spec", json.dumps(sample_spec()), "--model", bad, "--out", tmp_path / "s.npz"))
    assert_one_line_error(result, f"{bad}: trained model {what_is_wrong}", "delete it and rerun")
    assert not (tmp_path / "s.npz").exists()


# ------------------------------------------------------------------ killed writes

# Runs a stage with its writer replaced by one that writes half a file and then hangs, so the
# SIGKILL lands mid-write deterministically.
HANG_IN_WRITE = """
import sys, time, numpy, torch
from pathlib import Path
marker = Path(sys.argv[1])
def half_write_then_hang(path):
    Path(path).write_bytes(b"PK" + bytes(1000))
    marker.touch()
    time.sleep(600)
numpy.savez = lambda path, *arrays, **named: half_write_then_hang(path)
def half_write_array_then_hang(fp, *args, **kwargs):  # sample sets: npz members written one by one
    fp.write(bytes(1000))
    marker.touch()
    time.sleep(600)
numpy.lib.format.write_array = half_write_array_then_hang
torch.save = lambda obj, path, *args, **kwargs: half_write_then_hang(path)
import runpy
sys.argv = [sys.argv[2]] + sys.argv[3:]
runpy.run_module(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("which", ["train", "sample"])
def test_sigkill_during_write_leaves_no_final_file(fmnist_npz, uninterrupted, tmp_path, which):
    if which == "train":
        args = train_cmd(tiny_spec(steps=2), fmnist_npz, tmp_path)[3:]
        final = tmp_path / "model.pt"
    else:
        final = tmp_path / "seed0.npz"
        args = ["--spec", json.dumps(sample_spec()), "--model", uninterrupted / "model.pt", "--out", final]
    writing = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", HANG_IN_WRITE, writing, f"diffrepro.stages.{which}",
                             *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    deadline = time.monotonic() + 240
    while not writing.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writing.exists(), proc.stderr.read().decode()[-2000:]
    proc.kill()
    proc.wait()
    proc.stderr.close()
    assert not final.exists(), "a write killed half-way left a file under the final name"
    assert list(tmp_path.glob("*.part.*")), "the half-written temporary should be beside it"


# ------------------------------------------------------------------ stale results

def metrics_rows(hashes, seeds=None):
    seeds = seeds or [0] * len(hashes)
    return pd.DataFrame([{**dict.fromkeys(COLUMNS, 0), "paper": "ddpm_2020", "experiment": "eps_simple",
                          "input_scaling": "symmetric", "seed": s, "config_hash": h} for s, h in zip(seeds, hashes)])


def test_metrics_of_two_configurations_are_never_mixed():
    check_single_config(metrics_rows(["aaa", "aaa"]))
    with pytest.raises(StaleResults, match="ddpm_2020/eps_simple/symmetric;"):
        check_single_config(metrics_rows(["aaa", "bbb"]))
    check_single_config(metrics_rows(["aaa", "bbb"], seeds=[0, 1]))  # replicates train with their own seed
    with pytest.raises(StaleResults):
        check_single_config(metrics_rows(["aaa", "bbb", "ccc"], seeds=[0, 1, 1]))


def test_aggregate_stage_refuses_mixed_configurations(tmp_path):
    files = []
    for i, h in enumerate(["aaa", "bbb"]):
        files.append(tmp_path / f"m{i}.csv")
        metrics_rows([h]).to_csv(files[-1], index=False)
    result = run(stage("aggregate", "--out", tmp_path / "metrics.csv", *files))
    assert_one_line_error(result, "ddpm_2020/eps_simple/symmetric", "rerun")
    assert not (tmp_path / "metrics.csv").exists()


def test_aggregate_stage_refuses_rows_of_an_older_configuration_than_the_plans(tmp_path):
    """A metrics file kept from an older configuration (as --rerun-triggers mtime would keep it) is named."""
    path = tmp_path / "seed0.csv"
    metrics_rows(["old"]).to_csv(path, index=False)
    expected = json.dumps({"ddpm_2020/eps_simple/symmetric/0": "new"})
    result = run(stage("aggregate", "--expected", expected, "--out", tmp_path / "metrics.csv", path))
    assert_one_line_error(result, str(path), "configuration old, the current one is new")
    assert not (tmp_path / "metrics.csv").exists()
    ok = run(stage("aggregate", "--expected", json.dumps({"ddpm_2020/eps_simple/symmetric/0": "old"}),
                   "--out", tmp_path / "metrics.csv", path))
    assert ok.returncode == 0 and (tmp_path / "metrics.csv").exists()


def test_plan_names_the_hash_of_every_sampled_network():
    plan = smoke_plan()
    hashes = plan.network_hashes()
    assert hashes["ddpm_2020/eps_simple/symmetric/0"] == config_hash(plan.training_spec("ddpm_2020", "eps_simple", "symmetric"))
    assert set(hashes) == {f"{r['paper']}/{r['experiment']}/{r['scaling']}/{r['seed']}" for r in plan.sample_runs()}
    assert len(set(hashes.values())) == len(hashes)  # every network its own configuration


def test_config_hash_changes_with_training_settings():
    base = tiny_spec()
    assert config_hash(tiny_spec()) == config_hash(base)
    assert config_hash(tiny_spec(lr=1e-3)) != config_hash(base)
    assert config_hash(tiny_spec(seed=1)) != config_hash(base)


def snakemake(project, *args):
    return subprocess.run([str(Path(sys.executable).with_name("snakemake")), TRAIN_TARGET, "--cores", "1",
                           *args, "--config", "scale=smoke"], cwd=project, capture_output=True, text=True,
                          timeout=120)


def edit_smoke_scale(project, section, key, value):
    path = project / "workflow" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    assert config["scales"]["smoke"][section][key] != value
    config["scales"]["smoke"][section][key] = value
    path.write_text(yaml.safe_dump(config))


def test_changed_training_setting_reruns_train(project):
    # Fake outputs + `--touch --forceall` record Snakemake's metadata (incl. params) without training.
    model = project / TRAIN_TARGET
    (project / "results" / "data").mkdir(parents=True)
    (project / "results" / "data" / "fashion_mnist.npz").touch()
    time.sleep(0.05)
    model.parent.mkdir(parents=True)
    model.touch()
    (model.parent / "loss.csv").touch()
    assert snakemake(project, "--touch", "--forceall").returncode == 0
    dry = snakemake(project, "-n")
    out = dry.stdout + dry.stderr
    assert "Nothing to be done" in out and "missing provenance" not in out, out[-2000:]

    edit_smoke_scale(project, "sampling", "n_samples", 123)
    dry = snakemake(project, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr, "a sampling setting must not retrain"

    edit_smoke_scale(project, "train", "lr", 1.234e-3)
    dry = snakemake(project, "-n")
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-2000:]
    assert "rule train:" in out and "Params have changed" in out, out[-2000:]


# --- damaged data files: one line naming the file ---------------------------------------------------

def _flip_a_byte_inside_the_images(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the stored (uncompressed) images array: its CRC no longer matches
    path.write_bytes(bytes(data))


def test_sample_set_with_a_bad_crc_is_one_line_naming_it(tmp_path):
    from diffrepro.io import DamagedFileError
    from diffrepro.sample_sets import read_sample_set, write_sample_set

    path = tmp_path / "seed0.npz"
    write_sample_set(path, np.random.default_rng(0).random((64, 1, 32, 32), dtype=np.float32), {"nfe": 1})
    _flip_a_byte_inside_the_images(path)
    with pytest.raises(DamagedFileError, match=r"seed0\.npz: sample set is truncated or corrupt .*rerun") as raised:
        read_sample_set(path)
    assert "\n" not in str(raised.value)
    fid = json.dumps({"kid_subset_size": 8, "kid_subsets": 2})
    stage = subprocess.run([sys.executable, "-m", "diffrepro.stages.evaluate", "--samples", str(path), "--classifier",
                            str(tmp_path / "c.pt"), "--reference", str(tmp_path / "r.npz"), "--resolution", "32",
                            "--fid", fid, "--out", str(tmp_path / "m.csv")], env=ENV, capture_output=True, text=True)
    last = stage.stderr.strip().splitlines()[-1]
    assert stage.returncode == 1 and "Traceback" not in stage.stderr and last.startswith(f"error: {path}: sample set")


def test_reference_statistics_with_nan_are_one_line_naming_the_file(tmp_path):
    from diffrepro.features import FMNIST_CLASSIFIER, Extractor
    from diffrepro.io import DamagedFileError
    from diffrepro.metrics import load_reference
    from diffrepro.models.classifier import FashionClassifier, save_classifier

    save_classifier(FashionClassifier(width=4), tmp_path / "classifier.pt")
    extractor = Extractor(FMNIST_CLASSIFIER, tmp_path / "classifier.pt")
    path = tmp_path / "reference.npz"
    mu = np.zeros(3)
    mu[1] = np.nan
    np.savez(path, mu=mu, sigma=np.eye(3), extractor=extractor.name, feature_layer=extractor.feature_layer,
             weights_sha256=extractor.weights_sha256())
    with pytest.raises(DamagedFileError, match=r"reference\.npz: reference statistics file has NaN or inf in 'mu'"):
        load_reference(path, extractor)
    path.write_bytes(path.read_bytes()[:200])  # cut short
    with pytest.raises(DamagedFileError, match=r"reference\.npz: reference statistics file is truncated or corrupt"):
        load_reference(path, extractor)


def test_classifier_file_is_written_atomically_and_a_damaged_one_is_one_line(tmp_path):
    from diffrepro.io import CheckpointError
    from diffrepro.models.classifier import FashionClassifier, load_classifier, save_classifier

    path = tmp_path / "classifier.pt"
    save_classifier(FashionClassifier(width=4), path, {"accuracy": 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier.pt"]  # no temporary left beside it
    assert load_classifier(path)[1] == {"accuracy": 0.5}
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"classifier\.pt: classifier file is truncated or corrupt.*rerun"):
        load_classifier(path)


def test_every_error_a_user_can_fix_is_one_line_and_a_bug_keeps_its_traceback(capsys):
    from diffrepro.schema import ConfigError
    from diffrepro.data import DataError
    from diffrepro.errors import UserError
    from diffrepro.features import ImageSetError
    from diffrepro.inception_weights import UntrustedWeightsError
    from diffrepro.io import CheckpointError, DamagedFileError
    from diffrepro.metrics_table import StaleResults
    from diffrepro.performance import DeviceUnavailable
    from diffrepro.sample_sets import ShardError
    from diffrepro.sampling import SamplingDiverged
    from diffrepro.stages import run_stage
    from diffrepro.training import TrainingDiverged

    for error in (ConfigError, DataError, ImageSetError, UntrustedWeightsError, CheckpointError, DamagedFileError,
                  StaleResults, DeviceUnavailable, ShardError, SamplingDiverged, TrainingDiverged):
        assert issubclass(error, UserError)

        def fail(error=error):
            raise error("what to change")

        with pytest.raises(SystemExit) as stop:
            run_stage(fail)
        assert stop.value.code == 1 and capsys.readouterr().err == "error: what to change\n"
    with pytest.raises(KeyError):
        run_stage(lambda: {}["a bug"])

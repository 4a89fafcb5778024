"""Sharded sampling: shards cover every batch once, shard-then-merge writes the very sample set
the unsharded stage writes, and the DAG uses sample_shard + merge_samples only when asked to."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffrepro.build import build_model
from diffrepro.config import load_config
from diffrepro.plan import Plan
from diffrepro.schema import ConfigError
from diffrepro.io import atomic_save
from diffrepro.sample_sets import ShardError, merge_shards, read_sample_set
from diffrepro.sampling import n_batches, shard_batches
from diffrepro.stages import merge_samples, sample
from diffrepro.training import seed_everything

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "workflow" / "config.yaml").read_text())
DDPM = yaml.safe_load((ROOT / "replications" / "ddpm_2020.yaml").read_text())


@pytest.mark.parametrize("n_samples, batch_size, shards", [(10, 4, 2), (10, 4, 3), (2048, 512, 4), (50000, 512, 7)])
def test_shards_cover_every_batch_once_in_order(n_samples, batch_size, shards):
    pieces = [shard_batches(n_samples, batch_size, i, shards) for i in range(shards)]
    assert [k for piece in pieces for k in piece] == list(range(n_batches(n_samples, batch_size)))
    assert all(len(piece) >= 1 for piece in pieces)
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 1


def test_more_shards_than_batches_is_refused():
    with pytest.raises(ValueError, match="shards <= 3"):
        shard_batches(10, 4, 0, 4)
    config = copy.deepcopy(CONFIG)
    config["scale"] = "smoke"
    config["scales"]["smoke"]["sampling"]["shards"] = 2  # 200 samples in one batch of 200
    load_config(config)
    with pytest.raises(ConfigError, match=r"scales.smoke.sampling.shards: 2 shards of 1 batches.*at most 1"):
        Plan(config, {"ddpm_2020": DDPM})


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny untrained DDPM network whose zero-initialised output layers are made non-zero, so
    its predictions (and the images) depend on every layer."""
    config = copy.deepcopy(CONFIG)
    config["scale"] = "smoke"
    spec = Plan(config, {"ddpm_2020": DDPM}).training_spec("ddpm_2020", "eps_simple", "symmetric")
    spec["unet"].update(channels=[8, 16])
    seed_everything(0)
    net, _, denoiser = build_model(spec)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("model") / "model.pt"
    atomic_save({"spec": spec, "config_hash": "tiny", "state_dict": denoiser.state_dict()}, path)
    return path, spec


def sample_spec(training_spec, n_samples=10, batch_size=4) -> str:
    # ancestral sampling draws fresh noise every step, so the per-batch generators matter beyond x_T;
    # unclipped, some pixels leave [0, 1], which the meta counts
    return json.dumps({"run": {"paper": "ddpm_2020", "experiment": "eps_simple", "input_scaling": "symmetric"},
                       "training": training_spec, "seed": 3, "n_samples": n_samples, "batch_size": batch_size,
                       "sampler": {"label": "ddpm_large", "name": "ddpm_ancestral", "grid": {}, "steps": 4,
                                   "options": {"variance": "large"}}}, sort_keys=True)


def run_sample(model, spec, out, *shard):
    sample.main(["--spec", spec, "--model", str(model), "--out", str(out), *map(str, shard)])
    return out


@pytest.mark.parametrize("shards", [2, 3])
def test_shard_then_merge_writes_the_unsharded_sample_set(model_file, tmp_path, shards):
    model, training_spec = model_file
    spec = sample_spec(training_spec)
    whole = run_sample(model, spec, tmp_path / "whole.npz")
    parts = [run_sample(model, spec, tmp_path / f"shard{i}of{shards}.npz", "--shard", i, "--shards", shards)
             for i in range(shards)]
    merge_samples.main(["--out", str(tmp_path / "merged.npz"), *map(str, parts)])

    with np.load(whole) as a, np.load(tmp_path / "merged.npz") as b:
        assert a.files == b.files == ["images", "meta"]
        assert a["images"].dtype == b["images"].dtype and a["images"].shape == b["images"].shape == (10, 1, 32, 32)
        assert a["images"].tobytes() == b["images"].tobytes()
        whole_meta, merged_meta = json.loads(str(a["meta"])), json.loads(str(b["meta"]))
    assert list(merged_meta) == list(whole_meta)  # same keys in the same order
    assert 0 < whole_meta["out_of_range_fraction"], "no out-of-range pixels: the fraction's merge goes untested"
    # the same, bit for bit: no wall-clock time in a sample file, and no clock in its zip members
    assert "seconds" not in whole_meta
    assert (tmp_path / "merged.npz").read_bytes() == whole.read_bytes()
    shard_images = [read_sample_set(p)[0] for p in parts]
    assert all(len(images) > 0 for images in shard_images)


def test_merge_refuses_shards_that_are_not_one_set(model_file, tmp_path):
    model, training_spec = model_file
    spec, other = sample_spec(training_spec), sample_spec(training_spec, n_samples=12)
    parts = [read_sample_set(run_sample(model, spec, tmp_path / f"s{i}.npz", "--shard", i, "--shards", 2))
             for i in range(2)]
    stranger = read_sample_set(run_sample(model, other, tmp_path / "o1.npz", "--shard", 1, "--shards", 2))
    assert len(merge_shards(parts)[0]) == 10
    with pytest.raises(ShardError, match="not shards 0..1"):
        merge_shards(parts[::-1])
    with pytest.raises(ShardError, match="not shards 0..1"):
        merge_shards(parts[:1])
    with pytest.raises(ShardError, match="different sample specs"):
        merge_shards([parts[0], stranger])


def dry_run(project, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "all", "--config", "scale=smoke",
                           *args], cwd=project, capture_output=True, text=True, timeout=120)


def job_counts(output: str) -> dict:
    """{rule: jobs} from the dry run's job-stats table."""
    table = output.split("Job stats:")[1].split("\n\n")[0]
    rows = (re.fullmatch(r"(\w+)\s+(\d+)", line.strip()) for line in table.splitlines())
    return {row[1]: int(row[2]) for row in rows if row and row[1] != "total"}


def test_dry_run_with_shards_uses_sample_shard_and_merge_samples(project):
    unsharded = dry_run(project)
    assert unsharded.returncode == 0, unsharded.stderr[-2000:]
    plain = job_counts(unsharded.stdout)
    assert plain["sample"] > 0 and "sample_shard" not in plain and "merge_samples" not in plain

    (project / "shards.yaml").write_text(yaml.safe_dump({"scales": {"smoke": {"sampling": {
        "n_samples": 200, "batch_size": 100, "seeds": [0], "shards": 2}}}}))
    sharded = dry_run(project, "--configfile", "shards.yaml")
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    counts = job_counts(sharded.stdout)
    assert "sample" not in counts
    assert counts["merge_samples"] == plain["sample"] and counts["sample_shard"] == 2 * plain["sample"]
    assert counts["evaluate"] == plain["evaluate"]
    block = sharded.stdout.split("rule sample_shard:")[1].split("\n\n")[0]
    assert "shard1of2.npz" in sharded.stdout and "gpu=1" in block, block

"""Bad configuration is rejected before any job runs, with one line naming file, key and allowed values."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import FMNIST_DEBIAN
from diffrepro.config import load_config
from diffrepro.plan import Plan
from diffrepro.replications import load_replications
from diffrepro.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "workflow" / "config.yaml").read_text())
DDPM = yaml.safe_load((ROOT / "replications" / "ddpm_2020.yaml").read_text())


def _set(doc, path, value):
    *parents, last = path
    for key in parents:
        doc = doc[key]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value


_DELETE = object()

BAD_CONFIGS = [
    (["scale"], "huge", "scale", "smoke, quick, paper"),
    (["scales", "smoke", "train", "steps"], -5, "scales.smoke.train.steps", "minimum"),
    (["scales", "quick", "train", "steps"], 0, "scales.quick.train.steps", "minimum"),
    (["scales", "smoke", "train", "stepz"], 10, "scales.smoke.train", "stepz"),
    (["scales", "smoke", "train", "lr"], "fast", "scales.smoke.train.lr", "number"),
    (["scales", "smoke", "sampling", "seeds"], [], "scales.smoke.sampling.seeds", "non-empty"),
    (["scales", "smoke", "resolution"], 30, "scales.smoke.resolution", "16, 32, 64"),
    (["scales", "smoke", "unet", "channels"], [16, -1], "scales.smoke.unet.channels.1", "minimum"),
    (["scales", "smoke", "fid", "kid_subset_size"], 1, "scales.smoke.fid.kid_subset_size", "minimum"),
    (["scales", "huge"], {}, "scales", "huge"),
    (["scales", "paper"], _DELETE, "scales", "paper"),
    (["data_root"], "/does/not/exist", "data_root", "does not exist"),
    (["inception_weights"], "/no/such/weights.pth", "inception_weights", "does not exist"),
]


@pytest.mark.parametrize("path,value,key,hint", BAD_CONFIGS, ids=[".".join(c[0]) + "=" + repr(c[1])[:12] for c in BAD_CONFIGS])
def test_bad_config_names_key(path, value, key, hint):
    cfg = copy.deepcopy(CONFIG)
    _set(cfg, path, value)
    with pytest.raises(ConfigError) as err:
        load_config(cfg, "workflow/config.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("workflow/config.yaml: ") and key in msg and hint in msg, msg


BAD_REPLICATIONS = [
    (["experiments", "eps_simple", "samplers", 0, "name"], "ddpm_anscestral", "samplers.ddpm_large.name",
     "unknown sampler 'ddpm_anscestral' (allowed: ddpm_ancestral, ddim"),
    # DDPM's ancestral sampler has no eta (the catalog's declaration of it, tests/test_catalog.py)
    (["experiments", "eps_simple", "samplers", 1, "options", "eta"], 0.5, "samplers.ddpm_small.options.eta",
     "unknown option 'eta' (allowed: variance, clip_x0)"),
    (["experiments", "eps_simple", "samplers", 1, "steps", "quick"], [0], "steps", "minimum"),
    (["experiments", "eps_simple", "samplers", 1, "steps", "quick"], [-10], "steps", "minimum"),
    (["experiments", "eps_simple", "samplers"], [], "samplers", "non-empty"),
    (["experiments", "eps_simple", "schedule", "name"], "linear_beat", "schedule.name", "linear_beta"),
    (["experiments", "eps_simple", "parameterisation", "name"], "epsilon", "parameterisation.name", "eps, x0, v"),
    (["experiments", "eps_simple", "loss", "name"], "l2", "loss.name", "simple"),
    (["experiments", "eps_simple", "input_scalings"], ["minus_one_one"], "input_scalings.0", "unit, centered"),
    (["experiments", "eps_simple", "samplerz"], [], "experiments.eps_simple", "samplerz"),
    (["experiments", "eps_simple", "samplers", 1, "options", "etta"], 0.0, "options", "etta"),
    (["paper"], "DDPM 2020", "paper", "match"),
    (["reference", 0, "experiment"], "no_such_experiment", "reference", "no_such_experiment"),
    (["deviations"], _DELETE, "deviations", "required property"),
    (["deviations", 0, "why"], _DELETE, "deviations.0", "'why' is a required property"),
    (["deviations", 0, "scales"], ["fast"], "deviations.0.scales.0", "smoke, quick, paper"),
    (["deviations", 0, "because"], "x", "deviations.0", "because"),
]


def _write_replication(tmp_path, doc, name="ddpm_2020"):
    d = tmp_path / "replications"
    d.mkdir(exist_ok=True)
    (d / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    return d


@pytest.mark.parametrize("path,value,key,hint", BAD_REPLICATIONS, ids=[".".join(map(str, c[0][-2:])) for c in BAD_REPLICATIONS])
def test_bad_replication_names_file_and_key(tmp_path, path, value, key, hint):
    doc = copy.deepcopy(DDPM)
    _set(doc, path, value)
    d = _write_replication(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        load_replications(d)
    msg = str(err.value)
    assert "\n" not in msg and "ddpm_2020.yaml" in msg and key in msg and hint in msg, msg


def test_duplicate_sampler_labels_rejected(tmp_path):
    doc = copy.deepcopy(DDPM)
    samplers = doc["experiments"]["eps_simple"]["samplers"]
    samplers.append(copy.deepcopy(samplers[0]))
    with pytest.raises(ConfigError, match="duplicate label.*ddpm_large"):
        load_replications(_write_replication(tmp_path, doc))


def test_file_name_must_match_paper(tmp_path):
    with pytest.raises(ConfigError, match="must equal the file name"):
        load_replications(_write_replication(tmp_path, DDPM, name="ddpm"))


def test_yaml_syntax_error(tmp_path):
    d = tmp_path / "replications"
    d.mkdir()
    (d / "broken.yaml").write_text("paper: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_replications(d)


def test_a_key_given_twice_is_refused_not_silently_the_last(tmp_path):
    text = (ROOT / "replications" / "ddpm_2020.yaml").read_text()
    d = tmp_path / "replications"
    d.mkdir()
    (d / "ddpm_2020.yaml").write_text(text + "title: another title\n")  # a top-level key again, at the end
    with pytest.raises(ConfigError, match=r"ddpm_2020.yaml: not valid YAML \(key 'title' given twice "
                                          r"\(first at line \d+\) at line \d+\)$"):
        load_replications(d)


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    d = tmp_path / "replications"
    d.mkdir()
    (d / "notes.yaml").write_bytes("paper: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"notes.yaml: not UTF-8 text .*save it as UTF-8"):
        load_replications(d)


def test_missing_replications_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_replications(tmp_path / "nope")


def test_shipped_files_are_valid_and_plan_expands():
    plan = Plan(load_config(copy.deepcopy(CONFIG)), load_replications(ROOT / "replications"))
    runs = list(plan.sample_runs())
    assert {r["label"] for r in runs} >= {"ddpm_large", "eta0", "ddpm_cosine"}
    smoke = Plan(load_config({**copy.deepcopy(CONFIG), "scale": "smoke"}), plan.replications)
    assert len(list(smoke.sample_runs())) >= 3
    # a changed training setting changes the spec (and so its hash and the Snakemake params)
    a = plan.training_spec("ddpm_2020", "eps_simple", "symmetric")
    plan.scale_cfg["train"]["lr"] *= 2
    assert plan.training_spec("ddpm_2020", "eps_simple", "symmetric") != a


def test_schema_sampler_names_match_library():
    from diffrepro.denoisers import PARAMETERISATIONS
    from diffrepro.losses import LOSSES
    from diffrepro.samplers import SAMPLERS
    from diffrepro.schedules import SCHEDULES

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "replication.schema.yaml").read_text())
    d = schema["$defs"]
    from diffrepro.catalog import SAMPLERS as DECLARED
    assert set(DECLARED) == set(SAMPLERS)  # the schema takes any name; the catalog knows the library's
    assert set(d["experiment"]["properties"]["schedule"]["properties"]["name"]["enum"]) == set(SCHEDULES)
    assert set(d["parameterisation"]["properties"]["name"]["enum"]) == set(PARAMETERISATIONS)
    assert set(d["loss"]["properties"]["name"]["enum"]) <= set(LOSSES)


def test_schema_data_sets_match_library():
    from diffrepro.datasets import DATASETS

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "replication.schema.yaml").read_text())
    assert set(schema["$defs"]["dataset"]["enum"]) == set(DATASETS)


def _snakemake(cwd, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_snakemake_rejects_bad_config_before_any_job(project):
    r = _snakemake(project, "--config", "scale=huge")
    assert r.returncode != 0
    assert "scale: 'huge' is not allowed (allowed: smoke, quick, paper)" in r.stderr + r.stdout
    assert not (project / "results").exists()

    bad = copy.deepcopy(CONFIG)
    bad["scales"]["smoke"]["train"]["steps"] = -5
    (project / "bad.yaml").write_text(yaml.safe_dump(bad))
    r = _snakemake(project, "--configfile", "bad.yaml")
    assert r.returncode != 0 and "scales.smoke.train.steps" in r.stderr + r.stdout


def test_nested_command_line_overrides_are_read_as_the_schema_types_them(project):
    """Snakemake hands the values inside `key={...}` over as strings; numbers, booleans and null
    where the schema wants them are read as such, a word where a number belongs still fails."""
    r = _snakemake(project, "-p", "--config", "scale=smoke",
                   "scales={smoke: {train: {steps: 30, lr: 1e-3, grad_clip: null}, performance: {bf16: true}}}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"steps": 30' in r.stdout and '"lr": 0.001' in r.stdout and '"bf16": true' in r.stdout
    r = _snakemake(project, "--config", "scale=smoke", "scales={smoke: {train: {steps: thirty}}}")
    assert r.returncode != 0 and "scales.smoke.train.steps: 'thirty' is not of type 'integer'" in r.stderr + r.stdout


def test_snakemake_dry_run_quick_builds_dag(project):
    r = _snakemake(project)
    assert r.returncode == 0, r.stderr[-2000:]
    for rule in ("train", "sample", "evaluate", "real_data_floor", "aggregate_metrics", "report"):
        assert rule in r.stdout


def _with_sharing_experiment(tmp_path, model="ddpm_2020/eps_simple", scalings=("symmetric",)):
    d = _write_replication(tmp_path, DDPM)
    doc = {"paper": "sharer", "title": "t", "citation": "c", "deviations": [], "experiments": {"reuse": {
        "description": "samples the DDPM network", "model": model, "input_scalings": list(scalings),
        "samplers": [{"label": "euler", "name": "euler", "steps": [5]}]}}}
    (d / "sharer.yaml").write_text(yaml.safe_dump(doc))
    return d


def test_shared_model_is_sampled_not_trained(tmp_path):
    plan = Plan(load_config({**copy.deepcopy(CONFIG), "scale": "smoke"}), load_replications(_with_sharing_experiment(tmp_path)))
    assert {t["paper"] for t in plan.trainings()} == {"ddpm_2020"}
    runs = [r for r in plan.sample_runs() if r["paper"] == "sharer"]
    assert runs and plan.trained_by("sharer", "reuse") == ("ddpm_2020", "eps_simple")
    spec = plan.sample_spec("sharer", "reuse", "symmetric", "euler", 5, 0)
    assert spec["run"]["paper"] == "sharer" and spec["training"] == plan.training_spec("ddpm_2020", "eps_simple", "symmetric")


@pytest.mark.parametrize("model,scalings,hint", [
    ("ddpm_2020/nope", ("symmetric",), "not a trained experiment (trained: ddpm_2020/eps_simple, "),
    ("sharer/reuse", ("symmetric",), "not a trained experiment"),
    ("ddpm_2020/eps_simple", ("unit",), "not trained with input scaling(s) unit at scale smoke (trained: symmetric)"),
])
def test_bad_shared_model_reference(tmp_path, model, scalings, hint):
    with pytest.raises(ConfigError) as err:
        load_replications(_with_sharing_experiment(tmp_path, model, scalings))
    assert "sharer.yaml: experiments.reuse.model" in str(err.value) and hint in str(err.value)


def test_experiment_cannot_both_train_and_share(tmp_path):
    doc = copy.deepcopy(DDPM)
    doc["experiments"]["eps_simple"]["model"] = "ddpm_2020/eps_simple"
    with pytest.raises(ConfigError, match="experiments.eps_simple"):
        load_replications(_write_replication(tmp_path, doc))


def test_sweep_expands_with_per_scale_subsets(tmp_path):
    doc = {"paper": "sweeper", "title": "t", "citation": "c", "deviations": [], "sweeps": {"grid": {
        "base": copy.deepcopy(DDPM["experiments"]["eps_simple"]),
        "axes": [{"name": "b", "path": "parameterisation.data_multiplier",
                  "values": [{"label": "1", "value": 1.0}, {"label": "0p5", "value": 0.5}]},
                 {"name": "res", "path": "resolution", "values": [{"label": "16", "value": 16}, {"label": "32", "value": 32}]}],
        "subset": {"smoke": {"b": ["1"], "res": ["16"]}}}}}
    d = tmp_path / "replications"
    d.mkdir()
    (d / "sweeper.yaml").write_text(yaml.safe_dump(doc))
    exps = load_replications(d)["sweeper"]["experiments"]
    assert sorted(exps) == ["grid__b0p5__res16", "grid__b0p5__res32", "grid__b1__res16", "grid__b1__res32"]
    assert exps["grid__b0p5__res32"]["parameterisation"]["data_multiplier"] == 0.5
    assert exps["grid__b0p5__res32"]["factors"] == {"b": 0.5, "res": 32}
    assert exps["grid__b1__res16"]["scales"] == ["smoke", "quick", "paper"]
    assert exps["grid__b0p5__res16"]["scales"] == ["quick", "paper"]
    plan = Plan(load_config({**copy.deepcopy(CONFIG), "scale": "smoke"}), {"sweeper": {"experiments": exps}})
    assert [t["experiment"] for t in plan.trainings()] == ["grid__b1__res16"]
    assert plan.training_spec("sweeper", "grid__b1__res16", "symmetric")["resolution"] == 16


def test_sweep_giving_an_invalid_experiment_is_rejected(tmp_path):
    doc = {"paper": "sweeper", "title": "t", "citation": "c", "deviations": [], "sweeps": {"grid": {
        "base": copy.deepcopy(DDPM["experiments"]["eps_simple"]),
        "axes": [{"name": "res", "path": "resolution", "values": [{"label": "20", "value": 20}]}]}}}
    d = tmp_path / "replications"
    d.mkdir()
    (d / "sweeper.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="sweeper.yaml: sweeps.grid gives an invalid experiment grid__res20: resolution: 20 is not allowed"):
        load_replications(d)


def test_replicate_seeds_train_their_own_network(tmp_path):
    d = _with_sharing_experiment(tmp_path)
    doc = yaml.safe_load((d / "sharer.yaml").read_text())
    doc["experiments"]["reuse"]["samplers"][0]["seeds"] = {"smoke": [0, 2]}
    (d / "sharer.yaml").write_text(yaml.safe_dump(doc))
    plan = Plan(load_config({**copy.deepcopy(CONFIG), "scale": "smoke"}), load_replications(d))
    assert sorted(r["seed"] for r in plan.sample_runs() if r["paper"] == "sharer") == [0, 2]
    w = lambda seed: type("W", (), {"paper": "sharer", "experiment": "reuse", "scaling": "symmetric", "seed": seed})
    assert plan.model_path("r", w(0)) == "r/models/ddpm_2020/eps_simple/symmetric/model.pt"
    assert plan.model_path("r", w(2)) == "r/models/ddpm_2020/eps_simple/symmetric/seed2/model.pt"
    base = plan.training_spec("ddpm_2020", "eps_simple", "symmetric")
    twin = plan.sample_spec("sharer", "reuse", "symmetric", "euler", 5, 2)["training"]
    assert twin["train"]["seed"] == base["train"]["seed"] + 2 and {**twin, "train": base["train"]} == base
    assert plan.sample_spec("sharer", "reuse", "symmetric", "euler", 5, 0)["training"] == base


def test_readme_example_replication_dry_runs(project):
    """The README's worked example, verbatim, is validated, picked up and planned by Snakemake."""
    readme = (project / "README.md").read_text()
    section = readme[readme.index("## Adding a replication"):]
    example = section[section.index("```yaml") + len("```yaml"):section.index("```", section.index("```yaml") + 7)]
    doc = yaml.safe_load(example)
    (project / "replications" / f"{doc['paper']}.yaml").write_text(example)
    for scale, replicated in (("smoke", False), ("quick", True)):
        r = _snakemake(project, "--config", f"scale={scale}")
        assert r.returncode == 0, r.stderr[-2000:]
        out = r.stdout + r.stderr
        assert f"paper={doc['paper']}, experiment=main" in out and f"paper={doc['paper']}, experiment=on_ddpm" in out
        for seed in (1, 2):
            assert (f"models/{doc['paper']}/main/symmetric/seed{seed}/model.pt" in out) == replicated
    (project / "replications" / f"{doc['paper']}.yaml").write_text(example.replace("name: heun,", "name: hen,"))
    r = _snakemake(project, "--config", "scale=smoke")
    assert r.returncode != 0 and f"{doc['paper']}.yaml" in r.stderr + r.stdout


@pytest.mark.skipif(not (FMNIST_DEBIAN / "train-images-idx3-ubyte.gz").exists(), reason="needs dataset-fashion-mnist")
def test_snakemake_from_an_unactivated_venv_runs_jobs_with_its_python(tmp_path):
    """The README's `.venv/bin/snakemake ...`: with only the system directories on PATH, a job's
    `python` must still be the interpreter running Snakemake (here: the data job, which imports numpy)."""
    from conftest import copy_project

    project = copy_project(tmp_path / "project")
    snakemake = Path(sys.executable).parent / "snakemake"
    run = subprocess.run([str(snakemake), "--cores", "1", "--config", "scale=smoke", f"results={tmp_path}/results",
                          f"reports={tmp_path}/reports", "--", f"{tmp_path}/results/data/fashion_mnist.npz"],
                         cwd=project, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "results" / "data" / "fashion_mnist.npz").exists()


def test_learning_curve_keeps_snapshots_and_plans_one_curve_per_scaling(tmp_path):
    doc = copy.deepcopy(DDPM)
    doc["experiments"]["eps_simple"]["learning_curve"] = {"sampler": "ddpm_small", "points": 4}
    plan = Plan(load_config({**copy.deepcopy(CONFIG), "scale": "smoke"}), load_replications(_write_replication(tmp_path, doc)))
    steps = plan.training_spec("ddpm_2020", "eps_simple", "symmetric")["train"]["steps"]
    assert plan.training_spec("ddpm_2020", "eps_simple", "symmetric")["train"]["snapshot_every"] == -(-steps // 4)
    assert "snapshot_every" not in plan.training_spec("ddpm_2020", "eps_vlb_fixed", "symmetric")["train"]
    sampler = plan.sampler_entry("ddpm_2020", "eps_simple", "ddpm_small")
    largest = max(sampler["steps"]["smoke"] if isinstance(sampler["steps"], dict) else sampler["steps"])
    assert plan.learning_curve_files("r") == [f"r/learning_curves/ddpm_2020/eps_simple/symmetric/ddpm_small/{largest}.csv"]


@pytest.mark.parametrize("experiment,curve,hint", [
    ("eps_simple", {"sampler": "nope"}, "learning_curve.sampler: 'nope' is not one of this experiment's sampler labels"),
    ("eps_simple", {"sampler": "ddpm_small", "points": 1}, "learning_curve.points"),
    ("eps_simple", {"samplr": "ddpm_small"}, "learning_curve"),
])
def test_bad_learning_curve_is_one_line_naming_the_key(tmp_path, experiment, curve, hint):
    doc = copy.deepcopy(DDPM)
    doc["experiments"][experiment]["learning_curve"] = curve
    with pytest.raises(ConfigError) as err:
        load_replications(_write_replication(tmp_path, doc))
    assert "\n" not in str(err.value) and "ddpm_2020.yaml" in str(err.value) and hint in str(err.value), str(err.value)

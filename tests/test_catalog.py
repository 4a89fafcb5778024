"""The component catalog: equal to the functions it configures, and every bad value it knows of
refused before any job, in one line naming the file and the key."""

import copy
import inspect
import math

import pytest
import yaml

from diffrepro import catalog
from diffrepro.config import load_config
from diffrepro.plan import Plan
from diffrepro.replications import load_replications
from diffrepro.schema import ConfigError
from diffrepro.denoisers import _OPTIONS as PARAMETERISATION_OPTIONS
from diffrepro.losses import LOSSES
from diffrepro.models.unet import UNet
from diffrepro.samplers import SAMPLERS
from diffrepro.schedules import SCHEDULES

from conftest import ROOT

CONFIG = yaml.safe_load((ROOT / "workflow" / "config.yaml").read_text())
DDPM = yaml.safe_load((ROOT / "replications" / "ddpm_2020.yaml").read_text())
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "replication.schema.yaml").read_text())["$defs"]
WORKFLOW_KEYWORDS = {"generator", "progress", "callback"}  # set by the workflow, never by a YAML


def _keywords(fn, skip=()):
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty and name not in skip}


def _same_default(declared, actual):
    if isinstance(actual, tuple) or isinstance(declared, tuple):
        return tuple(declared) == tuple(actual)
    return declared == actual or (isinstance(actual, float) and math.isinf(actual) and declared == actual)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_declarations_equal_their_builders(name):
    actual = _keywords(SCHEDULES[name])
    declared = catalog.SCHEDULES[name].options
    assert set(declared) == set(actual)
    assert all(_same_default(declared[k].default, actual[k]) for k in actual)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_declarations_equal_their_signatures(name):
    actual = _keywords(SAMPLERS[name], WORKFLOW_KEYWORDS)
    component = catalog.SAMPLERS[name]
    assert set(component.options) | set(component.aux) == set(actual)
    # clip_x0 is a flag in YAML and a data range in the function (build.sampler_options maps one to the other)
    assert all(_same_default(component.options[k].default, actual[k]) for k in component.options if k != "clip_x0")


@pytest.mark.parametrize("name", sorted(catalog.LOSSES))
def test_loss_declarations_equal_their_signatures(name):
    actual = _keywords(LOSSES[name])
    declared = catalog.LOSSES[name].options
    assert set(declared) == set(actual)
    assert all(_same_default(declared[k].default, actual[k]) for k in actual)


def test_parameterisation_and_network_declarations_equal_the_code():
    assert {k: set(c.options) for k, c in catalog.PARAMETERISATIONS.items()} == PARAMETERISATION_OPTIONS
    actual = _keywords(UNet, {"in_channels"})
    assert set(catalog.NETWORK.options) == set(actual)
    assert all(_same_default(catalog.NETWORK.options[k].default, actual[k]) for k in actual)


def test_catalog_names_equal_the_schema_enums():
    assert set(catalog.LOSSES) == set(SCHEMA["loss"]["properties"]["name"]["enum"])
    assert set(catalog.PARAMETERISATIONS) == set(SCHEMA["parameterisation"]["properties"]["name"]["enum"])
    schedules = SCHEMA["experiment"]["properties"]["schedule"]["properties"]["name"]["enum"]
    assert set(catalog.SCHEDULES) == set(schedules)


EPS = ["experiments", "eps_simple"]
SAMPLER0 = EPS + ["samplers", 0]
EDM = {"name": "edm", "sigma_min": 0.002, "sigma_max": 80.0}
BAD = [
    # (path in ddpm_2020.yaml, value, the key the message names, what it says)
    (EPS + ["schedule", "beta_mx"], 0.02, "experiments.eps_simple.schedule.beta_mx", "unknown option 'beta_mx' (allowed: T, beta_min, beta_max)"),
    (EPS + ["schedule", "T"], 0, "experiments.eps_simple.schedule.T", "0 must be at least 1"),
    (EPS + ["schedule", "T"], "1000", "experiments.eps_simple.schedule.T", "'1000' is not an integer"),
    (EPS + ["schedule", "beta_max"], 1.5, "experiments.eps_simple.schedule.beta_max", "1.5 must be at most 1"),
    (EPS + ["schedule", "beta_min"], 0.05, "experiments.eps_simple.schedule", "beta_min (0.05) must be below beta_max (0.02)"),
    (EPS + ["schedule"], {**EDM, "sigma_min": 100.0}, "experiments.eps_simple.schedule", "sigma_min (100.0) must be below sigma_max (80.0)"),
    (EPS + ["parameterisation", "input_scal"], 0.5, "experiments.eps_simple.parameterisation.input_scal", "unknown option"),
    (EPS + ["loss"], {"name": "edm", "sigma_dat": 0.5}, "experiments.eps_simple.loss.sigma_dat", "unknown option 'sigma_dat' (allowed: sigma_data)"),
    (SAMPLER0, {"label": "e", "name": "euler", "options": {"eta": 0.5}, "steps": [10]},
     "experiments.eps_simple.samplers.e.options.eta", "unknown option 'eta' (allowed: none)"),
    (SAMPLER0, {"label": "d", "name": "ddim", "options": {"eta": -1.0}, "steps": [10]},
     "experiments.eps_simple.samplers.d.options.eta", "-1.0 must be at least 0"),
    (SAMPLER0, {"label": "t", "name": "tfree_ddim", "options": {"noise_level_predictor": "predictor"}, "steps": [10]},
     "experiments.eps_simple.samplers.t.options.noise_level_predictor", "'predictor' must name an auxiliary network as 'paper/name'"),
    (SAMPLER0 + ["steps"], {"quick": [50, 2000]}, "experiments.eps_simple.samplers.ddpm_large.steps.quick",
     "2000 steps on a schedule of T = 1000 levels"),
    (SAMPLER0, {"label": "h", "name": "heun", "grid": {"spacing": "edm", "sigma_min": 5.0, "sigma_max": 1.0}, "steps": [10]},
     "experiments.eps_simple.samplers.h.grid", "sigma_min (5.0) must be below sigma_max (1.0)"),
]


@pytest.mark.parametrize("path,value,key,hint", BAD, ids=[f"{c[2].split('.')[-1]}={str(c[1])[:16]}" for c in BAD])
def test_bad_component_value_is_one_line_naming_file_and_key(tmp_path, path, value, key, hint):
    doc = copy.deepcopy(DDPM)
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    d = tmp_path / "replications"
    d.mkdir()
    (d / "ddpm_2020.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_replications(d)
    message = str(err.value)
    assert "\n" not in message and "ddpm_2020.yaml" in message and key in message and hint in message, message


def _plan(scale="smoke", **unet):
    config = copy.deepcopy(CONFIG)
    config["scale"] = scale
    config["scales"][scale]["unet"].update(unet)
    return Plan(load_config(config), {"ddpm_2020": copy.deepcopy(DDPM)})


@pytest.mark.parametrize("unet,hint", [
    ({"groups": 12}, "every width in channels [16, 32] must be divisible by groups (12)"),
    ({"attention_levels": [2]}, "attention_levels [2] must be levels of the UNet: channels [16, 32] has levels 0 to 1"),
])
def test_a_unet_that_cannot_be_built_is_refused_by_the_plan(unet, hint):
    with pytest.raises(ConfigError) as err:
        _plan(**unet)
    assert "\n" not in str(err.value) and "network" in str(err.value) and hint in str(err.value), str(err.value)


def test_a_kid_subset_larger_than_the_samples_is_refused():
    config = copy.deepcopy(CONFIG)
    config["scales"]["smoke"]["fid"]["kid_subset_size"] = 500  # smoke draws 200 samples
    with pytest.raises(ConfigError, match=r"scales.smoke.fid.kid_subset_size: 500 is more than the 200 images"):
        load_config(config)


def test_every_shipped_replication_passes_the_catalog():
    replications = load_replications(ROOT / "replications")
    for scale in ("smoke", "quick"):
        Plan(load_config({**copy.deepcopy(CONFIG), "scale": scale}), replications)

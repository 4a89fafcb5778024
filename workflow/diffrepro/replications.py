"""Replication files (replications/*.yaml): read, validate, expand sweeps into experiments, and check
every component against its declaration (diffrepro.catalog) before any job exists.

Imported by the Snakefile at parse time, so it must stay cheap: no torch, no numpy.
"""

import copy
from pathlib import Path

import jsonschema

from . import catalog
from .config import SCALES, is_per_scale, per_scale
from .schema import ConfigError, explain, load_schema, read_yaml, validate


def _set_path(doc: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        doc = doc.setdefault(key, {})
    doc[last] = value


def expand_sweeps(doc: dict, source: str) -> None:
    """Turn each sweep into concrete experiments (added to doc['experiments']), validated again.

    Every combination of the axes' values is applied to a copy of `base`; an experiment runs at
    a scale when each of its labels is in that scale's `subset` (axes not listed: all labels).
    Each expanded experiment records its `factors` ({axis: value}) for tables and claims.
    """
    experiments = doc.setdefault("experiments", {})
    schema = load_schema("replication.schema.yaml")
    validator = jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/experiment"})
    for sweep_name, sweep in doc.pop("sweeps", {}).items():
        combos = [[]]
        for axis in sweep["axes"]:
            combos = [combo + [(axis, v)] for combo in combos for v in axis["values"]]
        for combo in combos:
            name = "__".join([sweep_name] + [f"{axis['name']}{v['label']}" for axis, v in combo])
            exp = copy.deepcopy(sweep["base"])
            for axis, v in combo:
                _set_path(exp, axis["path"], copy.deepcopy(v["value"]))
            scales = [scale for scale in SCALES
                      if all(v["label"] in sweep.get("subset", {}).get(scale, {}).get(axis["name"], [v["label"]])
                             for axis, v in combo)]
            if not scales:
                continue
            exp["scales"] = [s for s in exp.get("scales", scales) if s in scales]
            error = jsonschema.exceptions.best_match(validator.iter_errors(exp))
            if error is not None:
                raise ConfigError(f"{source}: sweeps.{sweep_name} gives an invalid experiment {name}: {explain(error)}")
            if name in experiments:
                raise ConfigError(f"{source}: sweeps.{sweep_name}: experiment {name} is also defined under experiments")
            exp["factors"] = {axis["name"]: v["value"] if not isinstance(v["value"], dict) else v["label"]
                              for axis, v in combo}
            experiments[name] = exp


def load_replications(directory, config_source="config") -> dict:
    """Every replications/*.yaml, validated; keyed by paper name (which must equal the file stem)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{config_source}: replications: folder {directory} does not exist")
    replications = {}
    for path in sorted(directory.glob("*.yaml")):
        doc = read_yaml(path)
        validate(doc, "replication.schema.yaml", str(path))
        expand_sweeps(doc, str(path))
        if doc["paper"] != path.stem:
            raise ConfigError(f"{path}: paper: {doc['paper']!r} must equal the file name {path.stem!r}")
        labels = [s["label"] for e in doc["experiments"].values() for s in e["samplers"]]
        for name, exp in doc["experiments"].items():
            exp_labels = [s["label"] for s in exp["samplers"]]
            dupes = sorted({label for label in exp_labels if exp_labels.count(label) > 1})
            if dupes:
                raise ConfigError(f"{path}: experiments.{name}.samplers: duplicate label(s) {', '.join(dupes)}")
            curve = exp.get("learning_curve")
            if curve and "model" in exp:
                raise ConfigError(f"{path}: experiments.{name}.learning_curve: this experiment samples "
                                  f"{exp['model']}'s network; put the learning curve on that experiment")
            if curve and curve["sampler"] not in exp_labels:
                raise ConfigError(f"{path}: experiments.{name}.learning_curve.sampler: {curve['sampler']!r} is not "
                                  f"one of this experiment's sampler labels ({', '.join(exp_labels)})")
            _check_components(exp, f"{path}: experiments.{name}")
        axes = {axis for exp in doc["experiments"].values() for axis in exp.get("factors", {})}
        for role, axis in doc.get("factor_figure", {}).items():
            if axis not in axes:
                raise ConfigError(f"{path}: factor_figure.{role}: {axis!r} is not a sweep axis "
                                  f"(axes: {', '.join(sorted(axes)) or 'none, this file has no sweeps'})")
        # a paper's own stages (e.g. swiss_roll, noise_level) write rows under their stage name
        producers = [*doc["experiments"], *doc.get("stages", {})]
        for ref in doc.get("reference", []):
            if ref.get("experiment") and ref["experiment"] not in producers:
                raise ConfigError(f"{path}: reference: experiment {ref['experiment']!r} is not defined "
                                  f"(defined: {', '.join(producers)})")
            if ref.get("sampler") and ref["sampler"] not in labels:
                raise ConfigError(f"{path}: reference: sampler {ref['sampler']!r} is not a sampler label "
                                  f"(labels: {', '.join(labels)})")
        replications[doc["paper"]] = doc
    if not replications:
        raise ConfigError(f"{config_source}: replications: no *.yaml files in {directory}")
    _check_shared_models(replications, directory)
    return replications


def _per_scale_values(value) -> list:
    """[(suffix, value)]: a value given for every scale, or one per scale ({smoke: ..., quick: ...})."""
    if is_per_scale(value):
        return [(f".{scale}", v) for scale, v in value.items()]
    return [("", value)]


def _raise_first(component, given: dict, where: str) -> None:
    for key, problem in component.problems(given):
        raise ConfigError(f"{where}{'.' + key if key else ''}: {problem}")


def _check_components(exp: dict, where: str) -> None:
    """The experiment's schedule, parameterisation, loss, network overrides and sampler options against
    their declarations (diffrepro.catalog), and steps <= T on a discrete schedule's own grid."""
    schedule = exp.get("schedule")
    if schedule is not None:
        options = {k: v for k, v in schedule.items() if k != "name"}
        _raise_first(catalog.SCHEDULES[schedule["name"]], options, f"{where}.schedule")
    for kind, table in (("parameterisation", catalog.PARAMETERISATIONS), ("loss", catalog.LOSSES)):
        for suffix, value in _per_scale_values(exp.get(kind, {})):
            if value:
                _raise_first(table[value["name"]], {k: v for k, v in value.items() if k != "name"},
                             f"{where}.{kind}{suffix}")
    for suffix, value in _per_scale_values(exp.get("network", {})):
        if "class" in value:
            why_not = catalog.own_network_problem(value)
            if why_not:
                raise ConfigError(f"{where}.network{suffix}: {why_not}")
            continue
        for key, given in value.items():  # unknown keys: the schema; rules over the whole UNet: Plan
            why = catalog.NETWORK.options[key].problem(given) if key in catalog.NETWORK.options else None
            if why:
                raise ConfigError(f"{where}.network{suffix}.{key}: {why}")
    discrete_steps = (schedule or {}).get("T", catalog.STEPS.default) \
        if (schedule or {}).get("name") in catalog.DISCRETE_SCHEDULES else None
    for sampler in exp.get("samplers", []):
        at = f"{where}.samplers.{sampler['label']}"
        component, why_not = catalog.sampler_component(sampler["name"])
        if component is None:
            raise ConfigError(f"{at}.name: {why_not}")
        _raise_first(component, sampler.get("options", {}), f"{at}.options")
        grid = sampler.get("grid", {})
        if "sigma_min" in grid and "sigma_max" in grid and not grid["sigma_min"] < grid["sigma_max"]:
            raise ConfigError(f"{at}.grid: sigma_min ({grid['sigma_min']}) must be below sigma_max ({grid['sigma_max']})")
        if discrete_steps is not None and grid.get("spacing") != "edm" and "schedule" not in grid:
            for suffix, steps in _per_scale_values(sampler["steps"]):
                too_many = [s for s in steps if s > discrete_steps]
                if too_many:
                    raise ConfigError(f"{at}.steps{suffix}: {too_many[0]} steps on a schedule of T = {discrete_steps} "
                                      f"levels (at most {discrete_steps})")


def _check_shared_models(replications: dict, directory: Path) -> None:
    """An experiment that samples another's network must name a trained one with its scalings."""
    for paper, doc in replications.items():
        for name, exp in doc["experiments"].items():
            if "model" not in exp:
                continue
            where = f"{directory / (paper + '.yaml')}: experiments.{name}.model"
            src_paper, src_exp = exp["model"].split("/")
            source = replications.get(src_paper, {}).get("experiments", {}).get(src_exp)
            if source is None or "model" in source:
                trained = [f"{p}/{e}" for p, d in replications.items() for e, x in d["experiments"].items()
                           if "model" not in x]
                raise ConfigError(f"{where}: {exp['model']!r} is not a trained experiment (trained: {', '.join(trained)})")
            for scale in SCALES:
                missing = sorted(set(per_scale(exp["input_scalings"], scale)) -
                                 set(per_scale(source["input_scalings"], scale)))
                if missing:
                    raise ConfigError(f"{where}: {exp['model']} is not trained with input scaling(s) "
                                      f"{', '.join(missing)} at scale {scale} (trained: "
                                      f"{', '.join(per_scale(source['input_scalings'], scale))})")
                if scale in exp.get("scales", [scale]) and scale not in source.get("scales", [scale]):
                    raise ConfigError(f"{where}: {exp['model']} is not trained at scale {scale}")



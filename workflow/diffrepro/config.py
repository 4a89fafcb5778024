"""Config and replication files: schema validation with one-line errors, and the plan of jobs.

Imported by the Snakefile at parse time, so it must stay cheap: no torch, no numpy.
"""

import copy
import functools
import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import yaml

from . import catalog, inception_weights
from .datasets import DATASETS
from .datasets import DEFAULT as DEFAULT_DATASET
from .datasets import data_file
from .errors import UserError

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
SCALES = ("smoke", "quick", "paper")
# sampler options whose value names an auxiliary network ('paper/name') a paper's rule file trains
AUX_OPTIONS = ("noise_level_predictor",)
# A scale's `performance:` settings when it leaves them out (diffrepro.performance applies them).
PERFORMANCE_DEFAULTS = {"device": "auto", "bf16": False, "tf32": False, "channels_last": False, "compile": False}


class ConfigError(UserError, ValueError):
    """A config or replication file is invalid; the message names file, key and allowed values."""


@functools.cache  # parsed once per process: every replication file is validated against it (read-only)
def _load_schema(name: str) -> dict:
    return yaml.safe_load((SCHEMAS / name).read_text())


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


# keys that existed once: what a file that still has them should do instead
REMOVED_KEYS = {
    "noise": "'noise' allowances are gone: a claim's verdict now comes from the 95% confidence interval of "
             "its effect (README: Claims); delete the key",
}


def _explain(error) -> str:
    """Turn a jsonschema error into 'key: what is wrong (allowed: ...)'."""
    # oneOf/anyOf errors hide the useful message in their context; take the deepest one.
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    key, schema = _key_path(error), error.schema
    if error.validator == "additionalProperties":
        unexpected = sorted(set(error.instance) - set(schema.get("properties", {})))
        removed = [k for k in unexpected if k in REMOVED_KEYS]
        if removed:
            return f"{key}.{removed[0]}: {REMOVED_KEYS[removed[0]]}"
        allowed = ", ".join(schema.get("properties", {})) or "none"
        return f"{key}: unknown key(s) {', '.join(unexpected)} (allowed: {allowed})"
    if error.validator == "enum":
        return f"{key}: {error.instance!r} is not allowed (allowed: {', '.join(map(str, error.validator_value))})"
    if error.validator == "propertyNames":
        return f"{key}: name {error.instance!r} must match {schema.get('pattern', error.validator_value)}"
    return f"{key}: {error.message}"


def validate(document, schema_name: str, source: str) -> None:
    validator = jsonschema.Draft202012Validator(_load_schema(schema_name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        raise ConfigError(f"{source}: {_explain(error)}")


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
    schema = _load_schema("replication.schema.yaml")
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
            scales = [scale for scale in ("smoke", "quick", "paper")
                      if all(v["label"] in sweep.get("subset", {}).get(scale, {}).get(axis["name"], [v["label"]])
                             for axis, v in combo)]
            if not scales:
                continue
            exp["scales"] = [s for s in exp.get("scales", scales) if s in scales]
            error = jsonschema.exceptions.best_match(validator.iter_errors(exp))
            if error is not None:
                raise ConfigError(f"{source}: sweeps.{sweep_name} gives an invalid experiment {name}: {_explain(error)}")
            if name in experiments:
                raise ConfigError(f"{source}: sweeps.{sweep_name}: experiment {name} is also defined under experiments")
            exp["factors"] = {axis["name"]: v["value"] if not isinstance(v["value"], dict) else v["label"]
                              for axis, v in combo}
            experiments[name] = exp


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loading that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first at line {seen[key] + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path):
    """A YAML file as data; a file that is not UTF-8, not YAML, or repeats a key is one ConfigError line."""
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8, or move "
                          f"files that are not replications out of the folder") from None
    except yaml.MarkedYAMLError as err:
        parts = [f"{text} at line {mark.line + 1}" if mark else text
                 for text, mark in ((err.context, err.context_mark), (err.problem, err.problem_mark)) if text]
        raise ConfigError(f"{path}: not valid YAML ({', '.join(parts)})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None


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


SCALES = ("smoke", "quick", "paper")


def _per_scale_values(value) -> list:
    """[(suffix, value)]: a value given for every scale, or one per scale ({smoke: ..., quick: ...})."""
    if isinstance(value, dict) and value and set(value) <= set(SCALES):
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
            for scale in ("smoke", "quick", "paper"):
                missing = sorted(set(per_scale(exp["input_scalings"], scale)) -
                                 set(per_scale(source["input_scalings"], scale)))
                if missing:
                    raise ConfigError(f"{where}: {exp['model']} is not trained with input scaling(s) "
                                      f"{', '.join(missing)} at scale {scale} (trained: "
                                      f"{', '.join(per_scale(source['input_scalings'], scale))})")
                if scale in exp.get("scales", [scale]) and scale not in source.get("scales", [scale]):
                    raise ConfigError(f"{where}: {exp['model']} is not trained at scale {scale}")


_JSON_TYPES = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
               "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
               "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None}


def _type_errors(error):
    yield error
    for sub in error.context or []:
        yield from _type_errors(sub)


def _read_scalar(text: str):
    """'30' -> 30, '1e-3' -> 0.001 (YAML 1.1 would keep that a string), 'true' -> True, 'null' -> None."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None, "~": None}.get(text.strip().lower(), text)


def _coerce_command_line_strings(config: dict, schema: dict) -> None:
    """Snakemake reads the values inside a nested `--config key={...}` as strings ('30', 'true'):
    where the schema wants a number, boolean or null, read such a string as YAML does."""
    validator = jsonschema.Draft202012Validator(schema)
    for _ in range(10_000):  # each pass fixes at least one value
        fixed = False
        for error in (e for top in validator.iter_errors(config) for e in _type_errors(top)):
            if error.validator != "type" or not isinstance(error.instance, str) or not error.absolute_path:
                continue
            wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
            value = _read_scalar(error.instance)
            if any(_JSON_TYPES.get(t, lambda v: False)(value) for t in wanted):
                *parents, last = error.absolute_path
                target = config
                for key in parents:
                    target = target[key]
                if target[last] == error.instance:
                    target[last], fixed = value, True
        if not fixed:
            return


def load_config(config: dict, source="workflow/config.yaml") -> dict:
    # `--config download=false` arrives as the string 'false'; read such words as YAML does.
    for key, value in config.items():
        if isinstance(value, str) and value.lower() in ("true", "false", "null"):
            config[key] = yaml.safe_load(value.lower())
    _coerce_command_line_strings(config, _load_schema("config.schema.yaml"))
    validate(config, "config.schema.yaml", source)
    for scale, settings in config["scales"].items():
        for where, sampling, fid in [("", settings["sampling"], settings["fid"])] + [
                (f".datasets.{name}", {**settings["sampling"], **d.get("sampling", {})}, {**settings["fid"], **d.get("fid", {})})
                for name, d in settings.get("datasets", {}).items()]:
            limit = min(sampling["n_samples"], fid["n_reference"])
            if fid["kid_subset_size"] > limit:
                raise ConfigError(f"{source}: scales.{scale}{where}.fid.kid_subset_size: {fid['kid_subset_size']} is more than "
                                  f"the {limit} images a KID subset can be drawn from (n_samples {sampling['n_samples']}, "
                                  f"n_reference {fid['n_reference']})")
    for key in ("data_root", "cifar10_root", "inception_weights"):
        if config.get(key) and not Path(config[key]).exists():
            raise ConfigError(f"{source}: {key}: path {config[key]} does not exist (fix the path or set it to null)")
    return config


def config_hash(spec: dict) -> str:
    """A short, stable hash of everything that determines a result."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def describe_training(spec: dict) -> str:
    """A network in messages: paper/experiment/input scaling and its training spec's hash."""
    return f"{spec['paper']}/{spec['experiment']}/{spec['input_scaling']} config {config_hash(spec)}"


def per_scale(value, scale: str) -> list:
    """A YAML list that applies to every scale, or a {scale: list} mapping (absent scale: empty)."""
    return value if isinstance(value, list) else value.get(scale, [])


def at_scale(value, scale: str, default=None):
    """An experiment setting that applies to every scale, or a {scale: value} mapping (absent scale:
    `default`). A mapping is per scale when its keys are scale names, which no setting's keys are."""
    if isinstance(value, dict) and value and set(value) <= set(SCALES):
        return value.get(scale, default)
    return value


LEARNING_CURVE_POINTS = 6


def snapshot_every(steps: int, points: int) -> int:
    """Training steps between the snapshots of a learning curve of `points` (the last: the final network)."""
    return max(1, math.ceil(steps / points))


def steps_for(sampler: dict, scale: str) -> list:
    return per_scale(sampler["steps"], scale)


class Plan:
    """What the DAG builds for one scale: trainings, sample sets, and their resolved specs."""

    def __init__(self, config: dict, replications: dict):
        self.config = config
        self.scale = config["scale"]
        self.scale_cfg = config["scales"][self.scale]
        self.replications = replications
        self.shards = self._shards()
        self.job_threads = self.scale_cfg.get("job_threads", 8)
        self._check_datasets()
        self._check_networks()
        self.inception_weights = self._inception_weights()

    def performance(self) -> dict:
        """The scale's performance settings that differ from the defaults.

        Only those enter the specs: adding a setting, or writing a default out, leaves the spec
        (hence its hash, the rules' params and every existing result) as it was.
        """
        settings = self.scale_cfg.get("performance", {})
        return {key: value for key, value in settings.items() if value != PERFORMANCE_DEFAULTS[key]}

    def _shards(self, sampling=None, where="sampling") -> int:
        """Jobs a sample set is split over (sampling.shards); each draws whole batches."""
        sampling = sampling or self.scale_cfg["sampling"]
        shards = sampling.get("shards", 1)
        batches = -(-sampling["n_samples"] // sampling["batch_size"])
        if shards > batches:
            raise ConfigError(f"scales.{self.scale}.{where}.shards: {shards} shards of {batches} batches "
                              f"({sampling['n_samples']} samples in batches of {sampling['batch_size']}); "
                              f"a shard draws whole batches, so use at most {batches}")
        return shards

    def _check_networks(self) -> None:
        """Each trained network's UNet at this scale (the scale's settings with the experiment's overrides)."""
        for t in self.trainings():
            unet = self.network_settings(t["paper"], t["experiment"])
            if "class" in unet:  # a user's own network: checked when the replication was loaded
                continue
            for _, problem in catalog.NETWORK.problems(unet):
                raise ConfigError(f"{t['paper']}/{t['experiment']} at scale {self.scale}: network (scales.{self.scale}.unet "
                                  f"with the experiment's network overrides): {problem}")

    def datasets_in_use(self) -> set:
        """The data sets the networks sampled at this scale learn."""
        return {self.dataset(r["paper"], r["experiment"]) for r in self.runs()}

    def _check_datasets(self) -> None:
        """Every data set but the default needs its settings (sample count, FID reference) at this scale."""
        configured = self.scale_cfg.get("datasets", {})
        for name in sorted(self.datasets_in_use() - {DEFAULT_DATASET}):
            if name not in configured:
                users = sorted({f"{r['paper']}/{r['experiment']}" for r in self.runs()
                                if self.dataset(r["paper"], r["experiment"]) == name})
                raise ConfigError(f"scales.{self.scale}.datasets.{name}: not configured, but experiments on {name} run "
                                  f"at scale {self.scale} ({', '.join(users)}): add its sampling and fid settings")
            self._shards(configured[name]["sampling"], f"datasets.{name}.sampling")

    def _inception_weights(self):
        """The Inception weights file (a string) when some experiment here is scored with Inception
        features; their absence stops the workflow before any job runs, not after days of training."""
        if not any(DATASETS[name].extractor == "inception" for name in self.datasets_in_use()):
            return None
        found = inception_weights.find(self.config.get(inception_weights.CONFIG_KEY))
        if found is None:
            raise ConfigError(inception_weights.missing_message(self.config.get(inception_weights.CONFIG_KEY)))
        return str(found)

    def dataset(self, paper: str, experiment: str) -> str:
        """The data set of the network an experiment samples (`dataset:`, per scale or for all)."""
        exp = self.experiment(*self.trained_by(paper, experiment))
        return at_scale(exp.get("dataset", DEFAULT_DATASET), self.scale, DEFAULT_DATASET)

    def dataset_settings(self, name: str) -> dict:
        """scales.<scale>.datasets.<name>: sampling and fid settings of a data set other than the default."""
        return self.scale_cfg["datasets"][name]

    def extractor(self, paper: str, experiment: str) -> str:
        """The FID features an experiment's samples are scored with (its data set's)."""
        return DATASETS[self.dataset(paper, experiment)].extractor

    def data_file(self, data_dir: str, w) -> str:
        """The prepared data set a network trains on (the train rule's input)."""
        return data_file(data_dir, self.dataset(w.paper, w.experiment))

    def sampling(self, paper: str, experiment: str) -> dict:
        """The scale's sampling settings, with the data set's n_samples, batch_size and shards."""
        name = self.dataset(paper, experiment)
        own = self.dataset_settings(name)["sampling"] if name != DEFAULT_DATASET else {}
        return {**self.scale_cfg["sampling"], **own}

    def shards_of(self, paper: str, experiment: str) -> int:
        return self.sampling(paper, experiment).get("shards", 1)

    def sharded(self) -> bool:
        """Whether some sample set of this scale is drawn in shards (workflow/rules/sample_shards.smk)."""
        return any(self.shards_of(r["paper"], r["experiment"]) > 1 for r in self.runs())

    def shard_files(self, results: str, w) -> list:
        """The shard files merge_samples joins into one sample set, shard 0 first."""
        n = self.shards_of(w.paper, w.experiment)
        return [f"{results}/sample_shards/{w.paper}/{w.experiment}/{w.scaling}/{w.sampler}/{w.steps}/"
                f"seed{w.seed}/shard{i}of{n}.npz" for i in range(n)]

    def experiment(self, paper: str, experiment: str) -> dict:
        return self.replications[paper]["experiments"][experiment]

    def trained_by(self, paper: str, experiment: str) -> tuple:
        """(paper, experiment) whose network this experiment samples: itself or its `model:`."""
        exp = self.experiment(paper, experiment)
        return tuple(exp["model"].split("/")) if "model" in exp else (paper, experiment)

    def model_path(self, results: str, w) -> str:
        """The network a sample set uses: replicate 0 is the experiment's model, replicate k its seed-k twin."""
        paper, experiment = self.trained_by(w.paper, w.experiment)
        replicate = int(getattr(w, "seed", 0))
        return f"{results}/models/{paper}/{experiment}/{w.scaling}/{f'seed{replicate}/' if replicate else ''}model.pt"

    def model_files(self, results: str) -> list:
        """Every trained network some sample set uses (replicates included), sorted."""
        return sorted({self.model_path(results, SimpleNamespace(**r)) for r in self.sample_runs()})

    def aux_inputs(self, results: str, w) -> dict:
        """Auxiliary networks a sampler uses (e.g. the t-free noise-level predictor), by option name."""
        options = self.sampler(w.paper, w.experiment, w.sampler).get("options", {})
        return {key: f"{results}/aux/{options[key]}.pt" for key in AUX_OPTIONS if key in options}

    def training_spec(self, paper: str, experiment: str, scaling: str, replicate: int = 0) -> dict:
        """Everything that determines a trained network (its hash keys its results)."""
        paper, experiment = self.trained_by(paper, experiment)
        exp, sc, scale = self.experiment(paper, experiment), self.scale_cfg, self.scale
        train = {**sc["train"], **at_scale(exp.get("train", {}), scale, {})}
        train["seed"] += int(replicate)
        if "learning_curve" in exp:  # every replicate keeps them: they share one spec apart from the seed
            train["snapshot_every"] = snapshot_every(train["steps"], exp["learning_curve"].get("points", LEARNING_CURVE_POINTS))
        spec = {
            "paper": paper, "experiment": experiment, "input_scaling": scaling,
            "resolution": exp.get("resolution", sc["resolution"]), "train_limit": sc["train_limit"],
            "schedule": exp["schedule"], "parameterisation": at_scale(exp["parameterisation"], scale),
            "loss": at_scale(exp["loss"], scale), "unet": self.network_settings(paper, experiment),
            "train": train,
        }
        dataset = self.dataset(paper, experiment)
        if dataset != DEFAULT_DATASET:  # absent for Fashion-MNIST: those specs and hashes stay as they were
            spec["dataset"] = dataset
        return copy.deepcopy({**spec, **self._performance_entry()})

    def network_settings(self, paper: str, experiment: str) -> dict:
        """The scale's UNet settings with the experiment's overrides, or the experiment's own network
        ({class, kwargs}) as it gave it."""
        own = at_scale(self.experiment(paper, experiment).get("network", {}), self.scale, {})
        return dict(own) if "class" in own else {**self.scale_cfg["unet"], **own}

    def _performance_entry(self) -> dict:
        performance = self.performance()
        return {"performance": performance} if performance else {}

    def sampler(self, paper: str, experiment: str, label: str) -> dict:
        for sampler in self.experiment(paper, experiment)["samplers"]:
            if sampler["label"] == label:
                return sampler
        raise KeyError(f"{paper}/{experiment} has no sampler {label!r}")

    def sample_spec(self, paper, experiment, scaling, label, steps, seed) -> dict:
        sampler, sampling = self.sampler(paper, experiment, label), self.sampling(paper, experiment)
        return {
            "run": {"paper": paper, "experiment": experiment, "input_scaling": scaling},
            "training": self.training_spec(paper, experiment, scaling, seed),
            "sampler": {"label": label, "name": sampler["name"], "options": sampler.get("options", {}),
                        "grid": sampler.get("grid", {}), "steps": int(steps)},
            "seed": int(seed), "n_samples": sampling["n_samples"],
            "batch_size": sampling["batch_size"], **self._performance_entry(),
        }

    def training_spec_json(self, w) -> str:
        """Snakemake params: the spec as JSON, so a changed configuration reruns the job."""
        spec = self.training_spec(w.paper, w.experiment, w.scaling, int(getattr(w, "seed", 0)))
        return json.dumps(spec, sort_keys=True)

    def sample_spec_json(self, w) -> str:
        return self._sample_spec_json(w.paper, w.experiment, w.scaling, w.sampler, w.steps, w.seed)

    @functools.lru_cache(maxsize=None)  # the shards of a set share its spec: a paper DAG asks ~5 times per set
    def _sample_spec_json(self, *key) -> str:
        return json.dumps(self.sample_spec(*key), sort_keys=True)

    def metric_files(self, results: str) -> list:
        """Every per-sample-set metrics file of this scale, plus the real-data floor per seed.

        A set is scored with its data set's features: the classifier's under metrics/ (rule
        evaluate), Inception's under metrics_inception/ (rule evaluate_inception)."""
        folder = {"fmnist-classifier": "metrics", "inception": "metrics_inception"}
        runs = [f"{results}/{folder[self.extractor(r['paper'], r['experiment'])]}/{r['paper']}/{r['experiment']}/"
                f"{r['scaling']}/{r['sampler']}/{r['steps']}/seed{r['seed']}.csv" for r in self.sample_runs()]
        return runs + [f"{results}/metrics/real_data/seed{s}.csv" for s in self.scale_cfg["sampling"]["seeds"]]

    def network_hashes(self) -> dict:
        """{"paper/experiment/scaling/seed": config hash of the network that sample set uses}: what
        every row of a sample set's metrics must carry (aggregate refuses rows of older configurations)."""
        return {f"{r['paper']}/{r['experiment']}/{r['scaling']}/{r['seed']}":
                config_hash(self.training_spec(r["paper"], r["experiment"], r["scaling"], r["seed"]))
                for r in self.sample_runs()}

    def training_summary(self) -> list:
        """One row per trained network (replicate 0) with the training settings the report's protocol states."""
        rows = []
        for t in self.trainings():
            spec = self.training_spec(t["paper"], t["experiment"], t["scaling"])
            train = spec["train"]
            rows.append({"network": f"{t['paper']}/{t['experiment']}", "steps": train["steps"],
                         "batch_size": train["batch_size"], "lr": train["lr"], "lr_decay": train.get("lr_decay", "cosine"),
                         "ema_halflife_images": train.get("ema_halflife_images", 0),
                         "bf16": spec.get("performance", {}).get("bf16", False)})
        return rows

    def learning_curves(self):
        """(paper, experiment, scaling, sampler label, steps) of every learning curve at this scale."""
        for t in self.trainings():
            curve = self.experiment(t["paper"], t["experiment"]).get("learning_curve")
            if curve:
                sampler = self.sampler(t["paper"], t["experiment"], curve["sampler"])
                yield {**t, "sampler": curve["sampler"], "steps": max(steps_for(sampler, self.scale))}

    def learning_curve_files(self, results: str) -> list:
        return [f"{results}/learning_curves/{c['paper']}/{c['experiment']}/{c['scaling']}/{c['sampler']}/"
                f"{c['steps']}.csv" for c in self.learning_curves()]

    def feature_files(self, results: str) -> list:
        """The kept classifier features of every sample set scored with the classifier (rule evaluate)."""
        return [f"{results}/features/{r['paper']}/{r['experiment']}/{r['scaling']}/{r['sampler']}/{r['steps']}/"
                f"seed{r['seed']}.npz" for r in self.sample_runs()
                if self.extractor(r["paper"], r["experiment"]) == "fmnist-classifier"]

    def runs(self):
        """Every (paper, experiment, scaling) that is sampled."""
        for paper, rep in self.replications.items():
            for name, exp in rep["experiments"].items():
                if self.scale not in exp.get("scales", [self.scale]):
                    continue
                for scaling in per_scale(exp["input_scalings"], self.scale):
                    yield {"paper": paper, "experiment": name, "scaling": scaling}

    def trainings(self):
        """The runs that train a network of their own."""
        return (r for r in self.runs() if "model" not in self.experiment(r["paper"], r["experiment"]))

    def seeds(self, sampler: dict) -> list:
        """A sampler's replicate seeds at this scale: its own `seeds`, else the scale's."""
        return per_scale(sampler.get("seeds", {}), self.scale) or self.scale_cfg["sampling"]["seeds"]

    def sample_runs(self):
        for t in self.runs():
            for sampler in self.experiment(t["paper"], t["experiment"])["samplers"]:
                for steps in steps_for(sampler, self.scale):
                    for seed in self.seeds(sampler):
                        yield {**t, "sampler": sampler["label"], "steps": steps, "seed": seed}

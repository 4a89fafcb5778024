"""The plan of jobs for one scale: which networks train, which sample sets are drawn and scored,
and the resolved spec (hence the hash) of each.

Imported by the Snakefile at parse time, so it must stay cheap: no torch, no numpy.
"""

import copy
import functools
import json
import math
from types import SimpleNamespace

from . import catalog, inception_weights
from .config import PERFORMANCE_DEFAULTS, at_scale, per_scale
from .datasets import DATASETS
from .datasets import DEFAULT as DEFAULT_DATASET
from .datasets import data_file
from .schema import ConfigError
from .spec_hash import config_hash

# sampler options whose value names an auxiliary network ('paper/name') a paper's rule file trains
AUX_OPTIONS = ("noise_level_predictor",)

LEARNING_CURVE_POINTS = 6


def snapshot_every(steps: int, points: int) -> int:
    """Training steps between the snapshots of a learning curve of `points` (the last: the final network)."""
    return max(1, math.ceil(steps / points))


def steps_for(entry: dict, scale: str) -> list:
    """The step counts a sampler entry runs at this scale."""
    return per_scale(entry["steps"], scale)


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
        return [f"{results}/sample_shards/{w.paper}/{w.experiment}/{w.scaling}/{w.label}/{w.steps}/"
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
        options = self.sampler_entry(w.paper, w.experiment, w.label).get("options", {})
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

    def sampler_entry(self, paper: str, experiment: str, label: str) -> dict:
        """The entry of the experiment's `samplers:` with this label (a sampler with its options and grid)."""
        for entry in self.experiment(paper, experiment)["samplers"]:
            if entry["label"] == label:
                return entry
        raise KeyError(f"{paper}/{experiment} has no sampler {label!r}")

    def sample_spec(self, paper, experiment, scaling, label, steps, seed) -> dict:
        entry, sampling = self.sampler_entry(paper, experiment, label), self.sampling(paper, experiment)
        return {
            "run": {"paper": paper, "experiment": experiment, "input_scaling": scaling},
            "training": self.training_spec(paper, experiment, scaling, seed),
            "sampler": {"label": label, "name": entry["name"], "options": entry.get("options", {}),
                        "grid": entry.get("grid", {}), "steps": int(steps)},
            "seed": int(seed), "n_samples": sampling["n_samples"],
            "batch_size": sampling["batch_size"], **self._performance_entry(),
        }

    def training_spec_json(self, w) -> str:
        """Snakemake params: the spec as JSON, so a changed configuration reruns the job."""
        spec = self.training_spec(w.paper, w.experiment, w.scaling, int(getattr(w, "seed", 0)))
        return json.dumps(spec, sort_keys=True)

    def sample_spec_json(self, w) -> str:
        return self._sample_spec_json(w.paper, w.experiment, w.scaling, w.label, w.steps, w.seed)

    @functools.lru_cache(maxsize=None)  # the shards of a set share its spec: a paper DAG asks ~5 times per set
    def _sample_spec_json(self, *key) -> str:
        return json.dumps(self.sample_spec(*key), sort_keys=True)

    def metric_files(self, results: str) -> list:
        """Every per-sample-set metrics file of this scale, plus the real-data floor per seed.

        A set is scored with its data set's features: the classifier's under metrics/ (rule
        evaluate), Inception's under metrics_inception/ (rule evaluate_inception)."""
        folder = {"fmnist-classifier": "metrics", "inception": "metrics_inception"}
        runs = [f"{results}/{folder[self.extractor(r['paper'], r['experiment'])]}/{r['paper']}/{r['experiment']}/"
                f"{r['scaling']}/{r['label']}/{r['steps']}/seed{r['seed']}.csv" for r in self.sample_runs()]
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
                entry = self.sampler_entry(t["paper"], t["experiment"], curve["sampler"])
                yield {**t, "label": curve["sampler"], "steps": max(steps_for(entry, self.scale))}

    def learning_curve_files(self, results: str) -> list:
        return [f"{results}/learning_curves/{c['paper']}/{c['experiment']}/{c['scaling']}/{c['label']}/"
                f"{c['steps']}.csv" for c in self.learning_curves()]

    def feature_files(self, results: str) -> list:
        """The kept classifier features of every sample set scored with the classifier (rule evaluate)."""
        return [f"{results}/features/{r['paper']}/{r['experiment']}/{r['scaling']}/{r['label']}/{r['steps']}/"
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

    def seeds(self, entry: dict) -> list:
        """A sampler entry's replicate seeds at this scale: its own `seeds`, else the scale's."""
        return per_scale(entry.get("seeds", {}), self.scale) or self.scale_cfg["sampling"]["seeds"]

    def sample_runs(self):
        for t in self.runs():
            for entry in self.experiment(t["paper"], t["experiment"])["samplers"]:
                for steps in steps_for(entry, self.scale):
                    for seed in self.seeds(entry):
                        yield {**t, "label": entry["label"], "steps": steps, "seed": seed}

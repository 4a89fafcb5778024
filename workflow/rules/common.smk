# Helpers shared by the rule files: resolved specs as params (so a changed configuration
# reruns what depends on it) and the list of every per-sample-set metrics file.
import json


def spec_json(spec):
    return json.dumps(spec, sort_keys=True)


def training_spec(wildcards):
    return spec_json(PLAN.training_spec(wildcards.paper, wildcards.experiment, wildcards.scaling))


def sample_spec(wildcards):
    return spec_json(PLAN.sample_spec(wildcards.paper, wildcards.experiment, wildcards.scaling,
                                      wildcards.sampler, wildcards.steps, wildcards.seed))


def run_dir(run):
    return f"{run['paper']}/{run['experiment']}/{run['scaling']}/{run['sampler']}/{run['steps']}/seed{run['seed']}"


def all_metric_files():
    runs = [f"{RES}/metrics/{run_dir(r)}.csv" for r in PLAN.sample_runs()]
    floors = [f"{RES}/metrics/real_data/seed{s}.csv" for s in PLAN.scale_cfg["sampling"]["seeds"]]
    return runs + floors

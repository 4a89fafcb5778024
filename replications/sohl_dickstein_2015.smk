# Sohl-Dickstein 2015: the 2-D swiss roll chain (its own stage), and the variational bound in
# bits/dim of the Fashion-MNIST models listed under stages.bound (trained by the core train rule).
from diffrepro.schema import validate as _sd2015_validate

_SD2015_STAGES = PLAN.replications["sohl_dickstein_2015"].get("stages", {})
_SD2015_YAML = f"{config['replications']}/sohl_dickstein_2015.yaml"
try:
    _sd2015_validate(_SD2015_STAGES.get("swiss_roll"), "stages/swiss_roll.schema.yaml", f"{_SD2015_YAML}: stages.swiss_roll")
    _sd2015_validate(_SD2015_STAGES.get("bound"), "stages/bound.schema.yaml", f"{_SD2015_YAML}: stages.bound")
    _SD2015_UNKNOWN = sorted(set(_SD2015_STAGES["bound"]["experiments"])
                             - set(PLAN.replications["sohl_dickstein_2015"]["experiments"]))
    if _SD2015_UNKNOWN:
        raise ConfigError(f"{_SD2015_YAML}: stages.bound.experiments: {', '.join(_SD2015_UNKNOWN)} not defined")
except ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None

# (experiment, scaling) of every bound this scale measures: the listed experiments' own trainings
_SD2015_BOUNDS = [(r["experiment"], r["scaling"]) for r in PLAN.trainings()
                  if r["paper"] == "sohl_dickstein_2015" and r["experiment"] in _SD2015_STAGES["bound"]["experiments"]]

register_plugin(
    "sohl_dickstein_2015",
    metrics=[f"{RES}/metrics/sohl_dickstein_2015/swiss_roll.csv",
             *(f"{RES}/metrics/sohl_dickstein_2015/bound/{e}/{s}.csv" for e, s in _SD2015_BOUNDS)],
    figures=[{"name": "swiss_roll", "input": f"{RES}/toy/sohl_dickstein_2015/swiss_roll_samples.npz",
              "draw": "diffrepro.stages.swiss_roll:figure", "caption": "swiss roll: held-out data and samples"}])


rule sohl_dickstein_2015_swiss_roll:
    output:
        metrics=f"{RES}/metrics/sohl_dickstein_2015/swiss_roll.csv",
        samples=f"{RES}/toy/sohl_dickstein_2015/swiss_roll_samples.npz",
    params:
        settings=json.dumps({"paper": "sohl_dickstein_2015", "experiment": "swiss_roll",
                             **_SD2015_STAGES["swiss_roll"][SCALE]}, sort_keys=True),
    threads: 1  # a 16-unit network on 512 points: a second thread only adds synchronisation
    conda:
        "../envs/environment.yaml"
    log:
        f"{RES}/logs/sohl_dickstein_2015/swiss_roll.log",
    benchmark:
        f"{RES}/benchmarks/sohl_dickstein_2015/swiss_roll.tsv"
    shell:
        "python -m diffrepro.stages.swiss_roll --settings {params.settings:q} --metrics {output.metrics:q} "
        "--samples {output.samples:q} --threads {threads} 2> {log:q}"


rule sohl_dickstein_2015_bound:
    input:
        model=f"{RES}/models/sohl_dickstein_2015/{{experiment}}/{{scaling}}/model.pt",
        data=f"{DATA}/fashion_mnist.npz",
    output:
        f"{RES}/metrics/sohl_dickstein_2015/bound/{{experiment}}/{{scaling}}.csv",
    params:
        settings=json.dumps(_SD2015_STAGES["bound"][SCALE], sort_keys=True),
    threads: 8  # scaled down to --cores locally; set per rule on clusters by the profile
    conda:
        "../envs/environment.yaml"
    log:
        f"{RES}/logs/sohl_dickstein_2015/bound/{{experiment}}/{{scaling}}.log",
    benchmark:
        f"{RES}/benchmarks/sohl_dickstein_2015/bound/{{experiment}}/{{scaling}}.tsv"
    shell:
        "python -m diffrepro.stages.bound --model {input.model:q} --data {input.data:q} "
        "--settings {params.settings:q} --out {output:q} --threads {threads} 2> {log:q}"

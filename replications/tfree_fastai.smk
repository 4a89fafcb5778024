# The t-free sampler's noise-level predictor (fast.ai lesson 22): one per name that a sampler option
# `noise_level_predictor: tfree_fastai/<name>` refers to (in any replication), trained on the input
# scaling of the experiments that use it; its test-set MSE rows join metrics.csv.
from diffrepro.plan import steps_for as _steps_for
from diffrepro.schema import validate as _validate_stage

_TFREE_STAGE = PLAN.replications["tfree_fastai"].get("stages", {}).get("noise_level")
try:
    _validate_stage(_TFREE_STAGE, "stages/noise_level.schema.yaml",
                    f"{config['replications']}/tfree_fastai.yaml: stages.noise_level")
except ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None

# (name, input scaling, resolution) of every sampler at this scale that uses one of our predictors:
# a predictor reads images of one scaling and resolution only
_TFREE_USES = sorted({(s["options"]["noise_level_predictor"].removeprefix("tfree_fastai/"), r["scaling"],
                       PLAN.training_spec(r["paper"], r["experiment"], r["scaling"])["resolution"])
                      for r in PLAN.runs() for s in PLAN.experiment(r["paper"], r["experiment"])["samplers"]
                      if s.get("options", {}).get("noise_level_predictor", "").startswith("tfree_fastai/")
                      and _steps_for(s, SCALE)})
TFREE_PREDICTORS = {name: {"input_scaling": scaling, "resolution": res} for name, scaling, res in _TFREE_USES}
if len(TFREE_PREDICTORS) != len(_TFREE_USES):
    raise WorkflowError(f"invalid configuration: a tfree_fastai noise-level predictor serves one input scaling "
                        f"and resolution, but its (name, scaling, resolution) uses are {_TFREE_USES}")

register_plugin(
    "tfree_fastai",
    metrics=[f"{RES}/metrics/tfree_fastai/{name}.csv" for name in sorted(TFREE_PREDICTORS)],
    figures=[{"name": f"noise_level_predictions__{name}", "input": f"{RES}/aux/tfree_fastai/{name}_predictions.csv",
              "draw": "diffrepro.stages.noise_level:figure",
              "caption": f"t-free noise-level predictor {name}: predicted vs true ᾱ on test images"}
             for name in sorted(TFREE_PREDICTORS)])


rule tfree_fastai_noise_level:
    input:
        data=f"{DATA}/fashion_mnist.npz",
    output:
        model=f"{RES}/aux/tfree_fastai/{{name}}.pt",
        losses=f"{RES}/aux/tfree_fastai/{{name}}_loss.csv",
        metrics=f"{RES}/metrics/tfree_fastai/{{name}}.csv",
        predictions=f"{RES}/aux/tfree_fastai/{{name}}_predictions.csv",
    wildcard_constraints:
        name="|".join(sorted(TFREE_PREDICTORS)) or "(?!)",
    params:
        # everything that determines the predictor, as JSON: a changed setting reruns the job
        spec=lambda w: json.dumps({"paper": "tfree_fastai", "name": w.name, **TFREE_PREDICTORS[w.name],
                                   "train_limit": PLAN.scale_cfg["train_limit"], **_TFREE_STAGE[SCALE]},
                                  sort_keys=True),
        checkpoint=lambda w: f"{RES}/checkpoints/tfree_fastai/{w.name}.ckpt",
    threads: 8  # scaled down to --cores locally; set per rule on clusters by the profile
    conda:
        "../envs/environment.yaml"
    log:
        f"{RES}/logs/tfree_fastai/{{name}}.log",
    benchmark:
        f"{RES}/benchmarks/tfree_fastai/{{name}}.tsv"
    shell:
        "python -m diffrepro.stages.noise_level --spec {params.spec:q} --data {input.data:q} "
        "--out {output.model:q} --metrics {output.metrics:q} --losses {output.losses:q} --predictions {output.predictions:q} "
        "--checkpoint {params.checkpoint:q} --threads {threads} 2> {log:q}"

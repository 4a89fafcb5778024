# Inception-v3 FID: sample sets of experiments on a data set scored with Inception features
# (CIFAR-10, diffrepro.datasets; paper scale) get their FID/KID rows from evaluate_inception, by
# torch-fidelity and by clean-fid from one weights file, against the data set's training split
# (inception_reference). PLAN.inception_weights is None when no experiment of this scale needs
# them, and the Plan refuses a scale that needs them when the file is missing.
from diffrepro.datasets import DATASETS, data_file

if PLAN.inception_weights:
    INCEPTION_DATASETS = sorted(d for d in PLAN.datasets_in_use() if DATASETS[d].extractor == "inception")

    rule inception_reference:
        input:
            data=data_file(DATA, "{dataset}"),
        output:
            f"{RES}/reference/{{dataset}}_train_inception.npz",
        wildcard_constraints:
            dataset="|".join(INCEPTION_DATASETS),
        params:
            weights=PLAN.inception_weights,
            n=lambda w: PLAN.dataset_settings(w.dataset)["fid"]["n_reference"],
        threads: 8  # scaled down to --cores locally; set per rule on clusters by the profile
        resources:
            gpu=1,
        conda:
            "../../envs/environment.yaml"
        log:
            f"{RES}/logs/inception_reference/{{dataset}}.log",
        shell:
            "python -m diffrepro.stages.inception_reference --data {input.data:q} --weights {params.weights:q} "
            "--n {params.n} --out {output:q} --threads {threads} 2> {log:q}"

    rule evaluate_inception:
        input:
            samples=f"{RES}/samples/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.npz",
            reference=lambda w: f"{RES}/reference/{PLAN.dataset(w.paper, w.experiment)}_train_inception.npz",
        output:
            metrics=f"{RES}/metrics_inception/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.csv",
            features=f"{RES}/features_inception/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.npz",
        params:
            fid=lambda w: json.dumps(PLAN.dataset_settings(PLAN.dataset(w.paper, w.experiment))["fid"], sort_keys=True),
            weights=PLAN.inception_weights,
        threads: 4  # feature extraction runs on the GPU; the CPU threads resize for clean-fid
        resources:
            gpu=1,
        conda:
            "../../envs/environment.yaml"
        log:
            f"{RES}/logs/evaluate_inception/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.log",
        shell:
            "python -m diffrepro.stages.evaluate_inception --samples {input.samples:q} --weights {params.weights:q} "
            "--reference {input.reference:q} --fid {params.fid:q} --out {output.metrics:q} --features {output.features:q} "
            "--threads {threads} 2> {log:q}"

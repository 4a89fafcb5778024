rule train:
    input:
        data=lambda w: PLAN.data_file(DATA, w),  # the experiment's `dataset:` (default fashion_mnist)
    output:
        model=f"{RES}/models/{{paper}}/{{experiment}}/{{scaling}}/model.pt",
        losses=f"{RES}/models/{{paper}}/{{experiment}}/{{scaling}}/loss.csv",
    params:
        spec=PLAN.training_spec_json,
        checkpoint=lambda w: f"{RES}/checkpoints/{w.paper}/{w.experiment}/{w.scaling}.ckpt",
    threads: PLAN.job_threads  # the scale's `job_threads`, capped at --cores; set per rule on clusters by the profile
    resources:
        gpu=1,
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/train/{{paper}}/{{experiment}}/{{scaling}}.log",
    benchmark:
        f"{RES}/benchmarks/train/{{paper}}/{{experiment}}/{{scaling}}.tsv"
    shell:
        "python -m diffrepro.stages.train --spec {params.spec:q} --data {input.data:q} "
        "--out {output.model:q} --losses {output.losses:q} --checkpoint {params.checkpoint:q} "
        "--threads {threads} 2> {log:q}"


# Replicate k of a network (a sampler's `seeds:`): the same training with the train seed shifted by k.
use rule train as train_replicate with:
    output:
        model=f"{RES}/models/{{paper}}/{{experiment}}/{{scaling}}/seed{{seed}}/model.pt",
        losses=f"{RES}/models/{{paper}}/{{experiment}}/{{scaling}}/seed{{seed}}/loss.csv",
    params:
        spec=PLAN.training_spec_json,
        checkpoint=lambda w: f"{RES}/checkpoints/{w.paper}/{w.experiment}/{w.scaling}/seed{w.seed}.ckpt",
    log:
        f"{RES}/logs/train/{{paper}}/{{experiment}}/{{scaling}}/seed{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/train/{{paper}}/{{experiment}}/{{scaling}}/seed{{seed}}.tsv"

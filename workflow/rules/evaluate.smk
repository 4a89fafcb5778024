rule train_classifier:
    input:
        data=f"{DATA}/fashion_mnist.npz",
    output:
        model=f"{RES}/classifier/classifier.pt",
        metrics=f"{RES}/classifier/metrics.json",
    params:
        cfg=json.dumps(PLAN.scale_cfg["classifier"], sort_keys=True),
    threads: 8  # scaled down to --cores locally; set per rule on clusters by the profile
    # first: it needs every core at once, so behind a queue of one-core jobs it waited out all
    # trainings of a quick run (measured: a core idle for 8 minutes, every evaluation held back)
    priority: 50
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/train_classifier.log",
    benchmark:
        f"{RES}/benchmarks/train_classifier.tsv"
    shell:
        "python -m diffrepro.stages.train_classifier --cfg {params.cfg:q} --data {input.data:q} "
        "--out {output.model:q} --metrics {output.metrics:q} --threads {threads} 2> {log:q}"


rule reference_features:
    input:
        data=f"{DATA}/fashion_mnist.npz",
        classifier=f"{RES}/classifier/classifier.pt",
    output:
        f"{RES}/reference/fashion_mnist_test.npz",
    params:
        resolution=PLAN.scale_cfg["resolution"],
        n_reference=PLAN.scale_cfg["fid"]["n_reference"],
    threads: 8  # scaled down to --cores locally; set per rule on clusters by the profile
    priority: 50  # as the classifier's
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/reference_features.log",
    shell:
        "python -m diffrepro.stages.reference --data {input.data:q} --classifier {input.classifier:q} "
        "--resolution {params.resolution} --n {params.n_reference} --out {output:q} --threads {threads} 2> {log:q}"


rule real_data_floor:
    input:
        data=f"{DATA}/fashion_mnist.npz",
        classifier=f"{RES}/classifier/classifier.pt",
        reference=f"{RES}/reference/fashion_mnist_test.npz",
    output:
        f"{RES}/metrics/real_data/seed{{seed}}.csv",
    params:
        fid=json.dumps(PLAN.scale_cfg["fid"], sort_keys=True),
        resolution=PLAN.scale_cfg["resolution"],
        n=PLAN.scale_cfg["sampling"]["n_samples"],
    threads: 1  # scoring is mostly single-threaded work: two jobs at a time use 2 cores better
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/real_data_floor/seed{{seed}}.log",
    shell:
        "python -m diffrepro.stages.evaluate --real-data {input.data:q} --n {params.n} --seed {wildcards.seed} "
        "--resolution {params.resolution} --classifier {input.classifier:q} "
        "--reference {input.reference:q} --fid {params.fid:q} --out {output:q} --threads {threads} 2> {log:q}"


rule evaluate:
    input:
        samples=f"{RES}/samples/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.npz",
        classifier=f"{RES}/classifier/classifier.pt",
        reference=f"{RES}/reference/fashion_mnist_test.npz",
    output:
        metrics=f"{RES}/metrics/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.csv",
        # the set's classifier features, which the claims resample for their intervals
        features=f"{RES}/features/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.npz",
    params:
        fid=json.dumps(PLAN.scale_cfg["fid"], sort_keys=True),
        resolution=PLAN.scale_cfg["resolution"],
    threads: 1  # scoring is mostly single-threaded work: two jobs at a time use 2 cores better
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/evaluate/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/evaluate/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.tsv"
    shell:
        "python -m diffrepro.stages.evaluate --samples {input.samples:q} --classifier {input.classifier:q} "
        "--reference {input.reference:q} --resolution {params.resolution} --fid {params.fid:q} "
        "--out {output.metrics:q} --features {output.features:q} --threads {threads} 2> {log:q}"


# FID against training images seen, from the EMA snapshots an experiment's `learning_curve:` keeps
rule learning_curve:
    input:
        model=lambda w: PLAN.model_path(RES, w),
        classifier=f"{RES}/classifier/classifier.pt",
        reference=f"{RES}/reference/fashion_mnist_test.npz",
    output:
        f"{RES}/learning_curves/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}.csv",
    params:
        spec=lambda w: json.dumps(PLAN.sample_spec(w.paper, w.experiment, w.scaling, w.label, w.steps, 0), sort_keys=True),
        fid=json.dumps(PLAN.scale_cfg["fid"], sort_keys=True),
        resolution=PLAN.scale_cfg["resolution"],
    threads: 1
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/learning_curves/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}.log",
    benchmark:
        f"{RES}/benchmarks/learning_curves/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}.tsv"
    shell:
        "python -m diffrepro.stages.learning_curve --model {input.model:q} --spec {params.spec:q} "
        "--classifier {input.classifier:q} --reference {input.reference:q} --fid {params.fid:q} "
        "--resolution {params.resolution} --out {output:q} --threads {threads} 2> {log:q}"

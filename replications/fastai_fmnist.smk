# The course's retracted Karras FIDs, reproduced on purpose: samples and reference both misread
# as [-1, 1] when they were [-0.5, 0.5] (fast.ai course lesson 23; docs/papers.md §0). The rows are
# labelled *_range_bug.
_RANGE_BUG = PLAN.replications["fastai_fmnist"]["stages"]["range_bug"]
_RANGE_BUG_SET = (f"fastai_fmnist/karras/symmetric/{_RANGE_BUG['sampler']}/{_RANGE_BUG['steps'][SCALE]}/"
                  f"seed{PLAN.scale_cfg['sampling']['seeds'][0]}")


rule range_bug_reference:
    input:
        data=f"{DATA}/fashion_mnist.npz",
        classifier=f"{RES}/classifier/classifier.pt",
    output:
        f"{RES}/reference/fashion_mnist_test_range_bug.npz",
    params:
        resolution=PLAN.scale_cfg["resolution"],
        n_reference=PLAN.scale_cfg["fid"]["n_reference"],
    threads: 8
    conda:
        "../envs/environment.yaml"
    log:
        f"{RES}/logs/fastai_fmnist/range_bug_reference.log",
    shell:
        "python -m diffrepro.stages.reference --data {input.data:q} --classifier {input.classifier:q} "
        "--resolution {params.resolution} --n {params.n_reference} --misread centered:symmetric "
        "--out {output:q} --threads {threads} 2> {log:q}"


rule range_bug_evaluate:
    input:
        samples=f"{RES}/samples/{_RANGE_BUG_SET}.npz",
        classifier=f"{RES}/classifier/classifier.pt",
        reference=f"{RES}/reference/fashion_mnist_test_range_bug.npz",
    output:
        f"{RES}/metrics/fastai_fmnist/range_bug.csv",
    params:
        fid=json.dumps(PLAN.scale_cfg["fid"], sort_keys=True),
        resolution=PLAN.scale_cfg["resolution"],
    threads: 1
    conda:
        "../envs/environment.yaml"
    log:
        f"{RES}/logs/fastai_fmnist/range_bug_evaluate.log",
    shell:
        "python -m diffrepro.stages.evaluate --samples {input.samples:q} --classifier {input.classifier:q} "
        "--reference {input.reference:q} --resolution {params.resolution} --fid {params.fid:q} "
        "--misread centered:symmetric --out {output:q} --threads {threads} 2> {log:q}"


register_plugin("fastai_fmnist", metrics=[f"{RES}/metrics/fastai_fmnist/range_bug.csv"])

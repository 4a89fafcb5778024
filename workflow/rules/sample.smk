rule sample:
    input:
        unpack(lambda w: {"model": PLAN.model_path(RES, w), **PLAN.aux_inputs(RES, w)}),
    output:
        f"{RES}/samples/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.npz",
    params:
        spec=PLAN.sample_spec_json,
        aux=lambda w, input: " ".join(f"--aux {shlex.quote(f'{k}={v}')}" for k, v in input.items() if k != "model"),
    threads: PLAN.job_threads  # the scale's `job_threads`, capped at --cores; set per rule on clusters by the profile
    resources:
        gpu=1,
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/sample/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/sample/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.tsv"
    shell:
        "python -m diffrepro.stages.sample --spec {params.spec:q} --model {input.model:q} "
        "{params.aux} --out {output:q} --threads {threads} 2> {log:q}"

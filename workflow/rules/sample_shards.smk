# Sharded sampling (scale option sampling.shards > 1): each sample set is drawn by `shards` jobs
# of whole batches (sample_shard) and joined by merge_samples into the file `sample` would write,
# image for image. With shards = 1 these rules do not exist and `sample` draws every set.
SHARDS = PLAN.shards

if SHARDS > 1:

    ruleorder: merge_samples > sample

    rule sample_shard:
        input:
            unpack(lambda w: {"model": PLAN.model_path(RES, w), **PLAN.aux_inputs(RES, w)}),
        output:
            f"{RES}/sample_shards/{{paper}}/{{experiment}}/{{scaling}}/{{sampler}}/{{steps}}/seed{{seed}}/"
            f"shard{{shard}}of{SHARDS}.npz",
        wildcard_constraints:
            shard=r"\d+",
        params:
            spec=PLAN.sample_spec_json,  # the same spec as `sample`: shards are pieces of that set
            aux=lambda w, input: " ".join(f"--aux {k}={v}" for k, v in input.items() if k != "model"),
            shards=SHARDS,
        threads: 8  # scaled down to --cores locally; set per rule on clusters by the profile
        resources:
            gpu=1,
        conda:
            "../../envs/environment.yaml"
        log:
            f"{RES}/logs/sample_shard/{{paper}}/{{experiment}}/{{scaling}}/{{sampler}}/{{steps}}/seed{{seed}}/"
            f"shard{{shard}}of{SHARDS}.log",
        benchmark:
            f"{RES}/benchmarks/sample_shard/{{paper}}/{{experiment}}/{{scaling}}/{{sampler}}/{{steps}}/seed{{seed}}/"
            f"shard{{shard}}of{SHARDS}.tsv"
        shell:
            "python -m diffrepro.stages.sample --spec {params.spec:q} --model {input.model} "
            "{params.aux} --shard {wildcards.shard} --shards {params.shards} --out {output} "
            "--threads {threads} 2> {log}"

    rule merge_samples:
        input:
            [f"{RES}/sample_shards/{{paper}}/{{experiment}}/{{scaling}}/{{sampler}}/{{steps}}/seed{{seed}}/"
             f"shard{i}of{SHARDS}.npz" for i in range(SHARDS)],
        output:
            f"{RES}/samples/{{paper}}/{{experiment}}/{{scaling}}/{{sampler}}/{{steps}}/seed{{seed}}.npz",
        threads: 1
        conda:
            "../../envs/environment.yaml"
        log:
            f"{RES}/logs/merge_samples/{{paper}}/{{experiment}}/{{scaling}}/{{sampler}}/{{steps}}/seed{{seed}}.log",
        shell:
            "python -m diffrepro.stages.merge_samples --out {output} {input} 2> {log}"

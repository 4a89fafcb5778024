# Sharded sampling (sampling.shards > 1, of a scale or of a data set: scales.<scale>.datasets.<name>):
# each such sample set is drawn by `shards` jobs of whole batches (sample_shard) and joined by
# merge_samples into the file `sample` would write, image for image. Without sharded sets these
# rules do not exist and `sample` draws every set.
if PLAN.sharded():

    ruleorder: merge_samples > sample

    rule sample_shard:
        input:
            unpack(lambda w: {"model": PLAN.model_path(RES, w), **PLAN.aux_inputs(RES, w)}),
        output:
            # temp: merge_samples writes the same images again; a 50k CIFAR-10 set would be stored twice
            temp(f"{RES}/sample_shards/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}/"
                 f"shard{{shard}}of{{shards}}.npz"),
        wildcard_constraints:
            shard=r"\d+",
            shards=r"[2-9]|[1-9]\d+",  # a set drawn whole is `sample`'s (see merge_samples)
        params:
            spec=PLAN.sample_spec_json,  # the same spec as `sample`: shards are pieces of that set
            aux=lambda w, input: " ".join(f"--aux {shlex.quote(f'{k}={v}')}" for k, v in input.items() if k != "model"),
        threads: PLAN.job_threads  # the scale's `job_threads`, capped at --cores; set per rule on clusters by the profile
        resources:
            gpu=1,
        conda:
            "../../envs/environment.yaml"
        log:
            f"{RES}/logs/sample_shard/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}/"
            f"shard{{shard}}of{{shards}}.log",
        benchmark:
            f"{RES}/benchmarks/sample_shard/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}/"
            f"shard{{shard}}of{{shards}}.tsv"
        shell:
            "python -m diffrepro.stages.sample --spec {params.spec:q} --model {input.model:q} "
            "{params.aux} --shard {wildcards.shard} --shards {wildcards.shards} --out {output:q} "
            "--threads {threads} 2> {log:q}"

    rule merge_samples:
        # A set drawn whole (its data set's or the scale's shards: 1) would need shard0of1, which
        # sample_shard does not make; Snakemake then gives the set to `sample`.
        input:
            lambda w: PLAN.shard_files(RES, w),
        output:
            f"{RES}/samples/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.npz",
        threads: 1
        conda:
            "../../envs/environment.yaml"
        log:
            f"{RES}/logs/merge_samples/{{paper}}/{{experiment}}/{{scaling}}/{{label}}/{{steps}}/seed{{seed}}.log",
        shell:
            "python -m diffrepro.stages.merge_samples --out {output:q} {input:q} 2> {log:q}"

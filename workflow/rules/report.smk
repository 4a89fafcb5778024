rule aggregate_metrics:
    input:
        PLAN.metric_files(RES) + EXTRA_METRICS,
    output:
        f"{RES}/metrics.csv",
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/aggregate_metrics.log",
    shell:
        "python -m diffrepro.stages.aggregate --out {output} {input} 2> {log}"


rule report:
    input:
        metrics=f"{RES}/metrics.csv",
        classifier=f"{RES}/classifier/metrics.json",
        claims=f"{RES}/claims.csv",
    output:
        readme=f"{REPORT}/README.md",
        table=report(f"{REPORT}/metrics_table.csv", category="Tables", caption="../report/metrics_table.rst",
                     labels={"table": "FID/KID per sampler and step count"}),
        plot=report(f"{REPORT}/fid_vs_steps.png", category="Figures", caption="../report/fid_vs_steps.rst",
                    labels={"figure": "FID vs sampling steps"}),
    params:
        replications=config["replications"],
        scale=SCALE,
        inception=config.get("inception_weights") or "",
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/report.log",
    shell:
        "python -m diffrepro.stages.report --metrics {input.metrics} --classifier {input.classifier} --claims {input.claims} "
        "--replications {params.replications} --scale {params.scale} --inception-weights={params.inception:q} --out-dir $(dirname {output.readme}) 2> {log}"

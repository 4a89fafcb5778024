rule aggregate_metrics:
    input:
        PLAN.metric_files(RES) + PLUGINS.metrics(),
    output:
        f"{RES}/metrics.csv",
    params:
        # rows of a sample set scored under an older configuration (e.g. kept by --rerun-triggers mtime)
        # are refused: each network's current config hash
        expected=lambda w: json.dumps(PLAN.network_hashes(), sort_keys=True, separators=(",", ":")),
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/aggregate_metrics.log",
    shell:
        "python -m diffrepro.stages.aggregate --expected {params.expected:q} --out {output:q} {input:q} 2> {log:q}"


rule report:
    input:
        metrics=f"{RES}/metrics.csv",
        classifier=f"{RES}/classifier/metrics.json",
        claims=f"{RES}/claims.csv",
        losses=[path.removesuffix("model.pt") + "loss.csv" for path in PLAN.model_files(RES)],
        learning_curves=PLAN.learning_curve_files(RES),
        plugin_figures=[f["input"] for f in PLUGINS.figures()],
    output:
        readme=f"{REPORT}/README.md",
        # the HTML report files everything by paper: a paper's table is <paper>.csv, the others span papers
        tables=report(directory(f"{REPORT}/tables"), patterns=["{name}.csv"], subcategory="tables",
                      category=lambda w: w.name if w.name in PLAN.replications else "across papers",
                      caption="../report/table.rst", labels=lambda w: {"table": w.name}),
        # figures are named <paper>__<what>.png; a paper name never holds "__" (the pattern must not
        # take the figure's own "__"-separated parts into the paper)
        figures=report(directory(f"{REPORT}/figures"), patterns=["{paper,[a-z0-9]+(?:_[a-z0-9]+)*}__{figure}.png"],
                       category=lambda w: "across papers" if w.paper == "all" else w.paper, subcategory="figures",
                       caption="../report/figure.rst", labels=lambda w: {"figure": w.figure.replace("__", " ")}),
    params:
        replications=config["replications"],
        scale=SCALE,
        inception=config.get("inception_weights") or "",
        command=f"snakemake --cores all --config scale={SCALE}",
        training=json.dumps(PLAN.training_summary(), sort_keys=True),
        figures=json.dumps(PLUGINS.figures(), sort_keys=True),
        expected=lambda w: json.dumps(PLAN.network_hashes(), sort_keys=True, separators=(",", ":")),
        out_dir=lambda w, output: str(Path(output.readme).parent),
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/report.log",
    shell:
        "python -m diffrepro.stages.report --metrics {input.metrics:q} --classifier {input.classifier:q} --claims {input.claims:q} "
        "--losses {input.losses:q} --learning-curves {input.learning_curves:q} --plugin-figures {params.figures:q} "
        "--replications {params.replications:q} --scale {params.scale:q} --inception-weights={params.inception:q} "
        "--command {params.command:q} --training {params.training:q} --expected {params.expected:q} --out-dir {params.out_dir:q} 2> {log:q}"

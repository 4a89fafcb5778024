# Each paper's claims (replications/*.yaml `claims:`) checked on the aggregated metrics.
from diffrepro.claims import check_claims

try:  # a claim naming an undefined experiment, sampler or column fails before any job runs
    check_claims(PLAN.replications, config["replications"])
except ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None


rule claims:
    input:
        metrics=f"{RES}/metrics.csv",
        reference=f"{RES}/reference/fashion_mnist_test.npz",
        features=PLAN.feature_files(RES),
        # local(): the YAMLs ship with the workflow, not on a cluster's storage volume
        replications=[local(str(p)) for p in sorted(Path(config["replications"]).glob("*.yaml"))],
    output:
        f"{RES}/claims.csv",
    params:
        replications=lambda w, input: str(Path(input.replications[0]).parent),
        draws=PLAN.scale_cfg["fid"].get("bootstrap_draws", 1000),
        expected=lambda w: json.dumps(PLAN.network_hashes(), sort_keys=True, separators=(",", ":")),
    conda:
        "../../envs/environment.yaml"
    log:
        f"{RES}/logs/claims.log",
    shell:
        "python -m diffrepro.stages.claims --metrics {input.metrics:q} --replications {params.replications:q} "
        "--reference {input.reference:q} --draws {params.draws} --expected {params.expected:q} --out {output:q} 2> {log:q}"

# diffrepro: one DAG trains, samples and scores every configuration of the covered papers.
# Kept thin and cheap to parse (no torch import): every cluster job re-reads it.
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from diffrepro.config import load_config  # noqa: E402
from diffrepro.plan import Plan  # noqa: E402
from diffrepro.replications import load_replications  # noqa: E402
from diffrepro.schema import ConfigError  # noqa: E402
from diffrepro.leftovers import remove_empty_folders  # noqa: E402
from diffrepro.plugins import PluginRegistry  # noqa: E402
from snakemake.settings.types import DeploymentMethod  # noqa: E402


configfile: "workflow/config.yaml"


# a replication may name its own sampler as 'module:function' with the module beside its YAML
_REPLICATIONS_DIR = str(Path(config.get("replications", "replications")).resolve())
sys.path.insert(0, _REPLICATIONS_DIR)

try:
    load_config(config, "config (workflow/config.yaml + --config/--configfile overrides)")
    PLAN = Plan(config, load_replications(config["replications"]))
except ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None

# Rules run `python -m diffrepro.stages.*`. Without --use-conda that `python` is the interpreter running
# Snakemake (so `.venv/bin/snakemake` works from a shell whose venv is not activated); with it, the
# environment's own. PYTHONPATH makes the package importable even without `pip install -e .`.
_USES_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
_PATH = "" if _USES_CONDA else f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
_PYTHONPATH = f"{Path(workflow.basedir) / 'workflow'}:{_REPLICATIONS_DIR}"
shell.prefix(_PATH + f"export PYTHONPATH={shlex.quote(_PYTHONPATH)}:$PYTHONPATH; ")

SCALE = config["scale"]
DATA = f"{config['results']}/data"
RES = f"{config['results']}/{SCALE}"
REPORT = f"{config['reports']}/{SCALE}"


wildcard_constraints:
    paper=r"[a-z0-9_]+",
    experiment=r"[a-z0-9_]+",
    scaling=r"[a-z0-9_]+",
    label=r"[a-z0-9_]+",
    steps=r"\d+",
    seed=r"\d+",


# what a paper's own rule file adds (metrics files, report figures): register_plugin(paper, ...)
PLUGINS = PluginRegistry()
register_plugin = PLUGINS.register


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/sample_shards.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/inception.smk"


for rule_file in sorted(Path(config["replications"]).glob("*.smk")):

    include: str(rule_file.resolve())

include: "workflow/rules/report.smk"
include: "workflow/rules/claims.smk"


# Tables, claims and the report: cheap jobs that run where Snakemake runs, never queued on a cluster
localrules:
    all,
    aggregate_metrics,
    claims,
    report,


rule all:
    input:
        f"{RES}/metrics.csv",
        f"{REPORT}/README.md",
        f"{RES}/claims.csv",


onsuccess:
    # finished trainings delete their checkpoints and merged sets their shards; their folders stay empty
    for leftover in ("checkpoints", "sample_shards"):
        remove_empty_folders(f"{RES}/{leftover}", itself=True)

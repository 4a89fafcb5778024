"""Stage: evaluate every paper's claims (replications/*.yaml `claims:`) on metrics.csv into claims.csv:
each claim's effect, its 95% bootstrap interval from the sets' kept features, and its verdict."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..claims import FEATURE_FOLDERS, FeatureSource, evaluate_claims, check_claims
from ..replications import load_replications
from ..intervals import Reference
from ..io import atomic_path
from ..metrics_table import check_matches_plan
from . import run_stage


def feature_sources(results: Path, reference) -> dict:
    """{extractor: FeatureSource}: the classifier's features under <results>/features against the
    reference file's mu and sigma."""
    with np.load(reference) as f:
        ref = Reference.of(f["mu"], f["sigma"])
    return {name: FeatureSource(results / folder, ref) for name, folder in FEATURE_FOLDERS.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--metrics", required=True, help="results/<scale>/metrics.csv")
    p.add_argument("--replications", required=True, help="folder of replication YAML files")
    p.add_argument("--reference", required=True, help="the classifier's reference features (reference stage)")
    p.add_argument("--draws", type=int, default=1000, help="bootstrap draws per claim")
    p.add_argument("--out", required=True, help="claims.csv to write")
    p.add_argument("--expected", default="{}",
                   help='JSON {"paper/experiment/scaling/seed": current config hash}: metrics.csv must be that plan\'s')
    args = p.parse_args(argv)
    replications = load_replications(args.replications)
    check_claims(replications, args.replications)
    sources = feature_sources(Path(args.metrics).parent, args.reference)
    metrics = pd.read_csv(args.metrics)
    check_matches_plan(metrics, json.loads(args.expected), args.metrics)
    table = evaluate_claims(metrics, replications, sources, args.draws)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False)
    counts = table["verdict"].value_counts()
    print(f"{len(table)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()), file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)

"""Stage: evaluate every paper's claims (replications/*.yaml `claims:`) on metrics.csv into claims.csv."""

import argparse
import sys

import pandas as pd

from ..claims import NOT_EVALUATED, check_claims, evaluate_claims
from ..config import load_replications
from ..io import atomic_path
from . import run_stage


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--metrics", required=True, help="results/<scale>/metrics.csv")
    p.add_argument("--replications", required=True, help="folder of replication YAML files")
    p.add_argument("--out", required=True, help="claims.csv to write")
    args = p.parse_args(argv)
    replications = load_replications(args.replications)
    check_claims(replications, args.replications)
    table = evaluate_claims(pd.read_csv(args.metrics), replications)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False)
    counts = table["holds"].value_counts()
    print(f"{len(table)} claims: {counts.get('true', 0)} hold, {counts.get('false', 0)} do not, "
          f"{counts.get(NOT_EVALUATED, 0)} {NOT_EVALUATED}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)

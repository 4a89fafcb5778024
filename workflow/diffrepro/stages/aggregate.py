"""Stage: concatenate per-sample-set metric files into results/<scale>/metrics.csv."""

import argparse
import json

import pandas as pd

from ..io import atomic_path
from ..metrics_table import COLUMNS, StaleResults, check_single_config
from . import run_stage

KEY = ["paper", "experiment", "input_scaling", "seed"]


def check_current(path, rows: pd.DataFrame, expected: dict) -> None:
    """Every row of a sample set's network must carry that network's current config hash."""
    if not {*KEY, "config_hash"} <= set(rows.columns):
        return
    for values, hashes in rows.groupby(KEY)["config_hash"]:
        key = "/".join(map(str, values))
        wanted = expected.get(key)
        stale = sorted(set(hashes.astype(str)) - {wanted}) if wanted is not None else []
        if stale:
            raise StaleResults(f"{path}: rows of {key} come from configuration {', '.join(stale)}, the current one is "
                               f"{wanted}; delete the file (or rerun with --forcerun) so it is scored again")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--expected", default="{}",
                   help='JSON {"paper/experiment/scaling/seed": current config hash of that network}')
    p.add_argument("inputs", nargs="+")
    args = p.parse_args(argv)
    expected = json.loads(args.expected)
    tables = []
    for path in args.inputs:
        rows = pd.read_csv(path)
        check_current(path, rows, expected)
        tables.append(rows)
    table = pd.concat(tables, ignore_index=True)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise SystemExit(f"error: metric files lack columns {missing}")
    check_single_config(table)
    with atomic_path(args.out) as tmp:
        table[COLUMNS].sort_values(COLUMNS[:8]).to_csv(tmp, index=False)


if __name__ == "__main__":
    run_stage(main)

"""Stage: concatenate per-sample-set metric files into results/<scale>/metrics.csv."""

import argparse

import pandas as pd

from ..metrics_table import COLUMNS, check_single_config
from . import run_stage


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("inputs", nargs="+")
    args = p.parse_args(argv)
    table = pd.concat([pd.read_csv(f) for f in args.inputs], ignore_index=True)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise SystemExit(f"error: metric files lack columns {missing}")
    check_single_config(table)
    table[COLUMNS].sort_values(COLUMNS[:8]).to_csv(args.out, index=False)


if __name__ == "__main__":
    run_stage(main)

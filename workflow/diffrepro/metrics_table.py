"""The long-format results contract (README, "Reading the results"): one row per number in metrics.csv."""

import pandas as pd

from .errors import UserError

COLUMNS = ["paper", "experiment", "input_scaling", "sampler", "sampler_name", "steps", "nfe", "seed",
           "n_samples", "extractor", "library", "metric", "value", "reference_set", "config_hash"]
RUN_KEYS = ["paper", "experiment", "input_scaling", "sampler", "steps", "seed"]
# a sample set's pixel sanity rows next to its FID/KID (pixel_stats), and their report columns
PIXELS = "pixels"
PIXEL_COLUMNS = {"pixel_w1": "pixel W1", "bright_fraction": "bright pixels"}


class StaleResults(UserError, ValueError):
    pass


def rows_for(run: dict, metric_rows: list[dict]) -> pd.DataFrame:
    """Attach the run's identifying columns to the rows a metrics computation returned."""
    return pd.DataFrame([{**run, **row} for row in metric_rows])[COLUMNS]


SET_KEY = ["paper", "experiment", "input_scaling", "seed"]


def check_matches_plan(table: pd.DataFrame, expected: dict, source) -> None:
    """Refuse a metrics table that is not the current plan's: every planned network
    ("paper/experiment/scaling/seed" -> its config hash) has rows, all with that hash, and no
    sampled experiment has rows of a network the plan no longer has. Rows of a paper's own stages
    (experiments nobody samples) are not the plan's to check."""
    if not expected:
        return
    keys = table[SET_KEY].astype(str).agg("/".join, axis=1)
    planned_experiments = {k.rsplit("/", 2)[0] for k in expected}
    fix = "rerun snakemake, which rebuilds it from the current configuration's sample sets"
    missing = sorted(set(expected) - set(keys))
    if missing:
        raise StaleResults(f"{source} has no rows of {missing[0]}{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}, "
                           f"which the current configuration samples; {fix}")
    experiments = table["paper"].astype(str) + "/" + table["experiment"].astype(str)
    unplanned = sorted(set(keys[experiments.isin(planned_experiments)]) - set(expected))
    if unplanned:
        raise StaleResults(f"{source} has rows of {unplanned[0]}, which the current configuration does not sample; {fix}")
    hashes = table["config_hash"].astype(str)
    for key, wanted in expected.items():
        stale = sorted(set(hashes[keys == key]) - {wanted})
        if stale:
            raise StaleResults(f"{source}: rows of {key} come from configuration {stale[0]}, the current one is {wanted}; {fix}")


def check_single_config(table: pd.DataFrame) -> None:
    """Refuse to mix rows produced by different configurations of one experiment (per replicate
    seed: replicate k trains with its own seed, so its hash differs by design)."""
    per_experiment = table.groupby(["paper", "experiment", "input_scaling", "seed"])["config_hash"].nunique()
    mixed = per_experiment[per_experiment > 1]
    if len(mixed):
        names = ", ".join(sorted({"/".join(map(str, k[:3])) for k in mixed.index}))
        raise StaleResults(f"metrics from different configurations are mixed for {names}; "
                           f"rerun the workflow so every row comes from the current configuration")

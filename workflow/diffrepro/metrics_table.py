"""The long-format results contract (README, "Reading the results"): one row per number in metrics.csv."""

import pandas as pd

COLUMNS = ["paper", "experiment", "input_scaling", "sampler", "sampler_name", "steps", "nfe", "seed",
           "n_samples", "extractor", "library", "metric", "value", "reference_set", "config_hash"]
RUN_KEYS = ["paper", "experiment", "input_scaling", "sampler", "steps", "seed"]
# a sample set's pixel sanity rows next to its FID/KID (pixel_stats), and their report columns
PIXELS = "pixels"
PIXEL_COLUMNS = {"pixel_w1": "pixel W1", "bright_fraction": "bright pixels"}


class StaleResults(ValueError):
    pass


def rows_for(run: dict, metric_rows: list[dict]) -> pd.DataFrame:
    """Attach the run's identifying columns to the rows a metrics computation returned."""
    return pd.DataFrame([{**run, **row} for row in metric_rows])[COLUMNS]


def check_single_config(table: pd.DataFrame) -> None:
    """Refuse to mix rows produced by different configurations of one experiment (per replicate
    seed: replicate k trains with its own seed, so its hash differs by design)."""
    per_experiment = table.groupby(["paper", "experiment", "input_scaling", "seed"])["config_hash"].nunique()
    mixed = per_experiment[per_experiment > 1]
    if len(mixed):
        names = ", ".join(sorted({"/".join(map(str, k[:3])) for k in mixed.index}))
        raise StaleResults(f"metrics from different configurations are mixed for {names}; "
                           f"rerun the workflow so every row comes from the current configuration")

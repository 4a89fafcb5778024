"""Tables and figures for reports/<scale>/, all derived from metrics.csv and replications/."""

import platform
import subprocess
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402

REAL = "real_data"


def model_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics[metrics["paper"] != REAL]


def metric_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, extractor), FID and KID from each library side by side; mean over seeds."""
    keys = ["paper", "experiment", "input_scaling", "sampler", "steps", "nfe", "extractor"]
    grouped = (metrics.groupby(keys + ["metric", "library"], dropna=False)["value"]
               .agg(["mean", "std", "count"]).reset_index())
    grouped["column"] = grouped["metric"].str.upper() + " (" + grouped["library"] + ")"
    table = grouped.pivot_table(index=keys, columns="column", values="mean", dropna=False).reset_index()
    seeds = metrics.groupby(keys, dropna=False)["seed"].nunique().rename("seeds").reset_index()
    samples = metrics.groupby(keys, dropna=False)["n_samples"].first().rename("samples").reset_index()
    return table.merge(seeds, on=keys).merge(samples, on=keys)


def plot_fid_vs_steps(metrics: pd.DataFrame, path) -> None:
    fid = model_rows(metrics)
    fid = fid[fid["metric"] == "fid"].copy()
    fid["model"] = fid["paper"] + "/" + fid["experiment"] + " [" + fid["input_scaling"] + "]"
    grid = sns.relplot(data=fid, x="steps", y="value", hue="sampler", style="library", col="model",
                       kind="line", marker="o", errorbar="sd", height=3.5, aspect=1.3,
                       facet_kws={"sharey": False})
    grid.set(xscale="log")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    grid.set_axis_labels("sampling steps", "FID (classifier features)")
    floor = metrics[(metrics["paper"] == REAL) & (metrics["metric"] == "fid")]["value"]
    if len(floor):
        for ax in grid.axes.flat:
            ax.axhline(floor.mean(), color="grey", ls="--", lw=1)
            ax.annotate("real-data floor", (1, floor.mean()), xycoords=("axes fraction", "data"),
                        ha="right", va="bottom", fontsize=8, color="grey")
    grid.figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(grid.figure)


def reference_rows(replications_dir) -> pd.DataFrame:
    rows = []
    for path in sorted(Path(replications_dir).glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for ref in doc.get("reference", []):
            proto = ref["protocol"]
            value = f"{ref['value']}" if ref.get("confirmed", True) else f"{ref['value']} (UNCONFIRMED)"
            rows.append({"paper": doc["paper"], "configuration": ref["configuration"], "metric": ref["metric"],
                         "value": value, "dataset": proto["dataset"], "extractor": proto["extractor"],
                         "library": proto.get("library", ""), "samples": proto["n_samples"],
                         "reference set": proto["reference_set"], "source": ref["source"]})
    return pd.DataFrame(rows)


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def markdown(df: pd.DataFrame, floatfmt=".3g") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt) if len(df) else "_(none)_"

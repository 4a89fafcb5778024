"""The report's figures (seaborn), each a function of metrics.csv rows or one result file."""

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_path  # noqa: E402

PLOT_LIBRARY = "clean-fid"  # both libraries agree to ~1e-12 (the agreement table shows it); plot one
PLOT_EXTRACTOR = "fmnist-classifier"
DPI = 110


def save(figure, path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(figure)


SET_KEYS = ["paper", "experiment", "input_scaling", "sampler", "steps", "seed"]


def fid_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The plotted FID rows, each with its set's 95% bootstrap interval over images (ci_low, ci_high)."""
    rows = metrics[(metrics["metric"] == "fid") & (metrics["library"] == PLOT_LIBRARY)
                   & (metrics["extractor"] == PLOT_EXTRACTOR)].copy()
    intervals = metrics[metrics["metric"].isin(["fid_ci_low", "fid_ci_high"]) & (metrics["extractor"] == PLOT_EXTRACTOR)]
    if len(intervals):
        wide = intervals.pivot_table(index=SET_KEYS, columns="metric", values="value").reset_index()
        rows = rows.merge(wide.rename(columns={"fid_ci_low": "ci_low", "fid_ci_high": "ci_high"}), on=SET_KEYS,
                          how="left")
    rows["model"] = rows["experiment"] + " [" + rows["input_scaling"] + "]"
    return rows


def _interval_bars(data, color=None, **_):
    """Error bars from each point's 95% interval over images (mean over seeds), drawn on the current axes."""
    if "ci_low" not in data or data["ci_low"].isna().all():
        return
    means = data.groupby("nfe")[["value", "ci_low", "ci_high"]].mean().reset_index()
    plt.gca().errorbar(means["nfe"], means["value"], yerr=[means["value"] - means["ci_low"],
                                                           means["ci_high"] - means["value"]],
                       fmt="none", ecolor=color, elinewidth=1, capsize=3)


def _floor_line(axes, floor) -> None:
    if floor is None:
        return
    for ax in axes:
        ax.axhline(floor, color="grey", ls="--", lw=1)
        ax.annotate("real-data floor", (1, floor), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    fontsize=8, color="grey")


RANGE_BUG_SUFFIX = "_range_bug"  # sets scored on purpose with a wrong image range (stages.evaluate --misread)


def fid_vs_nfe(rows: pd.DataFrame, path, floor=None, title="") -> None:
    """FID against network evaluations, one line per sampler (mean over seeds), one panel per model;
    bars = each point's 95% bootstrap interval over its images. Where every sampler ran at one step
    count, FID per sampler instead (fid_at_one_nfe). Deliberately mis-scored sets are named apart."""
    bug = rows["sampler"].str.endswith(RANGE_BUG_SUFFIX)
    rows, mis_scored = rows[~bug], rows[bug]
    note = "; ".join(f"{r.experiment} {r.sampler} scored with the course's image-range bug on purpose: FID "
                     f"{r.value:.3g} (not plotted)" for r in mis_scored.groupby(["experiment", "sampler"],
                                                                                  as_index=False)["value"].mean().itertuples())
    if rows.groupby(["model", "sampler"])["nfe"].nunique().max() == 1:
        fid_at_one_nfe(rows, path, floor, title, note)
        return
    grid = sns.relplot(data=rows, x="nfe", y="value", hue="sampler", col="model", col_wrap=min(3, rows["model"].nunique()),
                       kind="line", marker="o", errorbar=None, height=3.2, aspect=1.25, facet_kws={"sharey": False})
    grid.map_dataframe(_interval_bars)
    grid.set(xscale="log")
    for ax in grid.axes.flat:  # the NFE values themselves as ticks: a log axis over 9..50 shows one decade mark
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(sorted(rows["nfe"].unique())))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    grid.set_axis_labels("network evaluations (NFE)", "FID (classifier features)")
    _floor_line(grid.axes.flat, floor)
    grid.figure.suptitle(title, y=1.02)
    if note:
        grid.figure.text(0.5, -0.02, note, ha="center", va="top", fontsize=8, color="firebrick", wrap=True)
    save(grid.figure, path)


def fid_at_one_nfe(rows: pd.DataFrame, path, floor=None, title="", note="") -> None:
    """FID of each (model, sampler) run at a single step count: a point per set (mean over seeds) with
    its 95% interval over images, best at the top."""
    keys = ["model", "sampler", "nfe"]
    columns = ["value"] + [c for c in ("ci_low", "ci_high") if c in rows]
    sets = rows.groupby(keys, as_index=False)[columns].mean().sort_values("value", ascending=False)
    labels = [f"{r.model} · {r.sampler} ({int(r.nfe)} NFE)" for r in sets.itertuples()]
    figure, ax = plt.subplots(figsize=(7.5, 0.9 + 0.32 * len(sets)))
    y = np.arange(len(sets))
    if "ci_low" in sets and sets["ci_low"].notna().any():
        ax.errorbar(sets["value"], y, xerr=[sets["value"] - sets["ci_low"], sets["ci_high"] - sets["value"]],
                    fmt="o", color="C0", ecolor="C0", elinewidth=1, capsize=3)
    else:
        ax.plot(sets["value"], y, "o", color="C0")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set(xlabel="FID (classifier features); bars: 95% interval over images", title=title)
    if floor is not None:
        ax.axvline(floor, color="grey", ls="--", lw=1)
        ax.annotate("real-data floor", (floor, 1), xycoords=("data", "axes fraction"), ha="left", va="bottom",
                    fontsize=8, color="grey")
    if note:
        ax.annotate(note, (0, 0), xycoords="axes fraction", xytext=(0, -36), textcoords="offset points",
                    ha="left", va="top", fontsize=8, color="firebrick", annotation_clip=False)  # under the x label
    save(figure, path)


def fid_vs_training_images(curve: pd.DataFrame, path, floor=None, title="") -> None:
    """FID of one network's EMA snapshots against the training images they had seen (the last point:
    the final network), bars = 95% bootstrap interval over images."""
    curve = curve.sort_values("images_seen")
    figure, ax = plt.subplots(figsize=(6, 3.6))
    kimg = curve["images_seen"] / 1000
    ax.errorbar(kimg, curve["fid"], yerr=[curve["fid"] - curve["fid_ci_low"], curve["fid_ci_high"] - curve["fid"]],
                fmt="o-", color="C0", ecolor="C0", elinewidth=1, capsize=3)
    first = curve.iloc[0]
    ax.set(xlabel="training images seen (thousands)", ylabel="FID (classifier features)", ylim=(0, None),
           title=f"{title} (seed 0): {first['sampler']}, {int(first['nfe'])} NFE, {int(first['n_samples'])} samples")
    if floor is not None:
        ax.axhline(floor, color="grey", ls="--", lw=1)
        ax.annotate("real-data floor", (1, floor), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    fontsize=8, color="grey")
    save(figure, path)


def fid_vs_input_scaling(scalings: pd.DataFrame, path) -> None:
    """FID of each model trained at several input scalings of its data (same network, same budget)."""
    data = scalings.assign(run=scalings["paper"] + "/" + scalings["experiment"] + " " + scalings["sampler"]
                           + " " + scalings["steps"].astype(str))
    figure, ax = plt.subplots(figsize=(6.5, 3.8))
    sns.barplot(data=data, x="input_scaling", y="value", hue="run", errorbar="sd", ax=ax)
    ax.set(xlabel="input scaling of the data", ylabel="FID", title="input scaling (same network, same budget)")
    ax.legend(fontsize=7)
    save(figure, path)


def _line_label(row, keys) -> str:
    return ", ".join(f"{k} {row[k]}" for k in keys) or "all"


def fid_vs_factor(rows: pd.DataFrame, x: str, hue: str | None, factors: list, path, floor=None, title="") -> None:
    """FID of a sweep's experiments against the sweep axis `x`: a line per value of `hue` and per
    combination of the other axes (`factors`) that vary (mean over seeds), bars = each set's 95%
    interval over images. The y axis starts at 0, so a spread of a few FID at 100 is not drawn as a cliff."""
    keys = ([hue] if hue else []) + [c for c in factors if c not in (x, hue) and rows[c].astype(str).nunique() > 1]
    data = rows.assign(line=rows.apply(_line_label, axis=1, args=(keys,)))
    columns = ["value"] + [c for c in ("ci_low", "ci_high") if c in data]
    lines = data.groupby(["line", x], as_index=False)[columns].mean().sort_values(x)
    figure, ax = plt.subplots(figsize=(6.5, 3.8))
    for k, (label, line) in enumerate(lines.groupby("line", sort=True)):
        ax.plot(line[x], line["value"], "o-", color=f"C{k}", label=label)
        if "ci_low" in line and line["ci_low"].notna().all():
            ax.errorbar(line[x], line["value"], yerr=[line["value"] - line["ci_low"], line["ci_high"] - line["value"]],
                        fmt="none", ecolor=f"C{k}", elinewidth=1, capsize=3)
    ax.set(xlabel=x, ylabel="FID (classifier features)", ylim=(0, None), title=title)
    if floor is not None:
        ax.axhline(floor, color="grey", ls="--", lw=1)
    ax.legend(fontsize=7)
    save(figure, path)


def schedules_log_snr(curves: dict, path) -> None:
    """log SNR against t (quantile of each training noise distribution), one line per schedule."""
    u = np.linspace(0.002, 0.998, 400)
    figure, ax = plt.subplots(figsize=(7, 4.2))
    for label, schedule in sorted(curves.items()):
        ax.plot(u, np.asarray(schedule.log_snr_at_quantile(u), dtype=float), label=label, lw=1.4)
    ax.set(xlabel="t (quantile of the training noise level)", ylabel="log SNR = log(ᾱ / (1 − ᾱ))",
           title="noise schedules as trained (data multiplier b included)", ylim=(-20, 20))
    ax.axhline(0, color="grey", lw=0.6)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: the curves fill the axes
    save(figure, path)


def loss_curves(losses: pd.DataFrame, path, smooth: int = 25) -> None:
    """Training loss per model (running mean over `smooth` steps), one panel per paper, each panel
    with its own legend (one shared legend of every model would not say which line is where)."""
    losses = losses.sort_values("step").copy()
    losses["smoothed loss"] = losses.groupby("model")["loss"].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
    papers = sorted(losses["paper"].unique())
    columns = min(3, len(papers))
    rows = -(-len(papers) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False)
    for ax, paper in zip(axes.flat, papers):
        for model, curve in losses[losses["paper"] == paper].groupby("model"):
            ax.plot(curve["step"], curve["smoothed loss"], lw=1.2, label=model)
        ax.set(yscale="log", title=paper, xlabel="step", ylabel="smoothed loss")
        ax.legend(fontsize=6)
    for ax in axes.flat[len(papers):]:
        ax.set_visible(False)
    figure.tight_layout()
    save(figure, path)


def sample_grid(images: np.ndarray, path, n: int = 64, title="") -> None:
    """The first n images of a set ([N, C, H, W] in [0, 1]) tiled into a square grid."""
    side = int(np.sqrt(min(n, len(images))))
    tiles = images[: side * side].transpose(0, 2, 3, 1)  # [n, H, W, C]
    h, w, c = tiles.shape[1:]
    grid = tiles.reshape(side, side, h, w, c).transpose(0, 2, 1, 3, 4).reshape(side * h, side * w, c)
    figure, ax = plt.subplots(figsize=(3.6, 3.9))
    ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    save(figure, path)

"""Tables and figures for reports/<scale>/, all derived from metrics.csv and replications/."""

import platform
import subprocess

import pandas as pd

from .metrics_table import PIXEL_COLUMNS, PIXELS

REAL = "real_data"
TABLE_LIBRARY = "clean-fid"  # per-paper tables show one library; library_agreement() compares the two
CONFIG_KEYS = ["experiment", "input_scaling", "sampler", "steps", "nfe"]
PROTOCOL_KEYS = ["extractor", "library", "n_samples", "reference_set"]


def model_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics[metrics["paper"] != REAL]


def pixel_columns(metrics: pd.DataFrame, keys: list) -> pd.DataFrame:
    """keys + one column per pixel sanity metric (PIXEL_COLUMNS), mean over seeds."""
    rows = metrics[(metrics["extractor"] == PIXELS) & metrics["metric"].isin(list(PIXEL_COLUMNS))]
    wide = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean", dropna=False)
    return wide.reindex(columns=list(PIXEL_COLUMNS)).rename(columns=PIXEL_COLUMNS).reset_index()


def metric_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, extractor), FID and KID from each library side by side, and the set's
    pixel sanity numbers; mean over seeds."""
    keys = ["paper", "experiment", "input_scaling", "sampler", "steps", "nfe", "extractor"]
    pixels, metrics = pixel_columns(metrics, keys[:-1]), metrics[metrics["extractor"] != PIXELS]
    grouped = (metrics.groupby(keys + ["metric", "library"], dropna=False)["value"]
               .agg(["mean", "std", "count"]).reset_index())
    grouped["column"] = grouped["metric"].str.upper() + " (" + grouped["library"] + ")"
    table = grouped.pivot_table(index=keys, columns="column", values="mean", dropna=False).reset_index()
    seeds = metrics.groupby(keys, dropna=False)["seed"].nunique().rename("seeds").reset_index()
    samples = metrics.groupby(keys, dropna=False)["n_samples"].first().rename("samples").reset_index()
    return table.merge(seeds, on=keys).merge(samples, on=keys).merge(pixels, on=keys[:-1], how="left")


# per-set rows of the evaluate stage (set_statistics) shown as columns next to FID and KID
SET_STATISTICS = ("fid_ci_low", "fid_ci_high", "fid_infinity", "kid_ci_low", "kid_ci_high")


def interval_columns(metrics: pd.DataFrame) -> pd.DataFrame:
    """CONFIG_KEYS + metric ('fid' or 'kid') + '95% CI (images)' (mean over seeds of each set's
    bootstrap interval) + 'FID∞' (Chong & Forsyth's extrapolation, FID rows only)."""
    stats = metrics[metrics["metric"].isin(SET_STATISTICS)]
    if stats.empty:
        return pd.DataFrame()
    wide = stats.pivot_table(index=CONFIG_KEYS, columns="metric", values="value", aggfunc="mean").reset_index()
    out = []
    for metric, low, high, digits in (("fid", "fid_ci_low", "fid_ci_high", ".4g"), ("kid", "kid_ci_low", "kid_ci_high", ".2g")):
        if low in wide and high in wide:
            part = wide[CONFIG_KEYS].assign(metric=metric)
            part["95% CI (images)"] = [f"[{a:{digits}}, {b:{digits}}]" for a, b in zip(wide[low], wide[high])]
            part["FID∞"] = [f"{v:.4g}" for v in wide["fid_infinity"]] if metric == "fid" and "fid_infinity" in wide \
                else ""
            out.append(part)
    return pd.concat(out, ignore_index=True)


def mean_sd(values: pd.Series) -> str:
    """'m ± s' over seeds ('m' alone for one seed), 4 significant digits."""
    if len(values) == 1 or values.std() != values.std():
        return f"{values.mean():.4g}"
    return f"{values.mean():.4g} ± {values.std():.2g}"


PAPER_COLUMN = "the paper's number (its data set, its features)"


def paper_table(metrics: pd.DataFrame, paper: str, references: list) -> pd.DataFrame:
    """One row per (configuration, metric) of a paper: ours as mean ± sd over seeds, the protocol
    columns, the sample set's pixel sanity numbers (FID rows) and the paper's number where its
    YAML reports one for that experiment and sampler."""
    metrics = metrics[metrics["paper"] == paper]
    pixels = pixel_columns(metrics, CONFIG_KEYS)
    intervals = interval_columns(metrics)
    rows = metrics[(metrics["extractor"] != PIXELS) & ~metrics["metric"].isin(SET_STATISTICS)
                   & ~((metrics["metric"] == "kid") & (metrics["library"] != "diffrepro"))
                   & ~(metrics["metric"].isin(["fid"]) & (metrics["library"] != TABLE_LIBRARY))]
    if rows.empty:
        return pd.DataFrame()
    keys = CONFIG_KEYS + ["metric"] + PROTOCOL_KEYS
    table = (rows.groupby(keys, dropna=False)
             .agg(ours=("value", mean_sd), seeds=("seed", "nunique")).reset_index())
    table = table.merge(pixels, on=CONFIG_KEYS, how="left")
    if len(intervals):
        table = table.merge(intervals, on=CONFIG_KEYS + ["metric"], how="left")
        table[["95% CI (images)", "FID∞"]] = table[["95% CI (images)", "FID∞"]].fillna("")
    for column, form in zip(PIXEL_COLUMNS.values(), ("{:.3f}", "{:.1%}")):
        table[column] = [form.format(v) if m == "fid" and v == v else "" for m, v in zip(table["metric"], table[column])]
    # its own data set and features (named in the value): a separate measurement, not ours to subtract
    table[PAPER_COLUMN] = [_paper_value(references, r) for r in table.itertuples()]
    table = table.rename(columns={"input_scaling": "scaling", "nfe": "NFE", "n_samples": "samples",
                                  "reference_set": "reference set"})
    return table.sort_values(["experiment", "scaling", "metric", "sampler", "steps"], kind="stable")


def _paper_value(references: list, row) -> str:
    found = [ref for ref in references if ref.get("experiment") == row.experiment and ref["metric"] == row.metric
             and ref.get("sampler", row.sampler) == row.sampler and ref.get("steps", row.steps) == row.steps]
    return "; ".join(f"{ref['value']}{'' if ref.get('confirmed', True) else ' (unconfirmed)'} "
                     f"({ref['protocol']['dataset']}, {ref['protocol']['extractor']})" for ref in found)


def library_agreement(metrics: pd.DataFrame) -> pd.DataFrame:
    """torch-fidelity vs clean-fid on the same features and sets: the largest differences."""
    both = metrics[metrics["metric"].isin(["fid", "kid"]) & metrics["library"].isin(["torch-fidelity", "clean-fid"])]
    wide = both.pivot_table(index=["paper", "experiment", "input_scaling", "sampler", "steps", "seed", "extractor",
                                   "metric"], columns="library", values="value").dropna().reset_index()
    if wide.empty:
        return pd.DataFrame()
    wide["abs"] = (wide["torch-fidelity"] - wide["clean-fid"]).abs()
    wide["rel"] = wide["abs"] / wide["clean-fid"].abs().clip(lower=1e-12)
    return (wide.groupby(["extractor", "metric"])
            .agg(sets=("abs", "size"), median=("clean-fid", "median"), max_abs_difference=("abs", "max"),
                 max_relative_difference=("rel", "max")).reset_index())


VERDICT_MARKS = {"holds": "✅ holds", "contradicted": "❌ contradicted", "inconclusive": "❔ inconclusive",
                 "not evaluated": "— not evaluated"}
EFFECT_SENTENCE = (
    "Each claim's *effect* is a number that is positive when the data side with the paper (e.g. FID(b) − FID(a) "
    "for \"a beats b\"; for a claim that two things are near, the ratio or difference, which must lie in the "
    "paper's tolerance band shown as \"side\"). The brackets are its 95% confidence interval from a "
    "bootstrap that resamples replicate networks and then the images of each set (paired by initial noise where "
    "sets share it): **holds** when the whole interval is on the paper's side, **contradicted** when it is "
    "wholly on the other side, **inconclusive** otherwise, with about how many times more seeds and samples "
    "would decide it.")


def effect_text(row) -> str:
    effect, low, high = (_num(row.get(k)) for k in ("effect", "ci_low", "ci_high"))
    if not effect:
        return ""
    return effect if low == high else f"{effect} [{low}, {high}]"


def claims_front(claims: pd.DataFrame) -> pd.DataFrame:
    """The compact claims table: paper, short title, verdict, effect with its interval, seeds × samples,
    the paper's own effect; the long text and the evidence go to the paper's section."""
    rows = claims.to_dict("records")
    return pd.DataFrame({
        "paper": claims["paper"], "claim": claims["title"],
        "verdict": [VERDICT_MARKS.get(str(r["verdict"]), str(r["verdict"])) for r in rows],
        "effect [95% CI]": [effect_text(r) for r in rows],
        "side": claims["side"].fillna(""),
        "seeds × samples": [f"{r['seeds']} × {r['n_samples']}" if _num(r.get("seeds")) else "" for r in rows],
        "design": claims["paired"].fillna(""),
        "to decide": claims["needed"].fillna(""),
        "paper's effect": claims["paper_effect"].map(_num)})


def claims_details(claims: pd.DataFrame) -> str:
    """The paper section's claim list: title, verdict, the paper's words, the evidence, what was excluded."""
    lines = []
    for r in claims.to_dict("records"):
        lines.append(f"- **{r['title']}** — {VERDICT_MARKS.get(str(r['verdict']), r['verdict'])}"
                     + (f", effect {effect_text(r)}" if effect_text(r) else "") + f". _{r['text']}_ ({r['source']})")
        lines.append(f"  Evidence: {r['evidence']}")
        if isinstance(r.get("excluded"), str) and r["excluded"]:
            lines.append(f"  Left out as diverged: {r['excluded']}")
    return "\n".join(lines)


def _num(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "" if value != value else f"{value:.4g}"


def reference_rows(references: dict) -> pd.DataFrame:
    """One row per paper-reported number ({paper: replications/<paper>.yaml `reference`}), with its protocol."""
    rows = []
    for paper, entries in references.items():
        for ref in entries:
            proto = ref["protocol"]
            value = f"{ref['value']}" if ref.get("confirmed", True) else f"{ref['value']} (UNCONFIRMED)"
            rows.append({"paper": paper, "configuration": ref["configuration"], "metric": ref["metric"],
                         "value": value, "dataset": proto["dataset"], "extractor": proto["extractor"],
                         "library": proto.get("library", ""), "samples": proto["n_samples"],
                         "reference set": proto["reference_set"], "source": ref["source"]})
    return pd.DataFrame(rows)


def deviations_at(deviations: list, scale: str) -> list:
    """The entries of a replication's `deviations:` that apply at `scale` (no `scales`: every scale)."""
    return [d for d in deviations if scale in d.get("scales", (scale,))]


def deviations_markdown(deviations: list, scale: str, source: str) -> str:
    """A paper's deviations from its protocol at `scale`, one list item each: what, why, expected effect."""
    def sentence(text):  # one line (YAML block scalars may hold several), ending in a full stop
        text = " ".join(str(text).split())
        return text if text.endswith((".", "!", "?")) else text + "."

    shown = deviations_at(deviations, scale)
    head = f"Deviations from the paper at scale `{scale}` (`deviations:` in `{source}`)"
    if not shown:
        return head + ": none."
    items = [f"- **{sentence(d['what'])}** Why: {sentence(d['why'])} Expected effect: {sentence(d['effect'])}"
             for d in shown]
    return "\n".join([head + ":", "", *items])


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        # the report being rewritten (reports/ is committed) does not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def markdown(df: pd.DataFrame, floatfmt=".3g") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt) if len(df) else "_(none)_"

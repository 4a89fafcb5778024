"""Stage: write reports/<scale>/ — README.md, tables/*.csv and figures/*.png — from the results.

Every number comes from metrics.csv, claims.csv, the classifier's metrics.json and the files named
on the command line; the paper's numbers come from replications/*.yaml.
"""

import argparse
import base64
import binascii
import datetime
import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import figures
from ..replications import load_replications
from ..features import INCEPTION, available_extractors
from ..io import atomic_path
from ..metrics_table import check_matches_plan
from ..reporting import (EFFECT_SENTENCE, REAL, claims_details, claims_front, deviations_markdown, git_revision,
                         library_agreement, machine, markdown, metric_table, model_rows, paper_table, reference_rows)
from . import run_stage

GRID_IMAGES = 64


def job_times(metadata_dir: Path, prefixes: tuple) -> tuple:
    """(wall seconds with at least one job running, summed job seconds) from Snakemake's metadata
    records of outputs under `prefixes`; a resumed run's idle gaps do not count."""
    spans = {}
    for record in metadata_dir.glob("*") if metadata_dir.is_dir() else []:
        try:
            name = base64.urlsafe_b64decode(record.name + "=" * (-len(record.name) % 4)).decode()
            meta = json.loads(record.read_text())
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if name.startswith(prefixes) and meta.get("starttime") is not None and meta.get("endtime") is not None:
            # each output of a job has its own record (start times differ by microseconds): count
            # the job once, by its hash
            job = meta.get("job_hash", (meta["starttime"], meta["endtime"]))
            spans.setdefault(job, (meta["starttime"], meta["endtime"]))
    spans = sorted(spans.values())
    busy, end = 0.0, -np.inf
    for start, stop in spans:
        busy += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return busy, sum(stop - start for start, stop in spans)


def figure_name(*parts) -> str:
    return "__".join(str(p) for p in parts) + ".png"


class Report:
    """Collects figures (written as they are made) and the Markdown that shows them."""

    def __init__(self, out: Path):
        self.out = out
        (out / "figures").mkdir(parents=True, exist_ok=True)
        (out / "tables").mkdir(parents=True, exist_ok=True)

    def figure(self, name: str) -> Path:
        return self.out / "figures" / name

    def table(self, df: pd.DataFrame, name: str) -> None:
        with atomic_path(self.out / "tables" / name) as tmp:
            df.to_csv(tmp, index=False)

    @staticmethod
    def image(name: str, alt: str) -> str:
        return f"![{alt}](figures/{name})"


def sample_grids(report: Report, rows: pd.DataFrame, samples_dir: Path, paper: str) -> list:
    """One grid per sampled model: its best-FID sample set (seed 0 where replicated). Rows without a
    sample set of their own (e.g. fastai_fmnist's deliberately mis-scored *_range_bug rows) are skipped."""
    lines = []
    rows = rows[(rows["paper"] == paper) & (rows["seed"] == rows["seed"].min())].reset_index(drop=True)
    rows["path"] = [samples_dir / paper / r.experiment / r.input_scaling / r.sampler / str(r.steps) / f"seed{r.seed}.npz"
                    for r in rows.itertuples()]
    rows = rows[[path.exists() for path in rows["path"]]]
    for (experiment, scaling), group in rows.groupby(["experiment", "input_scaling"]):
        best = group.loc[group["value"].idxmin()]
        path = best["path"]
        name = figure_name(paper, "samples", experiment, scaling)
        title = f"{experiment} [{scaling}] {best['sampler']} {best['steps']} steps, FID {best['value']:.1f}"
        figures.sample_grid(np.load(path)["images"], report.figure(name), GRID_IMAGES, title)
        lines.append(report.image(name, title))
    return lines


def factor_rows(fid: pd.DataFrame, paper: str, rep: dict) -> tuple[pd.DataFrame, list]:
    """(the paper's sweep rows with each sweep axis as a column, at each experiment's largest step
    count; the axis names)."""
    swept = {name: exp["factors"] for name, exp in rep.get("experiments", {}).items() if exp.get("factors")}
    rows = fid[(fid["paper"] == paper) & fid["experiment"].isin(swept)]
    if rows.empty:
        return rows, []
    factors = pd.DataFrame([{"experiment": name, **axes} for name, axes in swept.items()])
    rows = rows.merge(factors, on="experiment")
    return rows[rows["steps"] == rows.groupby("experiment")["steps"].transform("max")], [c for c in factors if c != "experiment"]


def scaling_rows(fid: pd.DataFrame) -> pd.DataFrame:
    """Rows of models trained at more than one input scaling, at each sampler's largest step count."""
    multi = fid.groupby(["paper", "experiment"])["input_scaling"].transform("nunique") > 1
    rows = fid[multi]
    return rows[rows["steps"] == rows.groupby(["paper", "experiment", "sampler"])["steps"].transform("max")]


def schedule_curves(replications: dict, scale: str) -> dict:
    """{label: schedule object} for every distinct (schedule, data multiplier b) trained at this scale."""
    from ..build import build_schedule_for  # torch import: only when the report is built

    curves = {}
    for paper, rep in replications.items():
        for name, exp in rep["experiments"].items():
            if "schedule" not in exp or scale not in exp.get("scales", [scale]):
                continue
            b = exp.get("parameterisation", {}).get("data_multiplier", 1.0)
            params = ", ".join(f"{k}={v}" for k, v in exp["schedule"].items() if k != "name")
            label = exp["schedule"]["name"] + (f"({params})" if params else "") + (f", b={b}" if b != 1.0 else "")
            curves.setdefault(label, build_schedule_for(exp))
    return curves


def losses_frame(loss_files: list, results: Path) -> pd.DataFrame:
    frames = []
    for path in map(Path, loss_files):
        parts = path.relative_to(results / "models").parts  # paper/experiment/scaling[/seedK]/loss.csv
        frame = pd.read_csv(path)[["step", "loss"]]
        frames.append(frame.assign(paper=parts[0], model=" / ".join(parts[1:-1])))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# Columns that describe the protocol: when one value holds for every row, it is said once above the table.
PROTOCOL_COLUMNS = ["metric", "extractor", "library", "samples", "reference set"]


def training_protocol(rows: list) -> str:
    """'N steps of B images (lr ..., EMA half-life ...; precision): networks; ...', one clause per group of
    networks trained alike (the papers' own recipes are in their sections' deviations)."""
    if not rows:
        return "no network trained at this scale."
    frame = pd.DataFrame(rows)
    keys = ["steps", "batch_size", "lr", "lr_decay", "ema_halflife_images", "bf16"]
    clauses = []
    for values, group in frame.groupby(keys, sort=False):
        setting = dict(zip(keys, values))
        networks = ", ".join(sorted(set(group["network"])))
        clauses.append(f"{setting['steps']:,} steps of {setting['batch_size']} images "
                       f"({setting['steps'] * setting['batch_size'] / 1000:.0f}k; Adam, peak lr {setting['lr']:g}, "
                       f"{setting['lr_decay']} decay, "
                       f"{'EMA half-life {:g} images'.format(setting['ema_halflife_images']) if setting['ema_halflife_images'] else 'no EMA'}, "
                       f"{'bf16 autocast' if setting['bf16'] else 'float32'}) for {networks}")
    return "; ".join(clauses) + "."


def split_constant_columns(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(table without the protocol columns that are constant, 'Protocol: column value, ...' for those)."""
    constant = [c for c in PROTOCOL_COLUMNS if c in table and table[c].nunique(dropna=False) == 1]
    if not constant:
        return table, ""
    said = ", ".join(f"{c} {table[c].iloc[0]}" for c in constant)
    return table.drop(columns=constant), f"Every row: {said}."


def paper_section(report: Report, paper: str, rep: dict, scale: str, claims: pd.DataFrame, metrics: pd.DataFrame,
                  fid: pd.DataFrame, floor, samples_dir: Path, source: str, curves: list = (),
                  plugin_figures: list = ()) -> str:
    """One paper's section of the README: its claims, our numbers against its own, the deviations from
    its protocol that apply at this scale (`deviations:` in its replication file, `source`), FID vs NFE
    and a sample grid per model."""
    lines = [f"## {paper}: {rep['title']}", "", f"_{rep['citation']}_", ""]
    paper_claims = claims[claims["paper"] == paper]
    if len(paper_claims):
        lines += [claims_details(paper_claims), ""]
    table = paper_table(metrics, paper, rep.get("reference", []))
    if len(table):
        report.table(table, f"{paper}.csv")  # the CSV keeps every column
        shown, protocol = split_constant_columns(table)
        lines += ["Ours (mean ± sd over seeds; FID by clean-fid, the same as torch-fidelity's: see the "
                  "library agreement table). " + protocol, "", markdown(shown), ""]
    lines += [deviations_markdown(rep.get("deviations", []), scale, source), ""]
    paper_fid = fid[fid["paper"] == paper]
    if len(paper_fid):
        name = figure_name(paper, "fid_vs_nfe")
        figures.fid_vs_nfe(paper_fid, report.figure(name), floor, title=paper)
        lines += [report.image(name, f"{paper}: FID vs NFE"), ""]
    swept, factors = factor_rows(fid, paper, rep)
    if "factor_figure" in rep and len(swept):
        x, hue = rep["factor_figure"]["x"], rep["factor_figure"].get("hue")
        name = figure_name(paper, f"fid_vs_{x}")
        figures.fid_vs_factor(swept, x, hue, factors, report.figure(name), floor, title=f"{paper}: FID vs {x}")
        lines += [report.image(name, f"{paper}: FID vs {x}"), ""]
    for entry in plugin_figures:  # drawn by the paper's own code (replications/<paper>.smk registers it)
        name = figure_name(paper, entry["name"])
        module, function = entry["draw"].split(":")
        getattr(importlib.import_module(module), function)(entry["input"], report.figure(name), entry["caption"])
        lines += [report.image(name, entry["caption"]), ""]
    for curve in curves:
        run = curve.iloc[0]
        name = figure_name(paper, "fid_vs_training_images", run["experiment"], run["input_scaling"])
        figures.fid_vs_training_images(curve, report.figure(name), floor, title=f"{paper} {run['experiment']}")
        lines += [f"Learning curve of {run['experiment']} [{run['input_scaling']}] (seed 0): FID of its EMA weights "
                  "at evenly spaced points of its training, the last being the final network.", "",
                  report.image(name, f"{paper} {run['experiment']}: FID vs training images"), ""]
    lines += sample_grids(report, paper_fid, samples_dir, paper)
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--metrics", required=True)
    p.add_argument("--classifier", required=True, help="classifier metrics.json")
    p.add_argument("--claims", required=True, help="claims.csv")
    p.add_argument("--replications", required=True)
    p.add_argument("--scale", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--losses", nargs="*", default=[], help="loss.csv of every trained model")
    p.add_argument("--learning-curves", nargs="*", default=[], help="CSVs of the learning_curve stage")
    p.add_argument("--plugin-figures", default="[]",
                   help="JSON [{paper, name, input, draw: 'module:function', caption}]: figures of papers' own stages")
    p.add_argument("--inception-weights", default="")
    p.add_argument("--expected", default="{}",
                   help='JSON {"paper/experiment/scaling/seed": current config hash}: metrics.csv must be that plan\'s')
    p.add_argument("--command", default="snakemake --cores all")
    p.add_argument("--training", default="[]", help="JSON rows of the trained networks' settings (Plan.training_summary)")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    report = Report(out)
    results = Path(args.metrics).parent

    metrics = pd.read_csv(args.metrics)
    check_matches_plan(metrics, json.loads(args.expected), args.metrics)
    claims = pd.read_csv(args.claims, dtype={"verdict": str, "seeds": str, "n_samples": str, "needed": str,
                                               "paired": str, "excluded": str, "side": str})
    clf = json.loads(Path(args.classifier).read_text())
    replications = load_replications(args.replications)
    references = {paper: doc.get("reference", []) for paper, doc in replications.items()}
    inception = available_extractors({"inception_weights": args.inception_weights or None})[INCEPTION]
    inception_note = ("weights found; used for the experiments on CIFAR-10 (`dataset: cifar10`), "
                      "Fashion-MNIST sets are scored with the classifier" if inception.available
                      else f"not computed: {inception.reason}")

    models = model_rows(metrics)
    report.table(metric_table(models), "metrics_table.csv")
    report.table(claims_front(claims), "claims.csv")
    agreement = library_agreement(metrics)
    report.table(agreement, "library_agreement.csv")
    fid = figures.fid_rows(models)
    floor_rows = metrics[(metrics["paper"] == REAL) & (metrics["metric"] == "fid")]
    floor = float(floor_rows["value"].mean()) if len(floor_rows) else None

    curves = [pd.read_csv(path) for path in args.learning_curves]
    plugin_figures = json.loads(args.plugin_figures)
    sections = [paper_section(report, paper, replications[paper], args.scale, claims, metrics, fid, floor,
                              results / "samples", f"{Path(args.replications).name}/{paper}.yaml",
                              [c for c in curves if len(c) and c["paper"].iloc[0] == paper],
                              [f for f in plugin_figures if f["paper"] == paper])
                for paper in sorted(replications)]

    extra = []
    scalings = scaling_rows(fid) if len(fid) else fid
    if len(scalings):
        figures.fid_vs_input_scaling(scalings, report.figure(figure_name("all", "fid_vs_input_scaling")))
        extra.append(report.image(figure_name("all", "fid_vs_input_scaling"), "FID vs input scaling"))
    figures.schedules_log_snr(schedule_curves(replications, args.scale),
                              report.figure(figure_name("all", "schedules_log_snr")))
    extra.append(report.image(figure_name("all", "schedules_log_snr"), "noise schedules, log SNR vs t"))
    losses = losses_frame(args.losses, results)
    if len(losses):
        figures.loss_curves(losses, report.figure(figure_name("all", "loss_curves")))
        extra.append(report.image(figure_name("all", "loss_curves"), "training loss curves"))
    busy, summed = job_times(Path(".snakemake/metadata"), (str(results) + "/", str(results.parent / "data") + "/"))
    floor_table = metric_table(metrics[metrics["paper"] == REAL]).drop(
        columns=["experiment", "input_scaling", "sampler", "steps", "nfe"])
    text = f"""# diffrepro report — scale `{args.scale}`

Command: `{args.command}` · git revision `{git_revision()}` · {machine()} ·
generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.
Wall time with jobs running: **{busy / 60:.1f} min** (job time summed over jobs: {summed / 60:.1f} min; from
Snakemake's job records, so a resumed run's idle gaps are not counted).
Every number below is derived from `results/{args.scale}/metrics.csv` and `claims.csv` (copies of the tables:
`tables/`); the papers' numbers come from `replications/*.yaml`.

## Do the papers' claims hold at this scale?

{EFFECT_SENTENCE}

{markdown(claims_front(claims))}

## Protocol

- Training: {training_protocol(json.loads(args.training))}
- Data: Fashion-MNIST, 28×28 zero-padded to 32×32 (or resampled to 16×16 where a configuration says so);
  models trained on the training split.
- FID/KID features: the {clf.get('feature_dim', '?')}-d pre-logit layer of a Fashion-MNIST classifier trained
  by the workflow (test accuracy **{100 * clf['test_accuracy']:.2f}%**), the fast.ai course's method.
  Inception-v3 FID: {inception_note}.
- FID/KID reference set: {', '.join(sorted(fid['reference_set'].dropna().unique()))}.
  Samples per set: {', '.join(str(int(n)) for n in sorted(fid['n_samples'].unique()))}.
- Seeds: where a table shows several, seed k is an independent replicate (network trained with seed k,
  samples drawn with seed k); ± is the standard deviation over replicates.
- Each FID and KID is computed twice on the same features, by torch-fidelity and by clean-fid.
- Pixel sanity, next to each FID: "pixel W1" is the Wasserstein-1 distance between the set's and the
  reference set's pixel-intensity histograms (0 = the same histogram, 1 = black vs white); "bright pixels"
  is the share of pixels at 250/255 or above (the real-data rows below give both for real images).
  A set with tens of percent bright pixels has diverged (saturated speckle), whatever its FID says.
- Real-data floor (the same number of *training* images scored against the test split; no model can be
  expected to beat it at this sample count):

{markdown(floor_table)}

## FID library agreement (torch-fidelity vs clean-fid, same features, same sets)

{markdown(agreement, floatfmt=".3g")}

{chr(10).join(chr(10) + s + chr(10) for s in sections)}

## Across papers

{chr(10).join(line + chr(10) for line in extra)}

## What the papers reported

Different data sets, feature extractors and sample counts: these numbers give the protocol to
compare against, not a target for Fashion-MNIST at this scale.

{markdown(reference_rows(references))}
"""
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    run_stage(main)

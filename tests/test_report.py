"""Report tables and figures on hand-made metrics rows: the numbers they show can be derived by hand."""

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffrepro import figures
from diffrepro.reporting import claims_front, library_agreement, metric_table, model_rows, paper_table
from diffrepro.stages.report import Report, job_times, paper_section, sample_grids

ROOT = Path(__file__).resolve().parents[1]


def rows(values, library="clean-fid", metric="fid", sampler="heun", steps=10):
    return pd.DataFrame([{"paper": "p", "experiment": "e", "input_scaling": "symmetric", "sampler": sampler,
                          "sampler_name": sampler, "steps": steps, "nfe": 2 * steps - 1, "seed": seed,
                          "n_samples": 500, "extractor": "fmnist-classifier", "library": library, "metric": metric,
                          "value": v, "reference_set": "fashion_mnist_test_10k", "config_hash": "h"}
                         for seed, v in enumerate(values)])


def test_paper_table_mean_sd_over_seeds_and_the_papers_number():
    metrics = pd.concat([rows([10.0, 12.0, 14.0]), rows([10.0, 12.0, 14.1], library="torch-fidelity"),
                         rows([0.1, 0.2, 0.3], metric="kid")])
    refs = [{"experiment": "e", "sampler": "heun", "metric": "fid", "value": 1.97,
             "protocol": {"dataset": "CIFAR-10", "extractor": "Inception-v3"}}]
    table = paper_table(metrics, "p", refs)
    assert len(table) == 1  # one library and no KID in the per-paper table
    row = table.iloc[0]
    assert row["ours"] == "12 ± 2" and row["seeds"] == 3 and row["NFE"] == 19 and row["samples"] == 500
    assert row["the paper's number (its data set, its features)"] == "1.97 (CIFAR-10, Inception-v3)"
    assert paper_table(metrics, "absent", refs).empty


def test_pixel_sanity_numbers_are_columns_of_the_fid_rows_not_rows():
    bright = rows([0.10, 0.20, 0.30], library="scipy", metric="bright_fraction").assign(extractor="pixels")
    w1 = rows([0.01, 0.02, 0.06], library="scipy", metric="pixel_w1").assign(extractor="pixels")
    metrics = pd.concat([rows([10.0, 12.0, 14.0]), bright, w1, rows([3.0], metric="bound_bits", library="diffrepro")])
    table = paper_table(metrics, "p", [])
    assert list(table["metric"]) == ["bound_bits", "fid"]
    assert list(table["bright pixels"]) == ["", "20.0%"]  # means over the three seeds
    assert list(table["pixel W1"]) == ["", "0.030"]
    wide = metric_table(metrics)
    assert len(wide) == 1 and wide["bright pixels"].iloc[0] == pytest.approx(0.2)


def test_library_agreement_reports_the_largest_difference():
    metrics = pd.concat([rows([10.0, 20.0]), rows([10.0, 20.5], library="torch-fidelity")])
    table = library_agreement(metrics)
    assert table.loc[0, "sets"] == 2 and table.loc[0, "max_abs_difference"] == pytest.approx(0.5)
    assert table.loc[0, "max_relative_difference"] == pytest.approx(0.025)


def _claims(**columns):
    from diffrepro.claims import COLUMNS
    base = {c: [""] * 4 for c in COLUMNS}
    base.update(paper=["a", "b", "c", "d"], title=["w", "x", "y", "z"], text=["tw", "tx", "ty", "tz"],
                source=["s"] * 4, evidence=["e1", "e2", "e3", "e4"],
                verdict=["holds", "contradicted", "inconclusive", "not evaluated"],
                effect=[1.0, -2.0, 0.5, float("nan")], ci_low=[0.5, -3.0, -0.5, float("nan")],
                ci_high=[1.5, -1.0, 1.5, float("nan")], seeds=["3", "1", "1", ""], n_samples=["400"] * 3 + [""],
                paper_effect=[float("nan"), 2.35, float("nan"), float("nan")], needed=["", "", "≈ 9×", ""])
    base.update(columns)
    return pd.DataFrame(base)


def test_claims_front_marks_each_verdict_with_effect_and_interval():
    front = claims_front(_claims())
    assert list(front["verdict"]) == ["✅ holds", "❌ contradicted", "❔ inconclusive", "— not evaluated"]
    assert list(front["effect [95% CI]"]) == ["1 [0.5, 1.5]", "-2 [-3, -1]", "0.5 [-0.5, 1.5]", ""]
    assert list(front["seeds × samples"]) == ["3 × 400", "1 × 400", "1 × 400", ""]
    assert list(front["paper's effect"]) == ["", "2.35", "", ""] and front["to decide"][2] == "≈ 9×"
    assert list(front["claim"]) == ["w", "x", "y", "z"]  # titles; the long text goes to the paper's section


def test_job_times_count_busy_wall_time_once(tmp_path):
    def record(path, start, end, job):
        name = base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")
        (tmp_path / name).write_text(json.dumps({"starttime": start, "endtime": end, "job_hash": job}))

    record("results/quick/a.pt", 0.0, 10.0, 1)
    record("results/quick/b.pt", 5.0, 20.0, 2)  # overlaps a: parallel jobs
    record("results/quick/b.csv", 5.000001, 20.0, 2)  # a second output of the same job, stamped a moment later
    record("results/quick/c.pt", 100.0, 110.0, 3)  # after a gap: a resumed run
    record("results/smoke/d.pt", 0.0, 1000.0, 4)  # another scale: not counted
    busy, summed = job_times(tmp_path, ("results/quick/",))
    assert busy == pytest.approx(30.0) and summed == pytest.approx(35.0)


def test_sample_grid_tiles_the_first_images(tmp_path):
    images = np.random.default_rng(0).random((70, 1, 8, 8)).astype(np.float32)
    figures.sample_grid(images, tmp_path / "grid.png", 64, "t")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    figures.sample_grid(np.repeat(images, 3, axis=1), tmp_path / "rgb.png", 64, "CIFAR-10 layout")
    assert (tmp_path / "rgb.png").stat().st_size > 1000


def test_sample_grid_shows_the_best_set_that_has_samples(tmp_path):
    # a mis-scored row (fastai_fmnist's *_range_bug) has the lowest FID but no sample set of its own
    metrics = pd.concat([rows([30.0], sampler="euler", steps=50), rows([2.0], sampler="euler_range_bug", steps=50),
                         rows([40.0], sampler="heun", steps=20)])
    samples = tmp_path / "samples"
    for sampler, steps in [("euler", 50), ("heun", 20)]:
        folder = samples / "p" / "e" / "symmetric" / sampler / str(steps)
        folder.mkdir(parents=True)
        np.savez(folder / "seed0.npz", images=np.zeros((4, 1, 8, 8), np.float32))
    lines = sample_grids(Report(tmp_path / "report"), metrics, samples, "p")
    assert len(lines) == 1 and "euler 50 steps, FID 30.0" in lines[0]


def test_paper_section_lists_its_deviations_under_its_table_at_their_scales(tmp_path):
    rep = {"title": "T", "citation": "C", "reference": [], "deviations": [
        {"what": "a 1M-param UNet", "why": "a CPU budget", "effect": "higher FID", "scales": ["quick"]},
        {"what": "Fashion-MNIST, not CIFAR-10", "why": "no GPU needed", "effect": "FIDs not comparable\nin value"}]}
    metrics = rows([10.0, 12.0])
    from diffrepro.claims import COLUMNS
    claims = pd.DataFrame(columns=COLUMNS)

    def section(scale, deviations=rep["deviations"]):
        return paper_section(Report(tmp_path / scale), "p", {**rep, "deviations": deviations}, scale, claims, metrics,
                             figures.fid_rows(model_rows(metrics)), None, tmp_path / "samples", "replications/p.yaml")

    quick = section("quick")
    assert "Deviations from the paper at scale `quick` (`deviations:` in `replications/p.yaml`):" in quick
    assert quick.index("| experiment") < quick.index("Deviations") < quick.index("![p: FID vs NFE]")
    assert "- **a 1M-param UNet.** Why: a CPU budget. Expected effect: higher FID." in quick
    assert "- **Fashion-MNIST, not CIFAR-10.** Why: no GPU needed. Expected effect: FIDs not comparable in value." in quick
    smoke = section("smoke")  # the quick-only entry is left out; the every-scale one stays
    assert "1M-param" not in smoke and "**Fashion-MNIST, not CIFAR-10.**" in smoke
    assert "Deviations from the paper at scale `paper` (`deviations:` in `replications/p.yaml`): none." in section(
        "paper", rep["deviations"][:1])


def test_paper_table_shows_each_sets_interval_and_fid_infinity_next_to_its_fid():
    base = rows([10.0])
    extra = [{**base.iloc[0].to_dict(), "library": "diffrepro", "metric": m, "value": v}
             for m, v in (("fid_ci_low", 9.0), ("fid_ci_high", 11.5), ("fid_infinity", 8.25), ("kid", 0.01),
                          ("kid_ci_low", 0.005), ("kid_ci_high", 0.02))]
    metrics = pd.concat([base, pd.DataFrame(extra)], ignore_index=True)
    table = paper_table(metrics, metrics["paper"].iloc[0], [])
    fid_row = table[table["metric"] == "fid"].iloc[0]
    assert fid_row["95% CI (images)"] == "[9, 11.5]" and fid_row["FID∞"] == "8.25"
    kid_row = table[table["metric"] == "kid"].iloc[0]
    assert kid_row["95% CI (images)"] == "[0.005, 0.02]" and kid_row["library"] == "diffrepro"
    assert not set(table["metric"]) & {"fid_ci_low", "fid_infinity", "kid_ci_high"}


def test_html_report_files_each_figure_under_its_paper():
    """The figure pattern of the report rule splits <paper>__<what>.png at the paper's end, not at the
    last "__" (which made every sample grid a category of its own, captioned with one word)."""
    import re as regex

    from snakemake.io import regex_from_filepattern

    rule = (ROOT / "workflow" / "rules" / "report.smk").read_text()
    pattern = regex.search(r'patterns=\["(\{paper,[^"]+__\{figure\}\.png)"\]', rule).group(1)
    match = regex.compile(regex_from_filepattern(pattern)).match
    for name, paper, figure in [
        ("chen_2023__samples__noise__sched_cosine__b1__norm_on__res16__symmetric.png", "chen_2023",
         "samples__noise__sched_cosine__b1__norm_on__res16__symmetric"),
        ("karras_edm_2022__fid_vs_nfe.png", "karras_edm_2022", "fid_vs_nfe"),
        ("all__loss_curves.png", "all", "loss_curves"),
        ("tfree_fastai__noise_level_predictions__noise_level.png", "tfree_fastai", "noise_level_predictions__noise_level"),
    ]:
        found = match(name)
        assert found and (found["paper"], found["figure"]) == (paper, figure), name


def fid_plot_rows(samplers):
    """Plot rows of one model: {sampler: [(nfe, fid)]}, each with a +-2 interval."""
    return pd.DataFrame([{"experiment": "karras", "model": "karras [symmetric]", "sampler": name, "nfe": nfe,
                          "value": fid, "ci_low": fid - 2, "ci_high": fid + 2, "seed": 0}
                         for name, points in samplers.items() for nfe, fid in points])


def test_fid_vs_nfe_sets_the_range_bug_apart_and_draws_one_step_counts_as_points(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(figures, "fid_at_one_nfe", lambda rows, path, floor, title, note: seen.update(rows=rows, note=note))
    figures.fid_vs_nfe(fid_plot_rows({"euler": [(50, 26.0)], "heun": [(39, 26.5)], "euler_range_bug": [(50, 1.97)]}),
                       tmp_path / "one.png")
    assert set(seen["rows"]["sampler"]) == {"euler", "heun"}  # the bug row is not among the samplers
    assert "euler_range_bug scored with the course's image-range bug on purpose: FID 1.97" in seen["note"]
    seen.clear()
    figures.fid_vs_nfe(fid_plot_rows({"euler": [(9, 35.0), (19, 31.0)], "heun": [(9, 54.0), (19, 31.3)]}),
                       tmp_path / "lines.png")
    assert not seen and (tmp_path / "lines.png").stat().st_size > 10_000  # several step counts: lines


def test_fid_at_one_nfe_and_loss_curves_draw(tmp_path):
    figures.fid_at_one_nfe(fid_plot_rows({"euler": [(50, 26.0)], "heun": [(39, 26.5)]}), tmp_path / "points.png",
                           floor=1.4, title="t", note="n")
    losses = pd.DataFrame([{"paper": paper, "model": f"{paper} m{k}", "step": step, "loss": 1 / (step + k)}
                           for paper in ("a", "b", "c", "d") for k in range(3) for step in range(1, 40)])
    figures.loss_curves(losses, tmp_path / "losses.png")
    assert (tmp_path / "points.png").stat().st_size > 5_000 and (tmp_path / "losses.png").stat().st_size > 20_000


def test_protocol_columns_constant_over_a_table_are_said_once_above_it():
    from diffrepro.stages.report import split_constant_columns

    table = pd.DataFrame({"sampler": ["euler", "heun"], "metric": ["fid", "fid"], "library": ["clean-fid", "clean-fid"],
                          "samples": [400, 200], "ours": ["1", "2"]})
    shown, protocol = split_constant_columns(table)
    assert list(shown.columns) == ["sampler", "samples", "ours"]  # samples differ: they stay a column
    assert protocol == "Every row: metric fid, library clean-fid."


def test_claims_and_report_refuse_a_metrics_table_that_is_not_the_current_plans():
    from diffrepro.metrics_table import StaleResults, check_matches_plan

    def row(experiment, seed, digest, paper="p"):
        return {"paper": paper, "experiment": experiment, "input_scaling": "symmetric", "seed": seed, "config_hash": digest}

    table = pd.DataFrame([row("a", 0, "h1"), row("a", 0, "h1"), row("b", 1, "h2"), row("stage", 0, "x", "q")])
    plan = {"p/a/symmetric/0": "h1", "p/b/symmetric/1": "h2"}
    check_matches_plan(table, plan, "metrics.csv")  # the stage's own rows (q/stage) are not the plan's to check
    for expected, edited, says in [
        ({**plan, "p/c/symmetric/0": "h3"}, table, "has no rows of p/c/symmetric/0, which the current configuration samples"),
        (plan, pd.concat([table, pd.DataFrame([row("a", 2, "h9")])]), "has rows of p/a/symmetric/2, which the current "
                                                                       "configuration does not sample"),
        ({**plan, "p/a/symmetric/0": "new"}, table, "rows of p/a/symmetric/0 come from configuration h1, the current one is new"),
    ]:
        with pytest.raises(StaleResults) as err:
            check_matches_plan(edited, expected, "metrics.csv")
        assert says in str(err.value) and "\n" not in str(err.value) and "rerun snakemake" in str(err.value)


def test_a_plugin_figure_is_drawn_by_its_papers_code_in_its_papers_section(tmp_path):
    """A figure registered by a paper's rule file (register_plugin): the report imports its `draw`
    function, draws the registered input into <paper>__<name>.png and shows it with its caption."""
    points = np.random.default_rng(0).normal(size=(50, 2))
    np.savez(tmp_path / "roll.npz", samples=points, heldout=points + 1)
    from diffrepro.claims import COLUMNS
    metrics = rows([10.0])
    report = Report(tmp_path / "report")
    text = paper_section(report, "p", {"title": "T", "citation": "C", "reference": [], "deviations": []}, "quick",
                         pd.DataFrame(columns=COLUMNS), metrics, figures.fid_rows(model_rows(metrics)), None,
                         tmp_path / "samples", "replications/p.yaml",
                         plugin_figures=[{"paper": "p", "name": "swiss_roll", "input": str(tmp_path / "roll.npz"),
                                          "draw": "diffrepro.stages.swiss_roll:figure", "caption": "the roll"}])
    assert "![the roll](figures/p__swiss_roll.png)" in text
    assert (tmp_path / "report" / "figures" / "p__swiss_roll.png").stat().st_size > 5_000


def test_the_factor_figure_draws_a_sweep_against_its_axis_with_intervals(tmp_path):
    rep = {"experiments": {f"s__b{b}__res{r}": {"factors": {"b": b, "res": r}} for b in (0.5, 1.0) for r in (16, 32)}}
    fid = pd.DataFrame([{"paper": "p", "experiment": name, "steps": 25, "value": 50 + f["b"] * f["res"],
                         "ci_low": 48 + f["b"] * f["res"], "ci_high": 52 + f["b"] * f["res"], "seed": 0}
                        for name, e in rep["experiments"].items() for f in [e["factors"]]])
    from diffrepro.stages.report import factor_rows
    swept, factors = factor_rows(fid, "p", rep)
    assert len(swept) == 4 and factors == ["b", "res"]
    figures.fid_vs_factor(swept, "b", "res", factors, tmp_path / "b.png", floor=1.4, title="t")
    assert (tmp_path / "b.png").stat().st_size > 5_000

"""End to end: the smoke DAG runs in a fresh copy of the project and yields honest metrics."""

import math
import re
import subprocess
import sys

import pandas as pd
import pytest
from conftest import FMNIST_DEBIAN
from diffrepro.metrics_table import COLUMNS

pytestmark = pytest.mark.slow

# Output folders with a space and a quote: every path reaches the rules' shell commands quoted
OUT = "out dir's"
CONFIG = ["scale=smoke", f"results={OUT}/results", f"reports={OUT}/reports"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    if not (FMNIST_DEBIAN / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    from conftest import copy_project

    project = copy_project(tmp_path_factory.mktemp("smoke") / "project")
    before = {p.name for p in project.iterdir()}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", *CONFIG]
    run = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-4000:]
    # nothing written outside the configured folders (an unquoted path splits at its space)
    assert {p.name for p in project.iterdir()} - before <= {OUT, ".snakemake"}
    # finished trainings leave no checkpoint, nor (after the run) its empty folder
    assert not (project / OUT / "results" / "smoke" / "checkpoints").exists()
    return project / OUT


def test_metrics_have_both_libraries_for_every_sample_set(smoke_run):
    metrics = pd.read_csv(smoke_run / "results" / "smoke" / "metrics.csv")
    assert list(metrics.columns) == COLUMNS
    assert metrics["value"].map(math.isfinite).all()
    # every FID-scored sample set (other stages add rows such as bounds and reconstruction errors)
    models = metrics[(metrics["paper"] != "real_data") & metrics["metric"].isin(["fid", "kid"])]
    runs = models.groupby(["paper", "experiment", "input_scaling", "sampler", "steps", "seed"])
    assert runs.ngroups >= 3
    for key, rows in runs:
        got = set(zip(rows["library"], rows["metric"]))
        assert got >= {("torch-fidelity", "fid"), ("clean-fid", "fid"), ("torch-fidelity", "kid"),
                       ("clean-fid", "kid")}, key
    # and each of those sets carries its pixel sanity numbers (both fractions of the range)
    pixels = metrics[metrics["extractor"] == "pixels"]
    assert set(pixels["metric"]) == {"pixel_w1", "bright_fraction"} and pixels["value"].between(0, 1).all()
    scored = pixels[pixels["paper"] != "real_data"].groupby(["paper", "experiment", "input_scaling", "sampler",
                                                            "steps", "seed"])
    assert set(scored.groups) == set(runs.groups) and (scored.size() == 2).all()


def test_real_data_floor_is_far_below_models(smoke_run):
    metrics = pd.read_csv(smoke_run / "results" / "smoke" / "metrics.csv")
    fid = metrics[metrics["metric"] == "fid"]
    floor = fid[fid["paper"] == "real_data"]
    assert set(floor["library"]) == {"torch-fidelity", "clean-fid"}
    assert floor["value"].max() < 0.5 * fid[fid["paper"] != "real_data"]["value"].min()
    # both libraries compute FID on the same features: they must agree closely
    pair = floor.set_index("library")["value"]
    assert pair["torch-fidelity"] == pytest.approx(pair["clean-fid"], rel=0.02)


def test_claims_cover_every_paper(smoke_run):
    claims = pd.read_csv(smoke_run / "results" / "smoke" / "claims.csv", dtype={"verdict": str})
    metrics = pd.read_csv(smoke_run / "results" / "smoke" / "metrics.csv")
    assert set(claims["paper"]) == set(metrics["paper"]) - {"real_data"}
    assert set(claims["verdict"]) <= {"holds", "contradicted", "inconclusive", "not evaluated"}
    # FID claims that were evaluated carry an interval from the kept features
    fid = claims[(claims["metric"] == "fid") & (claims["verdict"] != "not evaluated")]
    assert len(fid) and (fid["ci_low"] <= fid["effect"]).all() and (fid["effect"] <= fid["ci_high"]).all()
    assert (fid["ci_high"] > fid["ci_low"]).all()


def test_report_and_html_report(smoke_run):
    report = smoke_run / "reports" / "smoke"
    readme = (report / "README.md").read_text()
    assert "torch-fidelity" in readme and "clean-fid" in readme and "test accuracy" in readme
    assert "Do the papers' claims hold" in readme and "Wall time with jobs running" in readme
    figures = {p.name for p in (report / "figures").glob("*.png")}
    for name in ("karras_edm_2022__fid_vs_nfe.png", "all__schedules_log_snr.png", "all__loss_curves.png",
                 "chen_2023__fid_vs_b.png", "sohl_dickstein_2015__swiss_roll.png",
                 "karras_edm_2022__fid_vs_training_images__edm__symmetric.png",
                 "karras_edm_2022__samples__edm__symmetric.png"):
        assert name in figures, sorted(figures)
    assert any(name.startswith("tfree_fastai__noise_level_predictions") for name in figures)
    linked = set(re.findall(r"\(figures/([^)]+)\)", readme))
    assert linked == figures  # every figure is shown, and every link resolves
    tables = {p.name for p in (report / "tables").glob("*.csv")}
    assert {"claims.csv", "library_agreement.csv", "metrics_table.csv", "karras_edm_2022.csv"} <= tables
    edm = pd.read_csv(report / "tables" / "karras_edm_2022.csv")
    assert edm["ours"].str.contains("±").any() and set(edm["seeds"]) == {1, 2}  # smoke replicates: seeds [0, 1]
    html = smoke_run / "report.html"
    r = subprocess.run([sys.executable, "-m", "snakemake", "--config", *CONFIG, "--report", str(html)],
                       cwd=smoke_run.parent, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert html.stat().st_size > 50_000
    assert "karras_edm_2022" in html.read_text(errors="replace")  # figures are filed under their paper


def test_rerun_has_nothing_to_do(smoke_run):
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", *CONFIG],
                       cwd=smoke_run.parent, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr

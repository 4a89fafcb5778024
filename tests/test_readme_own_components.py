"""The README's "Adding a sampler" and "Bringing your own network" examples, verbatim: a user's
`module:function` sampler and `module:Class` network are checked before any job (import, signature,
options) and run in the DAG like the library's own."""

import math
import re
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text()
SECTION = README.split("## Adding a sampler", 1)[1].split("\n## ", 1)[0]
NETWORK_BLOCK = re.search(r"```yaml\n(.*?)```", README.split("## Bringing your own network", 1)[1], re.S).group(1)
MODULE = re.search(r"```python\n(.*?)```", SECTION, re.S).group(1)
SAMPLERS_BLOCK = re.search(r"```yaml\n(.*?)```", SECTION, re.S).group(1)
REPLICATION = """paper: my_paper
title: a user's sampler
citation: "nobody 2026"
deviations: []
experiments:
  on_edm:
    description: "the README's midpoint sampler on EDM's network"
    model: karras_edm_2022/edm
    input_scalings: [symmetric]
"""
SET = "results/smoke/metrics/my_paper/on_edm/symmetric/midpoint/3/seed0.csv"


def write_example(project, samplers_block=SAMPLERS_BLOCK):
    (project / "replications" / "my_samplers.py").write_text(MODULE)
    (project / "replications" / "my_paper.yaml").write_text(REPLICATION + samplers_block)


def snakemake(project, *args):
    """Snakemake at smoke scale; its output (Snakemake writes a configuration error to stdout) in .out."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args, "--config", "scale=smoke"],
                         cwd=project, capture_output=True, text=True, timeout=900)
    run.out = run.stdout + run.stderr
    return run


def test_the_example_sampler_is_planned(project):
    write_example(project)
    run = snakemake(project, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "my_paper/on_edm/symmetric/midpoint/3/seed0" in run.stdout


@pytest.mark.parametrize("change,says", [
    (("my_samplers:midpoint", "my_sampler:midpoint"),
     "my_paper.yaml: experiments.on_edm.samplers.midpoint.name: cannot import my_sampler:midpoint"),
    (("grid: {spacing: edm}", "options: {final_eulr: false}, grid: {spacing: edm}"),
     "experiments.on_edm.samplers.midpoint.options.final_eulr: unknown option 'final_eulr' (allowed: final_euler)"),
    (("grid: {spacing: edm}", "options: {final_euler: 0.5}, grid: {spacing: edm}"),
     "experiments.on_edm.samplers.midpoint.options.final_euler: 0.5 is not true or false"),
])
def test_a_misspelt_sampler_is_one_line_before_any_job(project, change, says):
    write_example(project, SAMPLERS_BLOCK.replace(*change))
    run = snakemake(project, "-n")
    assert run.returncode != 0 and says in run.out, run.out[-3000:]
    assert "Traceback" not in run.out


def drawn_and_scored(project, target) -> tuple:
    """(clean-fid FID, the NFE values) of the sample set whose metrics file `target` Snakemake builds."""
    run = snakemake(project, target)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = pd.read_csv(project / target)
    return rows[(rows["metric"] == "fid") & (rows["library"] == "clean-fid")]["value"].item(), set(rows["nfe"])


def test_the_example_sampler_draws_and_scores_a_set_at_smoke_scale(project):
    write_example(project)
    fid, nfe = drawn_and_scored(project, SET)
    # 3 midpoint steps on the EDM grid: 2 evaluations a step but the last, counted, not declared
    assert math.isfinite(fid) and nfe == {5}


NETWORK_SET = "results/smoke/metrics/my_paper/diffusers_unet/symmetric/heun/3/seed0.csv"


def write_network_example(project, block=NETWORK_BLOCK):
    head = REPLICATION.split("  on_edm:")[0]
    (project / "replications" / "my_paper.yaml").write_text(head + block)


def test_the_example_network_is_planned_and_a_bad_argument_is_one_line(project):
    write_network_example(project)
    run = snakemake(project, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "my_paper/diffusers_unet/symmetric" in run.stdout
    write_network_example(project, NETWORK_BLOCK.replace("layers_per_block", "layers_per_blok"))
    run = snakemake(project, "-n")
    says = "my_paper.yaml: experiments.diffusers_unet.network: diffusers:UNet2DModel takes no argument(s) layers_per_blok"
    assert run.returncode != 0 and says in run.out and "Traceback" not in run.out, run.out[-3000:]


def test_the_example_network_trains_samples_and_scores_at_smoke_scale(project):
    write_network_example(project)
    fid, nfe = drawn_and_scored(project, NETWORK_SET)
    assert math.isfinite(fid) and nfe == {5}  # Heun, 3 steps: 2 evaluations a step but the last

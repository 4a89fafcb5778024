"""Every command the README shows works as written in a fresh copy of the project.

Each command found in the README (inline code or a shell block) must have an entry in CHECKS: the
command line actually run in the copy, with only flags added that make a long command a dry run
(Snakemake's -n, the benchmarks' --quick/--tiny). A command added to the README without an entry
fails test_every_readme_command_has_a_check. Bare `snakemake` runs with the venv's bin first on
PATH, as after `. .venv/bin/activate`, which the README asks for.
"""

import os
import re
import subprocess

import pytest

from conftest import ROOT, copy_project

README = (ROOT / "README.md").read_text()
PAPER = ["--config", "scale=paper", "inception_weights=staged/pt_inception-2015-12-05-6726825d.pth",
         "cifar10_root=staged/cifar-10-python.tar.gz"]

# README command -> what runs (None: covered by the test named in COVERED_ELSEWHERE)
CHECKS = {
    "make run": ["make", "run", "SNAKEMAKE_ARGS=-n"],
    "make test": ["make", "-n", "test"],  # the suite it starts is the one running this test
    "make run SCALE=smoke": ["make", "run", "SCALE=smoke", "SNAKEMAKE_ARGS=-n"],
    'make run SNAKEMAKE_ARGS="--rerun-incomplete"': ["make", "run", "SNAKEMAKE_ARGS=--rerun-incomplete -n"],
    ".venv/bin/snakemake --cores all --config scale=smoke": [".venv/bin/snakemake", "--cores", "all", "--config",
                                                             "scale=smoke", "-n"],
    "make status": ["make", "status"],
    "snakemake --cores all": ["snakemake", "--cores", "all", "-n"],
    "snakemake -n --cores all": ["snakemake", "-n", "--cores", "all"],
    "make clean-results SCALE=quick": ["make", "clean-results", "SCALE=quick"],
    "make lint": ["make", "lint"],
    "snakemake --lint": ["snakemake", "--lint"],
    "make bench": ["make", "bench", "BENCH_ARGS=--quick"],
    "make bench BENCH_ARGS=--bf16": ["make", "bench", "BENCH_ARGS=--bf16 --quick"],
    "make gpu-check": ["make", "gpu-check", "ARGS=--tiny"],
    "make report": ["make", "-n", "report"],
    "snakemake --report reports/<scale>/report.html --config scale=<scale>": None,
    ".venv/bin/python -m diffrepro score PATH": None,
    ".venv/bin/snakemake --profile workflow/profiles/slurm --config scale=paper": [
        ".venv/bin/snakemake", "--profile", "workflow/profiles/slurm", "-n", *PAPER],
}
COVERED_ELSEWHERE = {
    # needs a finished run's results: the smoke end-to-end test builds the HTML report this way
    "snakemake --report reports/<scale>/report.html --config scale=<scale>":
        ("test_workflow_smoke.py", "test_report_and_html_report"),
    # PATH stands for the user's images: scored from an .npy and a PNG folder against a built reference
    ".venv/bin/python -m diffrepro score PATH":
        ("test_metrics.py", "test_score_command_rates_user_images_as_the_evaluate_stage_rates_a_set"),
}


def readme_commands() -> set:
    inline = re.findall(r"`((?:make|snakemake|\.venv/bin/\w+)(?: [^`]*)?)`", README)
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    in_blocks = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return {c.strip() for c in inline + in_blocks if c.strip() and c.strip() != "make"}


def test_every_readme_command_has_a_check():
    assert readme_commands() == set(CHECKS), "README commands without a check (or checks of removed commands)"
    for command, (test_file, test_name) in COVERED_ELSEWHERE.items():
        assert CHECKS[command] is None and f"def {test_name}(" in (ROOT / "tests" / test_file).read_text()


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory):
    """A copy of the tracked files with this checkout's venv linked in (make's stamp keeps it from
    being rebuilt) and the stand-in files the paper scale checks for at parse time."""
    copy = copy_project(tmp_path_factory.mktemp("readme") / "project")
    (copy / ".venv").symlink_to(ROOT / ".venv")
    staged = copy / "staged"
    staged.mkdir()
    for name in ("pt_inception-2015-12-05-6726825d.pth", "cifar-10-python.tar.gz"):
        (staged / name).touch()
    return copy


@pytest.mark.parametrize("command", sorted(c for c, run in CHECKS.items() if run is not None))
def test_readme_command_runs_as_written(fresh_copy, command):
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    r = subprocess.run(CHECKS[command], cwd=fresh_copy, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{command}: {r.stdout[-2000:]}\n{r.stderr[-3000:]}"


SHORTENING = {"-n", "SNAKEMAKE_ARGS=-n", "SNAKEMAKE_ARGS=--rerun-incomplete -n", "BENCH_ARGS=--quick",
              "BENCH_ARGS=--bf16 --quick", "ARGS=--tiny", *PAPER[2:]}


def test_checks_only_add_dry_run_flags():
    """Each check is its README command plus flags that shorten it (or stand-in paths), nothing else."""
    for command, run in CHECKS.items():
        if run is not None:
            written = command.replace('"', "").split()
            assert {a for a in run if a not in written} <= SHORTENING, command

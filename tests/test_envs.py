"""The pinned requirement sets and the conda environment stay in sync."""

import re
from pathlib import Path

import yaml

ENVS = Path(__file__).resolve().parents[1] / "envs"


def _pins(path):
    lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    return dict(ln.split("==") for ln in lines if ln)


def test_conda_environment_matches_requirements():
    pins = {**_pins(ENVS / "requirements.txt"), **_pins(ENVS / "requirements-test.txt")}
    env = yaml.safe_load((ENVS / "environment.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = dict(p.split("==") for p in pip if "==" in p)
    assert conda_pins == pins
    assert all(re.fullmatch(r"[\w.+-]+", v) for v in pins.values())

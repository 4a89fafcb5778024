"""`make gpu-check`'s script runs end to end at --tiny sizes on the CPU and writes its one CSV."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist")
COLUMNS = ["part", "item", "setting", "quantity", "value", "unit", "reference", "note"]
SETTINGS = {"all off", "bf16", "tf32", "channels_last", "compile", "all on"}


@pytest.mark.skipif(not (FMNIST / "train-images-idx3-ubyte.gz").exists(), reason="needs Debian's dataset-fashion-mnist")
def test_tiny_gpu_check_writes_every_part(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--device", "cpu",
                          "--threads", "1", "--data", str(FMNIST), "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("device: CPU, 1 threads")
    with open(tmp_path / "gpu_check.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    assert {r["part"] for r in rows} == {"a", "b", "c"}
    throughput = [r for r in rows if r["part"] == "a" and r["quantity"].startswith("train images/s")]
    networks = {r["item"] for r in throughput}
    assert networks == {"course FMNIST UNet", "DDPM CIFAR-10 UNet", "EDM CIFAR-10 UNet"}
    for network in networks:  # every setting measured (no cap hit at tiny sizes), every figure positive
        assert {r["setting"] for r in throughput if r["item"] == network} == SETTINGS
    for r in rows:
        if r["part"] == "a" and r["unit"] in ("images/s", "NFE/s", "%", "TFLOP/s"):
            assert float(r["value"]) > 0, r
    fids = [r for r in rows if r["quantity"].startswith("FID")]
    assert {r["quantity"] for r in fids} == {"FID (torch-fidelity)", "FID (clean-fid)"}
    assert all(float(r["value"]) >= 0 and r["reference"].startswith("3.29") for r in fids)
    assert any(r["quantity"] == "test accuracy" for r in rows)

"""`make bench`'s script runs end to end (--quick sizes) and prints its one table."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("matmul peak float32", "parameters (M)", "train images/s", "train GFLOP per image", "train GFLOP/s",
        "train % of float32 matmul peak", "sampling NFE/s", "FID features images/s")
MACHINE_ROWS = ("matmul peak", "FID features")  # one figure, no diffusers counterpart


def test_quick_bench_prints_every_row_for_ours_and_diffusers():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_throughput.py"), "--quick", "--threads", "1",
                          "--device", "cpu"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("device: CPU, 1 threads")
    assert lines[1].split() == ["quantity", "ours", "diffusers", "ours/diffusers"]
    assert set(lines[2]) == {"-", " "}
    rows = {}
    for line in lines[3:]:
        label, ours, theirs, ratio = re.fullmatch(r"(.+?)\s{2,}(\S+)\s+(\S+)\s+(\S+)", line).groups()
        rows[label] = (ours, theirs, ratio)
    assert len(rows) == len(ROWS) and all(any(label.startswith(r) for label in rows) for r in ROWS), list(rows)
    for label, (ours, theirs, ratio) in rows.items():
        assert float(ours.replace(",", "")) > 0, label
        if label.startswith(MACHINE_ROWS):
            assert theirs == ratio == "-", label
        else:
            assert float(theirs.replace(",", "")) > 0 and float(ratio) > 0, label
    # the diffusers network is sized like ours
    assert rows["parameters (M)"][2] == "1.00"

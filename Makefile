# make run  — set up .venv, get Fashion-MNIST, run the whole DAG (default scale: quick)
# make test — set up .venv, get Fashion-MNIST, run the test suite (includes a smoke DAG run)
# make bench — print matmul peak, training/sampling throughput of our UNet vs diffusers', FID features/s
# make gpu-check — the prepared GPU check (docs/gpu.md): paper-scale throughput + the course's cosine-model FID
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= all
SCALE  ?=
SNAKEMAKE_ARGS ?=
BENCH_ARGS ?=
ARGS ?=
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
# rules call `python`: make it the venv's
export PATH := $(abspath $(BIN)):$(PATH)
# With an NVIDIA GPU, the default profile lets GPU jobs take turns on it (resources gpu: 1) instead of
# all starting at once; on a CPU-only machine those jobs run side by side on the cores.
PROFILE_ARGS := $(if $(shell command -v nvidia-smi 2>/dev/null),--workflow-profile workflow/profiles/default)

.PHONY: run test smoke report lint bench gpu-check data clean-venv clean-results status

run: $(STAMP) data
	$(BIN)/snakemake --cores $(CORES) --show-failed-logs $(PROFILE_ARGS) $(if $(SCALE),--config scale=$(SCALE)) $(SNAKEMAKE_ARGS)

# In a second terminal during `make run`: the last line (progress bar or message) of each job log
# written in the past minute
status:
	@find results -name '*.log' -mmin -1 2>/dev/null | sort | while read -r log; do \
	  printf '%s: %s\n' "$$log" "$$(tail -c 300 "$$log" | tr '\r' '\n' | grep -v '^$$' | tail -n 1)"; done

test: $(STAMP) data
	$(BIN)/python -m pytest -q

smoke:
	$(MAKE) run SCALE=smoke

report: $(STAMP)
	$(BIN)/snakemake --report reports/$(or $(SCALE),quick)/report.html $(if $(SCALE),--config scale=$(SCALE))

lint: $(STAMP)
	$(BIN)/snakemake --lint

# PYTHONPATH: this checkout's library, whatever the venv's editable install points at
bench: $(STAMP)
	PYTHONPATH=workflow $(BIN)/python benchmarks/bench_throughput.py $(BENCH_ARGS)

# ARGS: e.g. ARGS="--tiny" or ARGS="--data gpu_pack/fashion-mnist --out gpu_out"
gpu-check: $(STAMP)
	PYTHONPATH=workflow $(BIN)/python benchmarks/gpu_check.py $(ARGS)

$(STAMP): envs/requirements.txt envs/requirements-test.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r envs/requirements.txt -r envs/requirements-test.txt
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $@

# Fashion-MNIST from Debian's package when apt is usable; otherwise the workflow's data rule
# finds it under data_root or downloads it from the canonical source (SHA-256 verified).
data:
	@if [ ! -e $(FMNIST) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist)) \
	  || echo "note: apt could not install dataset-fashion-mnist; the workflow will download Fashion-MNIST"; fi

clean-venv:
	rm -rf $(VENV)

# What killed or finished runs left under results/<SCALE> that no rule reads (unfinished writes,
# empty folders; ARGS=--checkpoints: stopped trainings' resume points too). Results are never touched.
clean-results: $(STAMP)
	PYTHONPATH=workflow $(BIN)/python -m diffrepro.leftovers results/$(or $(SCALE),quick) $(ARGS)

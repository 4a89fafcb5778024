#!/usr/bin/env bash
# Gather into gpu_pack/ (git-ignored) what a bare GPU host needs for `benchmarks/gpu_check.py`
# (docs/gpu.md): wheels it lacks for Python 3.12 / manylinux x86_64, the four Fashion-MNIST .gz
# files and this checkout's library, benchmarks and configs. The host has torch (with CUDA),
# numpy, pandas, seaborn, scipy and pyyaml; it has no network, and one transfer holds <= 64 MiB.
# Usage: benchmarks/pack_gpu_host.sh [PACK_DIR]   (PyPI must be reachable from here)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PACK="${1:-$ROOT/gpu_pack}"
FMNIST="${FMNIST:-/usr/share/datasets/fashion-mnist}"
PIP="${PIP:-$ROOT/.venv/bin/pip}"
LIMIT_MIB=64
# Pins from envs/requirements.txt where they exist. torchvision must match the host's torch 2.11
# (torchvision 0.26); torch-fidelity and clean-fid import it. Everything else: what those two,
# diffrepro.config (jsonschema) and diffrepro.training (tqdm) import that the host lacks.
WHEELS=(
  torch-fidelity==0.4.0 clean-fid==0.1.35 torchvision==0.26.0
  jsonschema==4.26.0 jsonschema-specifications referencing rpds-py attrs typing-extensions
  tqdm==4.70.1 pillow requests urllib3 idna charset-normalizer certifi
)

rm -rf "$PACK"
mkdir -p "$PACK/wheels" "$PACK/fashion-mnist" "$PACK/repo"
for wheel in "${WHEELS[@]}"; do
  "$PIP" download --quiet --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any --no-deps --dest "$PACK/wheels" "$wheel"
done
cp "$FMNIST"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$PACK/fashion-mnist/"
# the library, its schemas and config, the replications and the two benchmark scripts
(cd "$ROOT" && tar -cf - --exclude=__pycache__ workflow/diffrepro workflow/schemas workflow/config.yaml replications \
   benchmarks/gpu_check.py benchmarks/bench_throughput.py) | tar -xf - -C "$PACK/repo"

size_kib=$(du -sk "$PACK" | cut -f1)
echo "gathered in $PACK:"
(cd "$PACK" && find . -type f \( -name '*.whl' -o -name '*.gz' \) -printf '  %-70p %8s bytes\n' | sort)
echo "  repo/: $(find "$PACK/repo" -type f | wc -l) files"
echo "total: $((size_kib / 1024)) MiB ($size_kib KiB; limit $LIMIT_MIB MiB)"
if (( size_kib > LIMIT_MIB * 1024 )); then
  echo "error: $PACK is over $LIMIT_MIB MiB" >&2
  exit 1
fi
cat <<MSG
on the host, with gpu_pack/ copied into the working directory:
  python3.12 -m pip install --no-index --find-links gpu_pack/wheels torch-fidelity clean-fid jsonschema tqdm && cd gpu_pack/repo && PYTHONPATH=workflow timeout 600 python3.12 benchmarks/gpu_check.py --data ../fashion-mnist --out ../gpu_check_out
MSG

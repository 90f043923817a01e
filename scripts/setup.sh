#!/usr/bin/env bash
# Set up bench_pipeline in ./.venv on a fresh machine (idempotent: a second run installs nothing new).
#
#   EXTRAS      optional dependency groups (default: cpu,tensorrt-rtx,test on a machine without
#               an NVIDIA GPU, gpu,test with one)
#   TORCH_SPEC  the torch to install when none is importable (default torch==2.13.0, the CPU build
#               on our CPU machines). A torch already in the environment is kept: GPU users keep
#               their CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
export KEDRO_DISABLE_TELEMETRY=1

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  default_extras="gpu,test"
else
  default_extras="cpu,tensorrt-rtx,test"
fi
EXTRAS="${EXTRAS:-$default_extras}"

python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install -q -e ".[${EXTRAS}]"
echo "bench_pipeline is set up in ${VIRTUAL_ENV} (extras: ${EXTRAS}, $(python -c 'import torch; print("torch", torch.__version__)'))"

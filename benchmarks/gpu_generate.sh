#!/usr/bin/env bash
# The generation must-show on a lent H200 (torch+CUDA there; kedro/mlflow as wheels in /tmp/site):
#   OUT=... bash benchmarks/gpu_generate.sh [MODELS...]   default: gpt2 llama-250m, one `kedro run` each
# For each model: `kedro run --pipelines=generate --env gpu_generate` (conf/gpu_generate), its wall time, and
# $OUT/<model>/{results.csv,report.md,figures/,run.log,environment.json,generation_table.md}; then $OUT/generation_table.md.
# EXTRA_PARAMS (kedro --params syntax, e.g. "benchmark.grid.batch_sizes=1 32") narrows the grid to fit a budget;
# PER_MODEL_TIMEOUT_S (default 540) stops one model's run (the journal keeps its finished cells for a rerun).
set -uo pipefail
export PYTHONPATH=/tmp/site:${PYTHONPATH:-} KEDRO_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-data/gpu_generate}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, onnxruntime as ort; print(torch.__version__, torch.version.cuda, transformers.__version__, ort.__version__, ort.get_available_providers())" | tee -a "$OUT/gpu.txt"
tables=()
for model in "${@:-gpt2 llama-250m}"; do
  for m in $model; do
    mkdir -p "$OUT/$m"; rm -rf data/08_reporting/results.csv data/08_reporting/figures  # nothing left from the previous model
    start=$(date +%s)
    timeout "${PER_MODEL_TIMEOUT_S:-540}" python3 -m kedro run --pipelines=generate --env gpu_generate \
      --params "benchmark.model.name=$m${EXTRA_PARAMS:+,$EXTRA_PARAMS}" > "$OUT/$m/run.log" 2>&1
    echo "model $m: exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/wall_times.txt"
    cp data/08_reporting/results.csv data/08_reporting/report.md data/08_reporting/environment.json "$OUT/$m/" 2>/dev/null
    cp -r data/08_reporting/figures "$OUT/$m/" 2>/dev/null
    if [ -f "$OUT/$m/results.csv" ]; then
      tables+=("$OUT/$m/results.csv")
      python3 benchmarks/generation_table.py "$OUT/$m/results.csv" > "$OUT/$m/generation_table.md"
    else
      tail -20 "$OUT/$m/run.log"
    fi
  done
done
[ ${#tables[@]} -gt 0 ] && python3 benchmarks/generation_table.py "${tables[@]}" | tee "$OUT/generation_table.md"

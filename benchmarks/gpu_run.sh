#!/usr/bin/env bash
# The GPU benchmark as run on a lent H100/H200 (the machine has torch+CUDA but no kedro/mlflow/
# onnxruntime-gpu/TensorRT-RTX: those come as wheels in /tmp/site, see README "Run on a GPU").
#   benchmarks/gpu_run.sh start [ENV]  run `kedro run --pipelines=benchmark --env ENV` (default gpu) in the background
#   benchmarks/gpu_run.sh status   print progress; when done, pack the results into $OUT
set -uo pipefail
export PYTHONPATH=/tmp/site:${PYTHONPATH:-} KEDRO_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
log=data/gpu_run.log
case "${1:-status}" in
  start)
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import torch, onnxruntime as ort, kedro, mlflow; print(torch.__version__, torch.version.cuda, ort.__version__, ort.get_available_providers(), kedro.__version__, mlflow.__version__)"
    setsid nohup bash -c "python3 -m kedro run --pipelines=benchmark --env ${2:-gpu} > $log 2>&1; echo EXIT=\$? >> $log" >/dev/null 2>&1 < /dev/null &
    sleep 5; tail -5 "$log";;
  status)
    grep -E "Running node|Completed [0-9]+ out|cells done|reused|EXIT=|Error" "$log" | tail -25
    if grep -q "EXIT=" "$log"; then
      tar czf "$OUT/gpu_results.tgz" --ignore-failed-read data/08_reporting data/07_model_output data/gpu_run.log \
        data/06_models/*.json mlflow.db
      cp "$log" "$OUT/"
    fi;;
esac

#!/usr/bin/env bash
# One lent H200 session's must-show runs, back to back in the background (the device tool allows 10 minutes
# a call and 30 minutes a session, so the runs go on between calls and each `status` call brings back
# what has finished). Needs the wheels in /tmp/site (README "Run on a GPU").
#   benchmarks/gpu_session.sh start [JOB...]   jobs, in order (default: fanout deberta precisions generate)
#   benchmarks/gpu_session.sh status           progress; copies each finished job's <job>.tgz into $OUT
# Jobs (each under its own timeout; a job that fails or times out leaves its log and what it measured):
#   deberta     issue 11: benchmarks/gpu_deberta.py base (ORT CUDA / CUDA-graph FP16 on DeBERTa-v3-base's shape)
#   fanout      issue 13: the eager BERT-base sweep at seq 128 plainly, with one Dask GPU worker, plainly again
#               (~5.5 min); fanout_compare.py of the fan-out against each plain run and of the two plain runs,
#               so the fan-out's difference stands beside the host's own between two plain runs
#   precisions  issue 15: --env gpu_precisions, then precision_table.py
#   precisions-32x512  the same at 32x512 alone: the shape the 2026-12-02 session's sweep did not reach (the
#               table then joins two sweeps, each cell's ratios from its own)
#   generate    issue 14: benchmarks/gpu_generate.sh $GENERATE_MODELS (default: gpt2 llama-250m; ~10-15 min each
#               with ORT FP32 and FP16, a guess from GPT-2's batch 1 taking 5 min on 2026-12-02)
#   sweep       issue 10: the default `--env gpu` sweep (~20 min), then fidelity.py on every ok cell
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD/src:${PYTHONPATH:-} KEDRO_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
root=data/gpu_session
FANOUT_PARAMS='benchmark.resume=false,benchmark.grid.sequence_lengths=[128],benchmark.backends.dynamo.enabled=false,benchmark.backends.onnxruntime.enabled=false,benchmark.backends.tensorrt.enabled=false'

keep_reporting() {  # the pipeline's outputs of the job just run, into its folder
  cp -r data/08_reporting "$1/reporting" 2>/dev/null
  cp data/06_models/*.json "$1/" 2>/dev/null
  true
}

timed() {  # timed SECONDS LABEL DIR COMMAND...: run under a timeout, note exit status and wall time
  local limit=$1 label=$2 dir=$3; shift 3
  local start; start=$(date +%s)
  timeout "$limit" "$@" >> "$dir/run.log" 2>&1
  echo "$label: exit $? after $(( $(date +%s) - start )) s" | tee -a "$dir/wall_times.txt"
}

job() {
  local name=$1 dir=$root/$1
  mkdir -p "$dir"
  rm -f data/08_reporting/results.*  # a job whose run dies must not pick up the job before's table
  echo "== $name started $(date -u +%T)" >> "$root/progress.txt"
  case "$name" in
    deberta)
      timed 420 "gpu_deberta base" "$dir" python3 benchmarks/gpu_deberta.py base
      keep_reporting "$dir";;
    fanout)
      timed 300 plain "$dir" python3 -m kedro run --pipelines=benchmark --env gpu --params "$FANOUT_PARAMS"
      cp data/08_reporting/results.csv "$dir/plain.csv"
      timed 360 fanout "$dir" python3 -m kedro run --pipelines=benchmark --env gpu \
        --params "$FANOUT_PARAMS,benchmark.scale.gpus=1,benchmark.scale.cpu_workers=0"
      cp data/08_reporting/results.csv "$dir/fanout.csv"
      keep_reporting "$dir"
      timed 300 plain2 "$dir" python3 -m kedro run --pipelines=benchmark --env gpu --params "$FANOUT_PARAMS"
      cp data/08_reporting/results.csv "$dir/plain2.csv"
      for pair in "plain fanout" "plain2 fanout" "plain plain2"; do
        set -- $pair
        timed 60 "compare $1 $2" "$dir" python3 benchmarks/fanout_compare.py "$dir/$1.csv" "$dir/$2.csv" "$dir/$1_vs_$2"
      done;;
    precisions)
      timed 900 "gpu_precisions" "$dir" python3 -m kedro run --pipelines=benchmark --env gpu_precisions
      keep_reporting "$dir"
      timed 60 table "$dir" python3 benchmarks/precision_table.py --out "$dir/table";;
    precisions-32x512)
      timed 600 "gpu_precisions 32x512" "$dir" python3 -m kedro run --pipelines=benchmark --env gpu_precisions \
        --params "benchmark.grid.batch_sizes=[32],benchmark.grid.sequence_lengths=[512]"
      keep_reporting "$dir"
      timed 60 table "$dir" python3 benchmarks/precision_table.py --out "$dir/table" --results \
        data/08_reporting/results.parquet benchmarks/results/2026-12-02-h200-session/precisions/results.csv;;
    generate)
      # shellcheck disable=SC2086  # the model names are words
      OUT=$dir PER_MODEL_TIMEOUT_S=900 timed 1800 generate "$dir" bash benchmarks/gpu_generate.sh \
        ${GENERATE_MODELS:-gpt2 llama-250m};;
    sweep)
      timed 1500 "gpu sweep" "$dir" python3 -m kedro run --pipelines=benchmark --env gpu
      keep_reporting "$dir"
      timed 600 fidelity "$dir" python3 benchmarks/fidelity.py --all --warmup 20 --calls 50 --repeats 3 \
        --out "$dir/fidelity";;
    *) echo "unknown job $name; allowed: deberta fanout precisions precisions-32x512 generate sweep" >> "$root/progress.txt";;
  esac
  cp "$dir/wall_times.txt" "$root/$name.wall" 2>/dev/null
  echo "== $name done $(date -u +%T)" >> "$root/progress.txt"
}

case "${1:-status}" in
  start)
    shift
    mkdir -p "$root"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv | tee "$root/gpu.txt"
    python3 -c "import torch, transformers, onnxruntime as ort, kedro, mlflow, dask; print(torch.__version__, torch.version.cuda, transformers.__version__, ort.__version__, ort.get_available_providers(), kedro.__version__, mlflow.__version__, dask.__version__)" | tee -a "$root/gpu.txt"
    jobs=("${@:-fanout deberta precisions generate}")
    setsid nohup bash -c "for j in ${jobs[*]}; do bash $0 job \$j; done; echo ALL-DONE >> $root/progress.txt" \
      > "$root/session.log" 2>&1 < /dev/null &
    sleep 2; cat "$root/progress.txt";;
  job) job "$2";;
  status)
    cat "$root/progress.txt"; cat "$root"/*.wall 2>/dev/null
    for dir in "$root"/*/; do
      name=$(basename "$dir")
      if grep -q "== $name done" "$root/progress.txt"; then
        tar czf "$OUT/$name.tgz" -C "$root" "$name"
      else
        tail -3 "$dir/run.log" 2>/dev/null
      fi
    done
    cp "$root/progress.txt" "$root/gpu.txt" "$OUT/" 2>/dev/null; true;;
esac

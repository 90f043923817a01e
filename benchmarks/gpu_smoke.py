"""A two-minute GPU check of the measurement path (not a benchmark): eager FP16 and ORT CUDA-graph
FP16 on BERT-base over two cells, then the columns that only a GPU fills.
Run on the GPU machine: python3 benchmarks/gpu_smoke.py"""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

config = yaml.safe_load(Path("conf/gpu/parameters_benchmark.yml").read_text())
benchmark = config["benchmark"]
benchmark["grid"] = {"batch_sizes": [1, 8], "sequence_lengths": [128]}
benchmark["precisions"] = ["fp16"]
benchmark["timing"] |= {"min_time_s": 0.3, "min_iters": 20}
benchmark["backends"] = {
    "eager": {"variants": [{"name": "default"}]},
    "onnxruntime": {"variants": [{"name": "cuda-graph", "options": {"provider": "cuda", "fused": True, "cuda_graph": True}}]},
}
Path("conf/gpu_smoke").mkdir(exist_ok=True)
Path("conf/gpu_smoke/parameters_benchmark.yml").write_text(yaml.safe_dump(config))
run = subprocess.run([sys.executable, "-m", "kedro", "run", "--pipeline=benchmark", "--env", "gpu_smoke"],
                     capture_output=True, text=True, env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "1"})
print(run.stdout[-1500:], run.stderr[-3000:])
results = pd.read_parquet("data/08_reporting/results.parquet")
pd.set_option("display.width", 250)
print(results[["backend", "variant", "batch", "seq", "status", "reason", "p50_ms", "peak_mem_mb", "gpu_warnings", "extra"]]
      .assign(extra=results.extra.str.slice(0, 160)).to_string())

"""Two-minute GPU checks on BERT-base (not benchmarks), run on the GPU machine:
  python3 benchmarks/gpu_smoke.py        eager FP16 and ORT CUDA-graph FP16 over two cells: the columns only a GPU fills
  python3 benchmarks/gpu_smoke.py tf32   ORT CUDA FP32 at 32x512 with and without TF32, beside eager FP32"""

import sys
from pathlib import Path

import yaml

from kedro_env import run_benchmark

config = yaml.safe_load(Path("conf/gpu/parameters_benchmark.yml").read_text())
benchmark = config["benchmark"]
benchmark["timing"] |= {"min_time_s": 0.3, "min_iters": 20}
if sys.argv[1:] == ["tf32"]:
    benchmark["grid"] = {"batch_sizes": [32], "sequence_lengths": [512]}
    benchmark["precisions"] = ["fp32", "tf32"]
    benchmark["backends"] = {
        "eager": {"variants": [{"name": "default"}]},
        "onnxruntime": {"variants": [{"name": "cuda", "options": {"provider": "cuda"}}]},
    }
else:
    benchmark["grid"] = {"batch_sizes": [1, 8], "sequence_lengths": [128]}
    benchmark["precisions"] = ["fp16"]
    benchmark["backends"] = {
        "eager": {"variants": [{"name": "default"}]},
        "onnxruntime": {"variants": [
            {"name": "cuda-graph", "options": {"provider": "cuda", "fused": True, "cuda_graph": True}},
        ]},
    }
results = run_benchmark("gpu_smoke", config)
print(results[["backend", "variant", "precision", "batch", "seq", "status", "p50_ms", "cosine", "max_abs",
               "peak_mem_mb", "gpu_warnings", "extra"]].assign(extra=results.extra.str.slice(0, 120)).to_string())

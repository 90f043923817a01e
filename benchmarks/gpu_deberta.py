"""DeBERTa-v2 on ONNX Runtime's CUDA EP in FP16 (issue 11, item 4), run on the GPU machine:
  python3 benchmarks/gpu_deberta.py        tiny random DeBERTa-v2 (hidden 32, 2 layers): the path, in a minute or two
  python3 benchmarks/gpu_deberta.py base   DeBERTa-v3-base's shape (hidden 768, 12 layers), random weights:
                                           real latencies

ONNX Runtime's transformer optimizer has no ``deberta-v2`` model type: its generic ``bert``
fusions fuse the LayerNorms and Gelus and not the disentangled attention, and the FP16 graph is
ONNX Runtime's float16 conversion of that. The script saves the model with ``save_pretrained``
(into data/01_raw/), writes a Kedro environment conf/gpu_deberta/ (eager reference, ORT CUDA and
CUDA-graph variants, FP32 and FP16), runs the benchmark pipeline and prints each cell's status,
parity and the fusion counts; it exits 1 unless every ORT FP16 cell is ``ok``.
"""

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml
from transformers import DebertaV2Config, DebertaV2Model

from kedro_env import run_benchmark

PRESET_TOKENIZER = Path("src/bench_pipeline/resources/tokenizer")  # the presets' WordPiece tokenizer

SIZES = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
# DeBERTa-v3's attention: relative positions in buckets, shared keys, no absolute position embeddings
DEBERTA_V3 = dict(vocab_size=128100, max_position_embeddings=512, relative_attention=True, pos_att_type=["p2c", "c2p"],
                  position_buckets=256, max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True,
                  position_biased_input=False, type_vocab_size=0, hidden_act="gelu")

size = sys.argv[1] if sys.argv[1:] else "tiny"
if size not in SIZES:
    sys.exit(f"unknown size {size!r}; allowed: {list(SIZES)}")
model_dir = Path(f"data/01_raw/deberta-v2-{size}").resolve()
if not (model_dir / "model.safetensors").is_file():
    torch.manual_seed(0)
    DebertaV2Model(DebertaV2Config(**DEBERTA_V3, **SIZES[size])).save_pretrained(model_dir)
    for tokenizer_file in PRESET_TOKENIZER.iterdir():  # WordPiece ids all fit the 128100 vocabulary
        shutil.copy(tokenizer_file, model_dir / tokenizer_file.name)

config = yaml.safe_load(Path("conf/gpu/parameters_benchmark.yml").read_text())
benchmark = config["benchmark"]
benchmark["model"] = {"source": "local", "name": str(model_dir)}
benchmark["grid"] = {"batch_sizes": [1, 8], "sequence_lengths": [128, 512]}
benchmark["precisions"] = ["fp32", "fp16"]
benchmark["timing"] |= {"min_time_s": 0.3, "min_iters": 20}
benchmark["backends"] = {
    "eager": {"variants": [{"name": "default"}]},
    "onnxruntime": {"variants": [
        {"name": "cuda", "options": {"provider": "cuda"}},
        {"name": "cuda-graph", "options": {"provider": "cuda", "fused": True, "cuda_graph": True}},
    ]},
}
results = run_benchmark("gpu_deberta", config)
results["fusions"] = results.extra.map(lambda extra: json.loads(extra or "{}").get("fusions"))
pd.set_option("display.max_colwidth", 90)
print(results[["backend", "variant", "precision", "batch", "seq", "status", "p50_ms", "cosine", "max_abs", "fusions",
               "reason"]].to_string())
ort_fp16 = results[(results.backend == "onnxruntime") & (results.precision == "fp16")]
sys.exit(0 if len(ort_fp16) and (ort_fp16.status == "ok").all() else 1)

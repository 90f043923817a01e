"""benchmarks/precision_table.py, the GPU must-show table, run as the lead runs it on a results table shaped like
an H200 run's (BERT-base at 32x512): the FP16 bound by the project's formula, the speedups over FP32 and FP16, and
which cell reaches 60 % of the roofline."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd

from bench_pipeline.harness.results import make_row, to_frame
from conftest import PROJECT_ROOT

BERT_BASE = {"name": "bert-base-uncased (random weights)", "hidden_size": 768, "num_hidden_layers": 12,
             "intermediate_size": 3072, "has_pooler": True}


def row(backend, variant, precision, p50, status="ok", **extra):
    return make_row(model="bert", backend=backend, variant=variant, precision=precision, batch=32, seq=512,
                    status=status, device="cuda:0", p50_ms=p50, p50_ci_low_ms=p50 * 0.99, p50_ci_high_ms=p50 * 1.01,
                    speedup=69.9 / p50, cosine=0.99, max_abs=0.5, **extra)


def precision_table(tmp_path, rows, gpu_name) -> subprocess.CompletedProcess:
    """The script as the lead runs it, on ``rows`` measured on ``gpu_name``; its table lands in tmp_path/out."""
    to_frame(rows).to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "model_info.json").write_text(json.dumps(BERT_BASE))
    (tmp_path / "environment.json").write_text(json.dumps({"gpu.name": gpu_name}))
    return subprocess.run(
        [sys.executable, "benchmarks/precision_table.py", "--results", str(tmp_path / "results.csv"),
         "--model-info", str(tmp_path / "model_info.json"), "--environment", str(tmp_path / "environment.json"),
         "--out", str(tmp_path / "out")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    )


def test_table_names_the_cell_that_passes_60_percent_and_gives_the_bound(tmp_path):
    rows = [row("eager", "default", "fp32", 69.9), row("eager", "default", "fp16", 8.0),
            row("dynamo", "inductor", "fp8", 5.0),
            row("onnxruntime", "cuda", "int8", 6.0, extra='{"speedup_paired": false}'),
            row("onnxruntime", "cuda", "tf32", 4.0, status="unstable"),
            make_row(model="bert", backend="onnxruntime", variant="tensorrt-ep", precision="int8", batch=32, seq=512,
                     status="skipped", reason="TensorrtExecutionProvider is installed but did not load")]
    done = precision_table(tmp_path, rows, "NVIDIA H200")
    assert "FP16 bound 3.13 ms by this formula (60 %: <= 5.21 ms)" in done.stdout
    # unstable cells never pass; the FP8 cell passes both thresholds, INT8 only the 6.4 ms
    assert "(issue's threshold, <= 6.40 ms, status ok only): dynamo/inductor/fp8 (5.00 ms), " \
           "onnxruntime/cuda/int8 (6.00 ms)" in done.stdout
    assert "(this formula, <= 5.21 ms, status ok only): dynamo/inductor/fp8 (5.00 ms)" in done.stdout
    table = pd.read_csv(tmp_path / "out" / "precisions.csv").set_index("config")
    assert table.loc["dynamo/inductor/fp8", "× FP16 eager"] == 1.6
    assert round(table.loc["dynamo/inductor/fp8", "% FP16 roofline"], 1) == 62.5
    assert table.loc["onnxruntime/tensorrt-ep/int8", "status"] == "skipped"
    assert table.loc["onnxruntime/cuda/int8", "× FP32 [CI]"].endswith("°")  # not paired round by round
    assert not table.loc["dynamo/inductor/fp8", "× FP32 [CI]"].endswith("°")
    assert "° a speedup not paired round by round" in done.stdout
    assert "TensorrtExecutionProvider is installed but did not load" in (tmp_path / "out" / "precisions.md").read_text()


def test_a_gpu_without_a_known_peak_gets_no_roofline_share_rather_than_another_gpus(tmp_path):
    done = precision_table(tmp_path, [row("eager", "default", "fp32", 69.9), row("eager", "default", "fp16", 8.0)],
                           "NVIDIA Imaginary X1")
    assert "GPU 'NVIDIA Imaginary X1' is not in the peak table (reporting/roofline.py): no roofline" in done.stdout
    assert "passes 60 %" not in done.stdout
    table = pd.read_csv(tmp_path / "out" / "precisions.csv")
    assert table["% FP16 roofline"].isna().all() and table["FP16 bound ms"].isna().all()
    assert table["× FP16 eager"].notna().all()  # the measured ratios stay


def test_two_sweeps_over_different_cells_make_one_table_and_a_cell_in_both_is_refused(tmp_path):
    first = to_frame([row("eager", "default", "fp32", 69.9)])
    second = to_frame([make_row(model="bert", backend="eager", variant="default", precision="fp32", batch=1,
                                seq=128, status="ok", device="cuda:0", p50_ms=4.5, p50_ci_low_ms=4.4,
                                p50_ci_high_ms=4.6, speedup=1.0, cosine=1.0, max_abs=0.0)])
    first.to_csv(tmp_path / "a.csv", index=False)
    second.to_csv(tmp_path / "b.csv", index=False)
    (tmp_path / "model_info.json").write_text(json.dumps(BERT_BASE))
    (tmp_path / "environment.json").write_text(json.dumps({"gpu.name": "NVIDIA H200"}))

    def run(*results):
        return subprocess.run(
            [sys.executable, "benchmarks/precision_table.py", "--results", *map(str, results), "--model-info",
             str(tmp_path / "model_info.json"), "--environment", str(tmp_path / "environment.json")],
            cwd=PROJECT_ROOT, capture_output=True, text=True)

    both = run(tmp_path / "a.csv", tmp_path / "b.csv")
    assert both.returncode == 0, both.stderr
    assert "| eager/default/fp32 | 1x128 |" in both.stdout and "| eager/default/fp32 | 32x512 |" in both.stdout
    twice = run(tmp_path / "a.csv", tmp_path / "a.csv")
    assert twice.returncode == 2 and "cells in more than one table: eager/default/fp32/32/512" in twice.stderr

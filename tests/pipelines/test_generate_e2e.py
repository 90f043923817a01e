"""A whole `kedro run --pipelines=generate` on CPU with the embedded tiny decoder: every generation backend,
token parity (FP32 exact, ONNX Runtime's FP16 graph by its step-1 cosine), the KV cache paying off per token at
a long prompt, the new metrics in the results and MLflow, the generation figures in the report."""

from __future__ import annotations

import importlib.util
import json

import mlflow
import pandas as pd
import pytest

from bench_pipeline.reporting import GENERATION_FIGURE_TITLES
from conftest import copy_project, kedro

NEW_TOKENS = 8
GENERATE = {
    "scenario": "generate",
    "model": {"source": "default"},
    "grid": {"batch_sizes": [1, 2], "sequence_lengths": [16, 384]},
    "precisions": ["fp32"],
    "timing": {"warmup_iters": 1, "warmup_s": 0, "min_iters": 3, "min_time_s": 0},
    "generate": {"new_tokens": NEW_TOKENS, "backends": {
        "eager": {"variants": [{"name": "default"}, {"name": "static-cache", "options": {"cache": "static"}}]},
        "dynamo": {"variants": [{"name": "static-compile", "options": {"backend": "eager"}}]},
        "onnxruntime": {"variants": [{"name": "cpu", "precisions": ["fp32", "fp16"],
                                      "options": {"provider": "cpu", "cache": True}},
                                     {"name": "cpu-no-cache", "options": {"provider": "cpu", "cache": False}}]},
        "tensorrt": {},
    }},
}
MEASURED = {("eager", "default"), ("eager", "static-cache"), ("dynamo", "static-compile"), ("onnxruntime", "cpu"),
            ("onnxruntime", "cpu-no-cache")}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("generate"), GENERATE)
    result = kedro(project, "run", "--pipelines=generate")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project, pd.read_parquet(project / "data/08_reporting/results.parquet")


@pytest.mark.slow
def test_every_backend_has_a_row_per_cell_and_fp32_ids_match_eager(generated):
    _, results = generated
    assert len(results) == 7 * 4  # 6 measured configurations + TensorRT, batch {1, 2} x prompt {16, 384}
    measured = results[results.backend != "tensorrt"]
    assert set(zip(measured.backend, measured.variant)) == MEASURED
    assert (measured.status == "ok").all(), measured[["backend", "variant", "status", "reason"]].to_string()
    fp32 = measured[measured.precision == "fp32"]
    assert fp32.tokens_match.all() and fp32.first_divergent_step.isna().all()
    tensorrt = results[results.backend == "tensorrt"]
    assert (tensorrt.status == "skipped").all()
    if importlib.util.find_spec("tensorrt_rtx_bindings"):  # TensorRT-RTX builds here, for compute capability 8.9
        assert tensorrt.reason.str.contains("this run's device is cpu").all() and (tensorrt.build_s > 0).all()


@pytest.mark.slow
def test_onnxruntime_fp16_rows_are_judged_by_the_step1_cosine_and_say_the_cpu_ep_casts(generated):
    _, results = generated
    fp16 = results[results.precision == "fp16"]
    assert set(zip(fp16.backend, fp16.variant)) == {("onnxruntime", "cpu")} and len(fp16) == 4
    assert (fp16.cosine >= 0.999).all() and fp16.ttft_ms.notna().all()
    extra = [json.loads(e) for e in fp16.extra]
    assert all(e["onnx_precision"].startswith("fp16") and "FP32 behind casts" in e["precision_note"] for e in extra)


@pytest.mark.slow
def test_rows_carry_ttft_per_token_latency_tokens_per_s_and_the_cache(generated):
    _, results = generated
    measured = results[results.backend != "tensorrt"]
    for column in ("ttft_ms", "tpot_p50_ms", "tpot_p90_ms", "tpot_p99_ms", "tpot_mean_ms", "throughput_tok_s",
                   "p50_ms", "ttft_ci_low_ms", "speedup"):
        assert measured[column].notna().all(), column
    assert (measured.new_tokens == NEW_TOKENS).all()
    assert (measured.ttft_ms < measured.p50_ms).all()  # the first token comes before the whole generation ends
    no_cache = measured[measured.variant == "cpu-no-cache"]
    assert no_cache.kv_cache.str.startswith("none").all()
    compiled = measured[measured.backend == "dynamo"]
    assert compiled.compile_s.notna().all() and compiled.graph_breaks.notna().all()


@pytest.mark.slow
def test_cached_decode_is_faster_per_token_than_no_cache_at_the_long_prompt(generated):
    _, results = generated
    at = results[(results.seq == 384) & (results.backend == "onnxruntime") & (results.precision == "fp32")]
    at = at.set_index(["variant", "batch"])
    for batch in (1, 2):
        assert at.loc[("cpu", batch), "tpot_p50_ms"] * 2 < at.loc[("cpu-no-cache", batch), "tpot_p50_ms"]


@pytest.mark.slow
def test_mlflow_run_holds_the_generation_metrics_per_cell(generated):
    project, _ = generated
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    run = mlflow.search_runs(experiment_names=["bench_pipeline"], output_format="list")[0]
    metrics = run.data.metrics
    for name in ("ttft_ms", "tpot_p50_ms", "tpot_p99_ms", "throughput_tok_s", "speedup"):
        assert f"{name}/onnxruntime.cpu/fp32/b2_s384" in metrics, name
    assert "tpot_p50_ms_by_batch/eager.static-cache/fp32/s16" in metrics
    assert set(run.data.params["backends"].split(",")) == {"eager", "dynamo", "onnxruntime", "tensorrt"}
    assert run.data.params["scenario"] == "generate" and run.data.params["generate.new_tokens"] == str(NEW_TOKENS)
    assert run.data.params["model.name"] == "tiny-llama (embedded)"


@pytest.mark.slow
def test_report_has_the_generation_tables(generated):
    project, _ = generated
    report = (project / "data/08_reporting/report.md").read_text()
    assert "## Generation: TTFT, per-token latency, tokens/s" in report
    assert "Generation: TTFT against prompt length" in report and "ids match" in report
    for name, caption in GENERATION_FIGURE_TITLES.items():  # saved by the report_figures MatplotlibDataset
        assert (project / "data/08_reporting/figures" / name).read_bytes().startswith(b"\x89PNG")
        assert f"![{caption}](figures/{name})" in report

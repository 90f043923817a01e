"""ONNX Runtime's build step on real exports (tiny random BERT, all-MiniLM-L6-v2, encoders the optimizer has no
model type for): fusions, FP16, its verified cache, and which fused graphs the enabled variants make it build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bench_pipeline.backends.onnx.export import export_onnx
from bench_pipeline.backends.onnxruntime.artifacts import ort_artifact_key
from bench_pipeline.backends.onnxruntime.optimize import optimize_onnx, optimizer_model_type
from bench_pipeline.backends.onnxruntime.stage import fused_graphs_wanted
from bench_pipeline.model.limits import default_model_dir
from bench_pipeline.model.source import load_model, make_inputs
from conftest import DEBERTA_V2, save_tiny_encoder
from onnx_helpers import benchmark_config, cosine, run_onnx, run_torch

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def minilm_fused_fp32(minilm_export) -> dict:
    return optimize_onnx(
        minilm_export["path"],
        Path(minilm_export["path"]).with_name("model.opt.fp32.onnx"),
        model_type="bert", num_heads=12, hidden_size=384, float16=False, use_gpu=False,
    )


def test_an_encoder_the_optimizer_does_not_know_gets_its_generic_bert_path():
    assert {optimizer_model_type(name) for name in ("roberta", "deberta-v2", "albert")} == {"bert"}
    assert optimizer_model_type("vit") == "vit"  # one it knows keeps its own


# --- optimize ----------------------------------------------------------------------------------


def test_tiny_bert_attention_fuses_and_the_fused_graph_matches(tiny_export, tiny_bert_dir, tmp_path):
    fused = optimize_onnx(tiny_export["path"], tmp_path / "model.opt.fp32.onnx", model_type="bert",
                          num_heads=2, hidden_size=32, float16=False, use_gpu=False)
    fusions = fused["fusions"]
    assert fusions["Attention"] >= 1 and fusions["SkipLayerNormalization"] > 0
    assert fusions == {"Attention": 2, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 4, "BiasGelu": 2}
    inputs = make_inputs(tiny_bert_dir, 2, 20, seed=0)
    got, expected = run_onnx(fused["path"], inputs), run_torch(tiny_bert_dir, inputs)
    real = inputs["attention_mask"].numpy().astype(bool)
    np.testing.assert_allclose(got["last_hidden_state"][real], expected["last_hidden_state"][real], atol=1e-4)


def test_minilm_fusion_counts(minilm_fused_fp32):
    assert minilm_fused_fp32["fusions"] == {
        "Attention": 6, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 12, "BiasGelu": 6,
    }


def test_minilm_fp16_graph_is_half_the_size_and_close(minilm_export, tmp_path):
    fp16 = optimize_onnx(minilm_export["path"], tmp_path / "model.opt.fp16.onnx", model_type="bert",
                         num_heads=12, hidden_size=384, float16=True, use_gpu=True)
    assert fp16["size_bytes"] < 0.55 * minilm_export["size_bytes"]
    assert fp16["fusions"]["Attention"] == 6
    inputs = make_inputs(default_model_dir(), 2, 32, seed=0)
    got = run_onnx(fp16["path"], inputs)  # ORT's CPU EP can run it (slowly): enough to check numbers
    expected = run_torch(default_model_dir(), inputs)
    assert got["last_hidden_state"].dtype == np.float32  # FP32 graph outputs kept
    real = inputs["attention_mask"].numpy().astype(bool)
    assert cosine(got["last_hidden_state"][real], expected["last_hidden_state"][real]) > 0.999


def test_second_optimize_is_a_cache_hit_and_a_new_input_is_not(minilm_export, minilm_fused_fp32, tiny_export):
    out = Path(minilm_fused_fp32["path"])
    mtime = out.stat().st_mtime_ns
    again = optimize_onnx(minilm_export["path"], out, model_type="bert", num_heads=12, hidden_size=384,
                          float16=False, use_gpu=False)
    assert again["cached"] is True and again["fusions"] == minilm_fused_fp32["fusions"]
    assert out.stat().st_mtime_ns == mtime
    other = optimize_onnx(tiny_export["path"], out.with_name("other.onnx"), model_type="bert", num_heads=2,
                          hidden_size=32, float16=False, use_gpu=False)
    assert other["cached"] is False and other["source_sha256"] == tiny_export["sha256"]


# --- encoders ONNX Runtime's optimizer has no model type for (issue 11, item 4) ----------------


@pytest.fixture(scope="module", params=["deberta-v2", "albert"])
def unknown_encoder(request, tmp_path_factory) -> tuple[str, Path, dict]:
    """A tiny random encoder of a model type the optimizer does not list, and its export."""
    extra = DEBERTA_V2 if request.param == "deberta-v2" else {"embedding_size": 16}
    model_dir = save_tiny_encoder(tmp_path_factory.mktemp(request.param) / "model", request.param, **extra)
    return request.param, model_dir, export_onnx(model_dir, model_dir.parent / "onnx" / "model.onnx")


def optimize_like_the_stage(export: dict, model_type: str, out: Path, *, float16: bool) -> dict:
    return optimize_onnx(export["path"], out, model_type=optimizer_model_type(model_type), num_heads=2,
                         hidden_size=32, float16=float16, use_gpu=float16)


def test_an_unknown_encoder_gets_generic_fusions_and_an_fp16_graph_the_cpu_ep_runs(unknown_encoder, tmp_path):
    model_type, model_dir, export = unknown_encoder
    fused = optimize_like_the_stage(export, model_type, tmp_path / "model.opt.fp32.onnx", float16=False)
    fp16 = optimize_like_the_stage(export, model_type, tmp_path / "model.opt.fp16.onnx", float16=True)
    assert fused["fusion_error"] is None and fused["model_type"] == "bert"
    assert fused["fusions"]["SkipLayerNormalization"] == 4  # the residual LayerNorms of both layers
    if model_type == "deberta-v2":  # disentangled attention matches no Attention pattern: counted as none
        assert "Attention" not in fused["fusions"]
    assert fp16["fusions"] == fused["fusions"] and fp16["float16"] is True

    onnx.checker.check_model(fp16["path"])
    graph = onnx.load(fp16["path"]).graph
    assert sum(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer) > 10  # weights in FP16
    inputs = make_inputs(model_dir, 2, 20, seed=0)
    got = run_onnx(fp16["path"], inputs)
    with torch.no_grad():
        expected = load_model(model_dir, "fp32", torch.device("cpu"))(**inputs).last_hidden_state.numpy()
    assert got["last_hidden_state"].dtype == np.float32  # FP32 graph outputs kept
    real = inputs["attention_mask"].numpy().astype(bool)
    assert cosine(got["last_hidden_state"][real], expected[real]) > 0.999
    fused_out = run_onnx(fused["path"], inputs)["last_hidden_state"]
    np.testing.assert_allclose(fused_out[real], expected[real], atol=1e-4)


def test_fusions_that_raise_leave_an_unfused_graph_and_their_error(unknown_encoder, tmp_path, monkeypatch):
    from onnxruntime.transformers import optimizer

    def broken_fusions(*args, **kwargs):
        raise IndexError("list index out of range")  # as a fusion meeting a graph it was not written for

    monkeypatch.setattr(optimizer, "optimize_by_fusion", broken_fusions)
    model_type, model_dir, export = unknown_encoder
    fp16 = optimize_like_the_stage(export, model_type, tmp_path / "model.opt.fp16.onnx", float16=True)
    assert fp16["fusion_error"] == "IndexError: list index out of range"
    # what ONNX Runtime's own pre-pass fused (its LayerNormalization), none of the Python fusions
    assert set(fp16["fusions"]) <= {"LayerNormalization"}
    onnx.checker.check_model(fp16["path"])
    inputs = make_inputs(model_dir, 1, 12, seed=0)
    with torch.no_grad():
        expected = load_model(model_dir, "fp32", torch.device("cpu"))(**inputs).last_hidden_state.numpy()
    assert cosine(run_onnx(fp16["path"], inputs)["last_hidden_state"], expected) > 0.999


# --- which fused graphs get built ---------------------------------------------------------------


def test_fused_graphs_are_built_only_for_variants_that_run_them():
    cpu_only = benchmark_config(onnxruntime={"variants": [{"name": "cpu", "options": {"provider": "cpu"}}]})
    assert fused_graphs_wanted(cpu_only) == []  # fp16 on the CPU EP is unsupported: nothing to build
    trt = benchmark_config(onnxruntime={"variants": [{"name": "trt", "options": {"provider": "tensorrt"}}]})
    assert fused_graphs_wanted(trt) == []  # TensorRT runs the plain export
    assert fused_graphs_wanted(benchmark_config()) == []
    fp32_only = benchmark_config(onnxruntime={"variants": [{"name": "cuda", "precisions": ["fp32"],
                                                            "options": {"provider": "cuda"}}]})
    assert fused_graphs_wanted(fp32_only) == []
    defaults = {"variants": [{"name": "plain"}, {"name": "fused", "options": {"fused": True}}]}
    assert fused_graphs_wanted(benchmark_config(onnxruntime=defaults)) == ["fp32_fused"]  # CPU EP on a CPU device


def test_no_fused_graph_is_built_for_a_provider_that_cannot_run_here():
    cuda = {"variants": [{"name": "cuda", "options": {"provider": "cuda"}},
                         {"name": "cuda-graph", "options": {"provider": "cuda", "fused": True, "cuda_graph": True}}]}
    assert "CUDAExecutionProvider" not in ort.get_available_providers()  # this CPU machine
    assert fused_graphs_wanted(benchmark_config(onnxruntime=cuda)) == []  # they are skipped, not built for


def test_the_default_provider_on_a_cuda_device_runs_the_fused_fp16_graph_fake_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # no GPU here: config validation is told of two
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    defaults = {"variants": [{"name": "plain"}, {"name": "fused", "options": {"fused": True}}]}
    assert fused_graphs_wanted(benchmark_config("cuda:1", onnxruntime=defaults)) == ["fp16", "fp32_fused"]


@pytest.mark.parametrize(("provider", "precision", "fused", "key"), [
    ("cpu", "fp32", False, "fp32"),
    ("cpu", "fp32", True, "fp32_fused"),
    ("cpu", "fp16", False, None),  # no FP16 kernels on the CPU EP
    ("cuda", "fp16", False, "fp16"),
    ("cuda", "fp16", True, "fp16"),
    ("cuda", "fp32", True, "fp32_fused"),
    ("tensorrt", "fp16", False, "fp32"),  # TensorRT's FP16 mode on the plain export
    ("tensorrt", "fp32", False, "fp32"),
    ("cuda", "bf16", False, None),
])
def test_ort_artifact_key_names_the_file_a_variant_runs(provider, precision, fused, key):
    assert ort_artifact_key(provider, precision, fused) == key


def test_ort_artifact_key_rejects_an_unknown_provider():
    allowed = r"\['cpu', 'cuda', 'tensorrt'\]"
    with pytest.raises(ValueError, match=rf"unknown onnxruntime provider 'rocm'; allowed: {allowed}"):
        ort_artifact_key("rocm", "fp32", False)

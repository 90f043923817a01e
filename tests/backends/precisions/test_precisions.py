"""The precisions beyond FP32/FP16/BF16 (issue 15): INT8 through the real sweep on the embedded
all-MiniLM-L6-v2 (ONNX Runtime dynamic and static QDQ on the CPU EP, torch dynamic quantization in eager),
parity inside the INT8 tolerance; TF32 and FP8 as ``unsupported`` rows on this CPU. What decides them on a
GPU is checked with the GPU simulated (``_simulated_gpu``): the real paths run on the device."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from bench_pipeline.backends import REGISTRY
from bench_pipeline.backends.base import BackendContext, Cell, CellFailure
from bench_pipeline.backends.eager.precision import matmul_precision, quantized_linears, use_matmul_precision
from bench_pipeline.backends.onnx.stage import ExportConfig, export_onnx_node
from bench_pipeline.backends.onnxruntime.options import OrtOptions
from bench_pipeline.backends.onnxruntime.quantize import int8_artifacts_wanted, kept_in_fp32, quantize_onnx_node
from bench_pipeline.backends.onnxruntime.runtime import _artifact_key, _EpModes, _providers
from bench_pipeline.backends.onnxruntime.stage import optimize_onnx_node
from bench_pipeline.config import PRECISIONS, BenchmarkConfig, ModelSpec
from bench_pipeline.harness.sweep import run_backend
from bench_pipeline.model import source
from bench_pipeline.model.reference import compute_reference
from bench_pipeline.model.source import load_model, precision_unsupported, resolve_model
from conftest import LOOSE_GATE

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FAST = {"warmup_iters": 2, "warmup_s": 0, "min_iters": 5, "min_time_s": 0, "max_time_s": 5}
ORT_INT8 = [
    {"name": "cpu", "options": {"provider": "cpu"}},  # INT8: dynamic, the CPU EP's default
    {"name": "cpu-static", "precisions": ["int8"], "options": {"provider": "cpu", "quantization": "static"}},
]
CELLS = [Cell(2, 32)]


def int8_config(**overrides) -> BenchmarkConfig:
    fields = {
        "device": "cpu", "grid": {"batch_sizes": [2], "sequence_lengths": [32]}, "precisions": ["fp32", "int8"],
        "timing": FAST, "backends": {"eager": {}, "onnxruntime": {"variants": ORT_INT8}}, **LOOSE_GATE,
    }
    return BenchmarkConfig(**(fields | overrides))


@pytest.fixture(scope="module")
def minilm_int8(tmp_path_factory):
    """Rows of eager and ONNX Runtime at FP32 and INT8 on the embedded MiniLM, through the export,
    quantization and sweep as the pipeline runs them; and the ``onnx_int8`` records."""
    info = resolve_model(ModelSpec(), tmp_path_factory.mktemp("m"), 0)
    config = int8_config()
    export = ExportConfig(cache_dir=str(tmp_path_factory.mktemp("onnx")))
    onnx_fp32 = export_onnx_node(info, config, export)
    artifacts = {"export": optimize_onnx_node(onnx_fp32, info, config, export),
                 "quantized": quantize_onnx_node(onnx_fp32, info, config)}
    ctx = BackendContext(Path(info["path"]), info, torch.device("cpu"), 1, CELLS, tmp_path_factory.mktemp("w"),
                         artifacts=artifacts)
    reference = compute_reference(info, CELLS, torch.device("cpu"), seed=0)
    rows = []
    for backend in ("eager", "onnxruntime"):
        rows += run_backend(backend, config.backends[backend], config, ctx, reference)[0]
    return {(r["backend"], r["variant"], r["precision"]): r for r in rows}, artifacts["quantized"], config


@pytest.mark.parametrize("unit", [("eager", "default", "int8"), ("onnxruntime", "cpu", "int8"),
                                  ("onnxruntime", "cpu-static", "int8")], ids=["eager", "ort-dynamic", "ort-static"])
def test_minilm_int8_cells_pass_the_int8_tolerance_and_are_really_quantized(minilm_int8, unit):
    rows, _, config = minilm_int8
    row, tolerance = rows[unit], config.tolerances["int8"]
    assert row["status"] == "ok", row["reason"]
    assert row["p50_ms"] > 0 and row["quantize_s"] > 0
    assert row["cosine"] >= tolerance.min_cosine and row["mean_abs"] <= tolerance.max_mean_abs
    # INT8 that computed in FP32 would agree to 1e-6: this is the price of 8 bits, paid
    assert row["cosine"] < 0.9999 and row["max_abs"] > 1e-3


def test_int8_rows_say_how_they_were_quantized(minilm_int8):
    rows, quantized, _ = minilm_int8
    assert set(quantized) == {"int8_dynamic", "int8_static"}
    static = quantized["int8_static"]
    assert static["status"] == "ok" and static["calibration"] == {"batch": 8, "batches": 2, "seq": 32, "seed": 1}
    assert '"quantization": "static"' in rows[("onnxruntime", "cpu-static", "int8")]["extra"]
    assert "model.int8.dynamic.onnx" in rows[("onnxruntime", "cpu", "int8")]["extra"]
    assert "per-channel qint8" in rows[("eager", "default", "int8")]["extra"]


def test_static_qdq_graph_is_one_tensorrt_can_parse(minilm_int8):
    """Symmetric INT8 activations and weights, FP32 biases (TensorRT takes no INT32 DequantizeLinear), and the
    MatMuls of two activations and after GELU left in FP32."""
    _, quantized, _ = minilm_int8
    graph = onnx.load(quantized["int8_static"]["path"]).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") > 0
    int32 = {init.name for init in graph.initializer if init.data_type == onnx.TensorProto.INT32}
    assert not [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int32]
    zero_points = [init for init in graph.initializer if init.name.endswith("_zero_point")]
    assert zero_points and all(not any(onnx.numpy_helper.to_array(z).ravel()) for z in zero_points)


def test_kept_in_fp32_names_attention_and_ffn_output_matmuls(minilm_int8):
    _, quantized, _ = minilm_int8
    fp32_graph = onnx.load(str(Path(quantized["int8_static"]["path"]).with_name("model.onnx")),
                           load_external_data=False).graph
    kept = kept_in_fp32(fp32_graph)
    assert len(kept) == 6 * 3  # 6 layers: attention scores, attention context, FFN output
    assert all(name.startswith("/") or "MatMul" in name for name in kept)


def test_eager_int8_keeps_the_ffn_output_projection_fp32():
    model = load_model(source.default_model_dir(), "fp32", torch.device("cpu"))
    names = quantized_linears(model)
    assert "encoder.layer.0.attention.output.dense" in names and "encoder.layer.0.intermediate.dense" in names
    assert "encoder.layer.0.output.dense" not in names and len(names) == 6 * 5 + 1  # q, k, v, attn out, ffn in; pooler


def test_no_int8_variant_makes_no_int8_graph_and_tensorrt_int8_asks_for_the_static_one():
    fp32_only = {"onnxruntime": {"variants": ORT_INT8[:1]}}
    assert int8_artifacts_wanted(int8_config(precisions=["fp32"], backends=fp32_only)) == []
    assert int8_artifacts_wanted(int8_config()) == ["int8_dynamic", "int8_static"]
    trt = int8_config(backends={"tensorrt": {"variants": [{"name": "default", "precisions": ["int8"]}]}})
    assert int8_artifacts_wanted(trt) == ["int8_static"]


# --- TF32 and FP8 on this CPU: rows, with the reason -------------------------------------------


def test_tf32_and_fp8_on_cpu_are_unsupported_rows_with_the_reason(tiny_bert_dir, tmp_path):
    info = resolve_model(ModelSpec(source="local", name=str(tiny_bert_dir)), tmp_path / "m", 0)
    config = BenchmarkConfig(device="cpu", grid={"batch_sizes": [1], "sequence_lengths": [16]},
                             precisions=["tf32", "fp8"], timing=FAST, **LOOSE_GATE)
    cells = [Cell(1, 16)]
    ctx = BackendContext(Path(info["path"]), info, torch.device("cpu"), 1, cells, tmp_path / "w")
    reference = compute_reference(info, cells, torch.device("cpu"), seed=0)
    rows = {r["precision"]: r for r in run_backend("eager", config.backends["eager"], config, ctx, reference)[0]}
    assert rows["tf32"]["status"] == "unsupported"
    assert rows["tf32"]["reason"] == "TF32 needs an NVIDIA GPU of compute capability >= 8.0; this run's device is cpu"
    assert rows["fp8"]["status"] == "unsupported" and rows["fp8"]["reason"].startswith("eager has no fp8 path")
    assert "FP8 needs an NVIDIA GPU of compute capability >= 8.9" in precision_unsupported(torch.device("cpu"), "fp8")


def test_onnxruntime_tf32_on_the_cpu_ep_is_unsupported():
    with pytest.raises(CellFailure, match="the CPU EP has none") as caught:
        _artifact_key("tf32", OrtOptions.parse({"provider": "cpu"}, "cpu"))
    assert caught.value.status == "unsupported"


def test_every_precision_is_in_some_backend_descriptor_and_each_backend_names_its_own():
    offered = {p for d in REGISTRY.values() for p in d.precisions}
    assert offered == set(PRECISIONS)
    assert REGISTRY["tensorrt"].precision_missing("fp8").startswith("tensorrt has no fp8 path; it runs fp32, tf32")
    assert REGISTRY["onnx"].precision_missing("fp8") is None  # build-only: nothing of its own to run


# --- TF32 switches -----------------------------------------------------------------------------


def test_tf32_is_on_only_inside_its_block_and_fp32_is_strict():
    use_matmul_precision("fp32")
    with matmul_precision("tf32"):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high"
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.get_float32_matmul_precision() == "highest"


def test_tf32_refuses_one_process_for_all_units():
    with pytest.raises(ValueError, match="precision tf32 needs isolation: process"):
        BenchmarkConfig(grid={"batch_sizes": [1], "sequence_lengths": [8]}, precisions=["fp32", "tf32"],
                        isolation="none")


def test_the_old_onnxruntime_tf32_option_points_to_the_precision():
    with pytest.raises(ValueError, match="list precision tf32 for TF32"):
        OrtOptions.parse({"provider": "cuda", "tf32": True}, "cpu")


def test_dynamic_quantization_is_refused_on_a_gpu_provider():
    with pytest.raises(ValueError, match="'dynamic' runs on provider 'cpu' only"):
        OrtOptions.parse({"provider": "cuda", "quantization": "dynamic"}, "cpu")


# --- what decides on a GPU (simulated: no GPU here) ---------------------------------------------


@pytest.fixture
def gpu_of(monkeypatch):
    def simulate(name: str, capability: tuple[int, int]) -> torch.device:
        monkeypatch.setattr(source.torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(source.torch.cuda, "get_device_name", lambda device=None: name)
        return torch.device("cuda", 0)

    return simulate


@pytest.mark.parametrize(("gpu", "capability", "tf32", "fp8"), [
    ("Tesla T4", (7, 5), False, False),
    ("NVIDIA A100", (8, 0), True, False),
    ("NVIDIA L4", (8, 9), True, True),
    ("NVIDIA H200", (9, 0), True, True),
])
def test_tf32_and_fp8_follow_the_compute_capability_simulated_gpu(gpu_of, gpu, capability, tf32, fp8):
    device = gpu_of(gpu, capability)
    assert (precision_unsupported(device, "tf32") is None) is tf32
    assert (precision_unsupported(device, "fp8") is None) is fp8
    if not fp8:
        assert precision_unsupported(device, "fp8") == (
            f"FP8 needs an NVIDIA GPU of compute capability >= 8.9; {gpu} has {capability[0]}.{capability[1]}")
    assert precision_unsupported(device, "int8") is None  # which backend runs INT8 where is the backend's answer


class _FakeStream:
    cuda_stream = 140000000001234


def test_tf32_and_int8_provider_options_simulated_gpu(tmp_path):
    ctx = BackendContext(tmp_path, {"weights_sha256": "a" * 64}, torch.device("cuda", 0), 4, [Cell(32, 512)],
                         tmp_path, {"export": {"fp32": {"sha256": "b" * 64}}})
    cuda_opts = OrtOptions.parse({"provider": "cuda"}, ctx.device.type)
    for tf32, expected in ((True, "1"), (False, "0")):  # strict FP32 says 0 explicitly: the EP's default may be 1
        (_, cuda), _ = _providers(cuda_opts, ctx, _FakeStream(), _EpModes(False, False, tf32), ["input_ids"])
        assert cuda["use_tf32"] == expected
    trt_opts = OrtOptions.parse({"provider": "tensorrt"}, ctx.device.type)
    (_, trt), _, _ = _providers(trt_opts, ctx, _FakeStream(), _EpModes(False, True, False), ["input_ids"])
    assert trt["trt_int8_enable"] == "1" and trt["trt_fp16_enable"] == "0"
    assert _artifact_key("int8", trt_opts) == "int8_static" and _artifact_key("tf32", cuda_opts) == "fp32"
    with pytest.raises(CellFailure, match="the TensorRT EP has no TF32 switch"):
        _artifact_key("tf32", trt_opts)

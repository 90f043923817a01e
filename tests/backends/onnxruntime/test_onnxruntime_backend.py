"""The onnxruntime backend with real ONNX files and real ONNX Runtime CPU sessions: parity with
PyTorch through the real sweep, failures as statuses. The CUDA/TensorRT paths need a GPU; only
their provider options are checked here (``_fake_gpu``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from bench_pipeline.backends import load_backend
from bench_pipeline.backends.base import BackendContext, Cell, CellFailure
from bench_pipeline.backends.onnx.stage import ExportConfig, export_onnx_node
from bench_pipeline.backends.onnxruntime.options import OrtOptions
from bench_pipeline.backends.onnxruntime.runtime import OnnxRuntimeBackend, _EpModes, _providers
from bench_pipeline.backends.onnxruntime.stage import optimize_onnx_node
from bench_pipeline.config import BenchmarkConfig, ModelSpec
from bench_pipeline.harness.sweep import run_backend
from bench_pipeline.model.reference import compute_reference
from bench_pipeline.model.source import load_model, make_inputs, resolve_model
from conftest import DEBERTA_V2, LOOSE_GATE, save_tiny_encoder

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FAST = {"warmup_iters": 2, "warmup_s": 0, "min_iters": 5, "min_time_s": 0, "max_time_s": 5}
VARIANTS = [
    {"name": "cpu", "options": {"provider": "cpu"}},
    {"name": "cpu-fused", "precisions": ["fp32"], "options": {"provider": "cpu", "fused": True}},
    {"name": "cpu-host", "precisions": ["fp32"], "options": {"provider": "cpu", "io_binding": False}},
    {"name": "cuda-graph", "options": {"provider": "cuda", "cuda_graph": True, "fused": True}},
    {"name": "tensorrt", "options": {"provider": "tensorrt"}},
]


def config_for(batch_sizes, sequence_lengths, precisions=("fp32",)) -> BenchmarkConfig:
    return BenchmarkConfig(
        device="cpu",
        grid={"batch_sizes": batch_sizes, "sequence_lengths": sequence_lengths},
        precisions=list(precisions),
        timing=FAST,
        backends={"onnxruntime": {"variants": VARIANTS}},
        **LOOSE_GATE,
    )


def export_stage(model_info: dict, config: BenchmarkConfig, cache_dir: Path) -> dict:
    """The export stage's two nodes, as the pipeline runs them."""
    export = ExportConfig(cache_dir=str(cache_dir))
    return optimize_onnx_node(export_onnx_node(model_info, config, export), model_info, config, export)


@pytest.fixture(scope="module")
def tiny(tiny_bert_dir, tmp_path_factory):
    info = resolve_model(ModelSpec(source="local", name=str(tiny_bert_dir)), tmp_path_factory.mktemp("m"), 0)
    config = config_for([1, 2], [16, 32])
    artifacts = export_stage(info, config, tmp_path_factory.mktemp("onnx"))
    ctx = BackendContext(
        Path(info["path"]), info, torch.device("cpu"), 1, [Cell(1, 16), Cell(2, 32)],
        tmp_path_factory.mktemp("work"), artifacts={"export": artifacts},
    )
    return ctx, config


def torch_outputs(model_dir: Path, inputs: dict) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = load_model(model_dir, "fp32", torch.device("cpu"))(**inputs)
    return {"last_hidden_state": out.last_hidden_state.numpy(), "pooler_output": out.pooler_output.numpy()}


# --- sessions on the CPU EP --------------------------------------------------------------------


@pytest.mark.parametrize("options", [{"provider": "cpu"}, {"provider": "cpu", "io_binding": False},
                                     {"provider": "cpu", "fused": True}], ids=["bound", "host", "fused"])
def test_cpu_session_outputs_match_pytorch(tiny, options):
    ctx, _ = tiny
    session = load_backend("onnxruntime").open(ctx, "v", "fp32", options)
    inputs = make_inputs(ctx.model_dir, 2, 32, seed=0)
    runner = session.prepare(inputs, Cell(2, 32))
    runner.run()
    got, expected = runner.outputs(), torch_outputs(ctx.model_dir, inputs)
    real = inputs["attention_mask"].numpy().astype(bool)
    np.testing.assert_allclose(got["last_hidden_state"][real], expected["last_hidden_state"][real], atol=1e-4)
    np.testing.assert_allclose(got["pooler_output"], expected["pooler_output"], atol=1e-4)
    assert all(v.dtype == np.float32 for v in got.values())
    assert runner.cuda_stream is None
    assert session.setup_s > 0 and session.costs["export_s"] > 0
    assert session.extra["threads"] == 1 and session.extra["session_providers"] == ["CPUExecutionProvider"]
    if options.get("fused"):
        assert session.extra["fusions"]["Attention"] == 2 and session.costs["build_s"] > 0
    session.close()


def test_outputs_are_copies_not_the_bound_buffers(tiny):
    ctx, _ = tiny
    session = OnnxRuntimeBackend().open(ctx, "v", "fp32", {"provider": "cpu"})
    runner = session.prepare(make_inputs(ctx.model_dir, 1, 16, seed=0), Cell(1, 16))
    runner.run()
    first = runner.outputs()
    kept = first["last_hidden_state"].copy()
    first["last_hidden_state"][:] = 0
    np.testing.assert_array_equal(runner.outputs()["last_hidden_state"], kept)


# --- failures become statuses ------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_provider_not_available_is_skipped_with_the_available_ones(tiny, provider):
    ctx, _ = tiny
    with pytest.raises(CellFailure) as failure:
        OnnxRuntimeBackend().open(ctx, "v", "fp32", {"provider": provider})
    assert failure.value.status == "skipped"
    assert "is not available" in failure.value.reason and "CPUExecutionProvider" in failure.value.reason


@pytest.mark.parametrize(("precision", "words"), [("bf16", "no bf16 ONNX artifact"), ("fp16", "no FP16 kernels")])
def test_precision_without_a_runnable_artifact_is_unsupported(tiny, precision, words):
    ctx, _ = tiny
    with pytest.raises(CellFailure, match=words) as failure:
        OnnxRuntimeBackend().open(ctx, "v", precision, {"provider": "cpu"})
    assert failure.value.status == "unsupported"


def test_failed_export_is_fail_export_with_the_exporters_message(tiny):
    ctx, _ = tiny
    failed = {"fp32": {"status": "fail_export", "reason": "torchscript export failed: SymbolicValueError: x"}}
    broken = BackendContext(ctx.model_dir, ctx.model_info, ctx.device, 1, ctx.cells, ctx.workdir, {"export": failed})
    with pytest.raises(CellFailure) as failure:
        OnnxRuntimeBackend().open(broken, "v", "fp32", {"provider": "cpu"})
    assert (failure.value.status, failure.value.reason) == ("fail_export", failed["fp32"]["reason"])


def test_missing_artifacts_and_files_are_explained(tiny, tmp_path):
    ctx, _ = tiny
    plain_only = {"fp32": ctx.artifacts["export"]["fp32"]}
    gone = {"fp32": {**plain_only["fp32"], "path": str(tmp_path / "gone.onnx")}}
    cases = [
        ({"export": plain_only}, {"provider": "cpu", "fused": True}, "skipped", "no fp32_fused artifact"),
        ({"export": gone}, {"provider": "cpu"}, "fail_export", "gone.onnx is missing"),
        ({}, {"provider": "cpu"}, "error", "export stage did not run"),
    ]
    for artifacts, options, status, words in cases:
        case = BackendContext(ctx.model_dir, ctx.model_info, ctx.device, 1, ctx.cells, ctx.workdir, artifacts)
        with pytest.raises(CellFailure, match=words) as failure:
            OnnxRuntimeBackend().open(case, "v", "fp32", options)
        assert failure.value.status == status


def fp32_export_at(path: Path) -> dict:
    return {"export": {"fp32": {"status": "ok", "path": str(path), "export_s": 0.1}}}


def test_a_model_ort_cannot_load_is_an_error(tiny, tmp_path):
    ctx, _ = tiny
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    case = BackendContext(ctx.model_dir, ctx.model_info, ctx.device, 1, ctx.cells, ctx.workdir, fp32_export_at(broken))
    with pytest.raises(CellFailure, match="could not create a cpu session for broken.onnx") as failure:
        OnnxRuntimeBackend().open(case, "v", "fp32", {"provider": "cpu"})
    assert failure.value.status == "error"


_OPEN_UNDER_A_MEMORY_LIMIT = textwrap.dedent("""
    import json, os, resource, sys
    from pathlib import Path
    import torch
    from bench_pipeline.backends.base import BackendContext, Cell, CellFailure
    from bench_pipeline.backends.onnxruntime.runtime import OnnxRuntimeBackend

    model = Path(sys.argv[1])
    artifacts = {"export": {"fp32": {"status": "ok", "path": str(model), "export_s": 0.1}}}
    ctx = BackendContext(model.parent, {}, torch.device("cpu"), 1, [Cell(1, 8)], model.parent, artifacts)
    # address space for what is loaded now plus 16 MB: less than the model's 64 MB of weights
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (in_use + (16 << 20), resource.RLIM_INFINITY))
    try:
        OnnxRuntimeBackend().open(ctx, "v", "fp32", {"provider": "cpu"})
        print(json.dumps({"status": "ok", "reason": ""}))
    except CellFailure as failure:
        print(json.dumps({"status": failure.status, "reason": failure.reason}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS and /proc (Linux)")
def test_running_out_of_memory_while_creating_the_session_is_oom(tmp_path):
    """A real allocation failure: ONNX Runtime loads 64 MB of weights in a process whose address
    space is capped (a subprocess, so the cap stays there)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = 16 << 20  # float32: 64 MB
    weights = numpy_helper.from_array(np.ones(n, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [weights],
    )
    model = tmp_path / "big.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model),
                    save_as_external_data=True, location="big.onnx.data")

    child = subprocess.run([sys.executable, "-c", _OPEN_UNDER_A_MEMORY_LIMIT, str(model)],
                           capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["status"] == "oom", result["reason"]
    assert result["reason"].startswith("ONNX Runtime could not create a cpu session for big.onnx: ")


@pytest.mark.parametrize(("options", "words"), [
    ({"provider": "rocm"}, r"unknown onnxruntime provider 'rocm'; allowed: \['cpu', 'cuda', 'tensorrt'\]"),
    ({"threads": 4}, r"unknown onnxruntime option\(s\) \['threads'\]"),
    ({"provider": "cpu", "cuda_graph": True}, "cuda_graph needs provider 'cuda' or 'tensorrt'"),
    ({"provider": "cuda", "cuda_graph": True, "io_binding": False}, "and io_binding true"),
    ({"provider": "tensorrt", "fused": True}, "fused does not apply to provider 'tensorrt'"),
    ({"io_binding": "yes"}, "io_binding must be true or false"),
])
def test_bad_options_fail_early_with_what_is_allowed(options, words):
    with pytest.raises(ValueError, match=words):
        OrtOptions.parse(options, "cpu")


def test_default_provider_follows_the_device():
    assert OrtOptions.parse({}, "cpu").provider == "cpu"
    assert OrtOptions.parse({}, "cuda").provider == "cuda"


# --- GPU provider options (no GPU here: checked as data) ---------------------------------------


class _FakeStream:
    cuda_stream = 140000000001234


STRICT = _EpModes(trt_fp16=False, trt_int8=False, tf32=False)  # what fp32 asks of the GPU EPs


def test_cuda_provider_options_fake_gpu(tiny, tmp_path):
    ctx, _ = tiny
    gpu = BackendContext(ctx.model_dir, ctx.model_info, torch.device("cuda", 1), 4, [Cell(1, 128), Cell(32, 512)],
                         tmp_path, ctx.artifacts)
    opts = OrtOptions.parse({"provider": "cuda", "cuda_graph": True, "fused": True}, gpu.device.type)
    (name, cuda), cpu = _providers(opts, gpu, _FakeStream(), STRICT, input_names=["input_ids"])
    assert (name, cpu) == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert cuda == {"device_id": "1", "has_user_compute_stream": "1", "user_compute_stream": "140000000001234",
                    "enable_cuda_graph": "1", "use_tf32": "0"}


def test_tensorrt_provider_options_fake_gpu(tiny, tmp_path):
    ctx, _ = tiny
    gpu = BackendContext(ctx.model_dir, ctx.model_info, torch.device("cuda"), 4, [Cell(1, 128), Cell(32, 512)],
                         tmp_path, ctx.artifacts)
    opts = OrtOptions.parse({"provider": "tensorrt", "cuda_graph": True}, gpu.device.type)
    names = ctx.artifacts["export"]["fp32"]["inputs"]
    fp16 = _EpModes(trt_fp16=True, trt_int8=False, tf32=False)
    (trt_name, trt), (cuda_name, cuda), _ = _providers(opts, gpu, _FakeStream(), fp16, input_names=names)
    assert (trt_name, cuda_name) == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert trt["trt_fp16_enable"] == "1" and trt["trt_cuda_graph_enable"] == "1"
    assert trt["trt_profile_min_shapes"] == "input_ids:1x1,attention_mask:1x1,token_type_ids:1x1"
    assert trt["trt_profile_max_shapes"] == "input_ids:32x512,attention_mask:32x512,token_type_ids:32x512"
    assert Path(trt["trt_engine_cache_path"]).is_dir()
    assert Path(trt["trt_engine_cache_path"]).parent == tmp_path / "ort_tensorrt_cache"
    assert cuda["enable_cuda_graph"] == "0"  # the TensorRT EP owns the graph; the CUDA EP only runs leftovers
    assert trt["user_compute_stream"] == cuda["user_compute_stream"] == "140000000001234"


def test_two_models_of_one_architecture_get_their_own_tensorrt_engine_cache_fake_gpu(tiny, tmp_path):
    """The TensorRT EP names cached engines after the graph, not the weights: one folder per model content."""
    ctx, _ = tiny
    opts = OrtOptions.parse({"provider": "tensorrt"}, "cuda")
    other_weights = {**ctx.model_info, "weights_sha256": "f" * 64}
    caches = []
    for info in (ctx.model_info, other_weights):
        gpu = BackendContext(ctx.model_dir, info, torch.device("cuda"), 4, ctx.cells, tmp_path, ctx.artifacts)
        (_, trt), _, _ = _providers(opts, gpu, _FakeStream(), STRICT, input_names=["input_ids"])
        caches.append(trt["trt_engine_cache_path"])
    assert caches[0] != caches[1]
    assert Path(caches[0]).name.startswith(ctx.model_info["weights_sha256"][:16])


# --- an encoder ONNX Runtime's optimizer does not know, through the real sweep (issue 11, item 4)


@pytest.fixture(scope="module")
def deberta_rows(tmp_path_factory):
    model_dir = save_tiny_encoder(tmp_path_factory.mktemp("deberta") / "model", "deberta-v2", **DEBERTA_V2)
    info = resolve_model(ModelSpec(source="local", name=str(model_dir)), tmp_path_factory.mktemp("m"), 0)
    config = config_for([2], [24], precisions=("fp32", "fp16"))
    cells = [Cell(2, 24)]
    artifacts = export_stage(info, config, tmp_path_factory.mktemp("onnx"))
    ctx = BackendContext(Path(info["path"]), info, torch.device("cpu"), 1, cells, tmp_path_factory.mktemp("work"),
                         artifacts={"export": artifacts})
    reference = compute_reference(info, cells, torch.device("cpu"), seed=0)
    rows, _ = run_backend("onnxruntime", config.backends["onnxruntime"], config, ctx, reference)
    return artifacts, {(r["variant"], r["precision"]): r for r in rows}


def test_deberta_v2_fused_cell_is_measured_with_its_fusion_counts(deberta_rows):
    artifacts, rows = deberta_rows
    assert set(artifacts) == {"fp32", "fp32_fused"}  # no FP16 graph: no variant here can run it
    row = rows[("cpu-fused", "fp32")]
    assert row["status"] == "ok", row["reason"]
    assert row["cosine"] > 0.99999 and row["p50_ms"] > 0
    extra = json.loads(row["extra"])
    assert extra["fusions"]["SkipLayerNormalization"] == 4 and "Attention" not in extra["fusions"]
    assert "fusion_error" not in extra  # the generic fusions ran; they found no attention to fuse


def test_deberta_v2_cuda_variants_on_a_cpu_machine_are_skipped_for_the_provider(deberta_rows):
    _, rows = deberta_rows
    for variant, provider in (("cuda-graph", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")):
        for precision in ("fp32", "fp16"):
            row = rows[(variant, precision)]
            assert row["status"] == "skipped", row["reason"]
            assert row["reason"].startswith(f"{provider} is not available in this onnxruntime build")


# --- the real sweep on MiniLM ------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_rows(tmp_path_factory):
    info = resolve_model(ModelSpec(), tmp_path_factory.mktemp("m"), 0)
    config = config_for([2], [24], precisions=("fp32", "fp16", "bf16"))
    cells = [Cell(2, 24)]
    ctx = BackendContext(
        Path(info["path"]), info, torch.device("cpu"), 1, cells, tmp_path_factory.mktemp("work"),
        artifacts={"export": export_stage(info, config, tmp_path_factory.mktemp("onnx"))},
    )
    reference = compute_reference(info, cells, torch.device("cpu"), seed=0)
    rows, _ = run_backend("onnxruntime", config.backends["onnxruntime"], config, ctx, reference)
    return {(r["variant"], r["precision"]): r for r in rows}


def test_minilm_sweep_cpu_cells_pass_parity(minilm_rows):
    for variant in ("cpu", "cpu-fused", "cpu-host"):
        row = minilm_rows[(variant, "fp32")]
        assert row["status"] == "ok", row["reason"]
        assert row["cosine"] > 0.99999 and row["max_abs"] < 1e-3
        assert row["p50_ms"] > 0 and row["setup_s"] > 0 and row["export_s"] > 0
        extra = json.loads(row["extra"])
        assert extra["provider"] == "cpu" and extra["threads"] == 1 and extra["exporter"] == "torchscript"
    fused = json.loads(minilm_rows[("cpu-fused", "fp32")]["extra"])["fusions"]
    assert fused == {"Attention": 6, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 12, "BiasGelu": 6}


def test_minilm_sweep_records_why_other_cells_did_not_run(minilm_rows):
    assert minilm_rows[("cpu", "fp16")]["status"] == "unsupported"
    assert minilm_rows[("cpu", "bf16")]["status"] == "unsupported"
    for precision in ("fp32", "fp16", "bf16"):
        assert minilm_rows[("tensorrt", precision)]["status"] in ("skipped", "unsupported")
        assert minilm_rows[("cuda-graph", precision)]["status"] in ("skipped", "unsupported")
    assert "TensorrtExecutionProvider is not available" in minilm_rows[("tensorrt", "fp32")]["reason"]

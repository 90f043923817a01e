"""TensorRT engine builds, for real, with TensorRT-RTX on this CPU-only machine.

TensorRT-RTX builds an engine without a GPU for a compute capability we name, so the whole
build stage (profiles from the grid, content-hashed cache, parser errors, the Kedro node and
catalog) runs here. Running an engine needs a GPU TensorRT-RTX supports: those tests are named
``..._needs_supported_gpu`` and skip elsewhere. ``..._fake_gpu`` tests hand a made-up GPU
description to pure functions, to check what would be said on a GPU this machine lacks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from bench_pipeline.backends.base import BackendContext, Cell, CellFailure
from bench_pipeline.backends.onnx.export import export_onnx
from bench_pipeline.backends.tensorrt.build import (
    RTX,
    EngineError,
    TensorRTBuildSpec,
    build_engine,
    build_engines,
    detect_flavour,
    engine_mismatch,
    float16_onnx,
    local_gpu,
    profile_shapes,
    read_engine,
    resolve_target,
    rtx_targets,
)
from bench_pipeline.backends.tensorrt.records import TensorRTRecord
from bench_pipeline.backends.tensorrt.runtime import TensorRTBackend
from bench_pipeline.config import BenchmarkConfig
from bench_pipeline.system.files import file_sha256

pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX is not installed (pip install tensorrt-rtx)")

GRID = {"batch_sizes": [1, 4, 2], "sequence_lengths": [16, 64, 32]}
HOPPER = ((9, 0), "NVIDIA H100 80GB HBM3")
EXPORT_S = 1.25  # what the export stage says the FP32 export took


@pytest.fixture(scope="module")
def rtx():
    flavour, reason = detect_flavour(RTX)
    assert flavour is not None, reason
    return flavour


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bert_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return Path(export_onnx(tiny_bert_dir, out, exporter="torchscript", opset=17)["path"])


@pytest.fixture
def corrupt_onnx(tmp_path, tiny_onnx) -> Path:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(tiny_onnx.read_bytes()[:4000])
    return path


def spec_in(tmp_path: Path, **overrides) -> TensorRTBuildSpec:
    return TensorRTBuildSpec(
        engine_dir=str(tmp_path / "engines"), timing_cache_dir=str(tmp_path / "cache"), **overrides
    )


def build(onnx, tmp_path, rtx, *, precision="fp32", gpu=None, grid=GRID, **spec):
    return build_engines(
        onnx, spec_in(tmp_path, **spec), precision=precision, batch_sizes=grid["batch_sizes"],
        sequence_lengths=grid["sequence_lengths"], flavour=rtx, gpu=gpu,
    )


def stage_entry(onnx, tmp_path, rtx, **kwargs):
    """A built precision as the tensorrt stage records it: with the export's cost."""
    return build(onnx, tmp_path, rtx, **kwargs) | {"export_s": EXPORT_S}


# ----------------------------------------------------------------------------- flavour, profiles


def test_detect_flavour_finds_tensorrt_rtx_with_its_version(rtx):
    import tensorrt_rtx_bindings

    assert rtx.name == RTX
    assert rtx.version == tensorrt_rtx_bindings.__version__
    assert rtx.label == f"TensorRT-RTX {rtx.version}"
    with pytest.raises(ValueError, match="unknown TensorRT flavour 'tensorrt-llm'"):
        detect_flavour("tensorrt-llm")


def test_detect_flavour_says_why_when_full_tensorrt_is_missing():
    flavour, reason = detect_flavour("tensorrt")
    if flavour is not None:
        pytest.skip(f"full TensorRT {flavour.version} is installed here")
    assert reason.startswith("no TensorRT library can be imported (tensorrt: ")


def test_dynamic_profile_spans_the_grid_tuned_at_its_median():
    assert profile_shapes(GRID["batch_sizes"], GRID["sequence_lengths"], "dynamic") == [
        {"min": [1, 16], "opt": [2, 32], "max": [4, 64]}
    ]


def test_static_profiles_are_one_fixed_shape_per_cell():
    profiles = profile_shapes([2, 1], [32, 16], "static")
    assert [p["min"] for p in profiles] == [[1, 16], [1, 32], [2, 16], [2, 32]]
    assert all(p["min"] == p["opt"] == p["max"] for p in profiles)


def test_bad_profile_input_is_named():
    with pytest.raises(ValueError, match=r"unknown shapes mode 'both'; allowed: \['dynamic', 'static'\]"):
        profile_shapes([1], [8], "both")
    with pytest.raises(ValueError, match=r"batch_sizes \[0\] must be a non-empty list of positive integers"):
        profile_shapes([0], [8], "dynamic")


def test_build_spec_rejects_a_malformed_compute_capability():
    with pytest.raises(ValueError, match="target_compute_capability 'sm89' is not a compute capability"):
        TensorRTBuildSpec(target_compute_capability="sm89")
    with pytest.raises(ValueError, match="shapes"):
        TensorRTBuildSpec(shapes="both")


# ----------------------------------------------------------------------------------- real builds


def test_build_writes_an_engine_for_the_grid_and_reuses_it(tiny_onnx, tmp_path, rtx):
    first = build(tiny_onnx, tmp_path, rtx)

    assert first["status"] == "ok" and first["flavour"] == RTX and first["version"] == rtx.version
    assert first["target_cc"] == "8.9"  # no GPU here: the configured default
    assert "there is no GPU here" in first["note"]
    assert not first["cache_hit"] and first["build_s"] > 0
    [engine] = first["engines"]
    path = Path(engine["path"])
    assert path.stat().st_size == engine["engine_bytes"] == first["engine_bytes"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == engine["sha256"]
    assert engine["options"]["profile"] == profile_shapes(GRID["batch_sizes"], GRID["sequence_lengths"], "dynamic")[0]
    assert engine["options"]["tf32"] is False  # FP32 means FP32
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["key"] == engine["key"] and sidecar["sha256"] == engine["sha256"]
    mtime = path.stat().st_mtime_ns

    again = build(tiny_onnx, tmp_path, rtx)

    assert again["cache_hit"] and again["engines"][0]["path"] == str(path)
    assert again["build_s"] == first["build_s"]  # the cost of the build that made it, not of the lookup
    assert path.stat().st_mtime_ns == mtime
    assert read_engine(again["engines"][0]) == path.read_bytes()


def test_changed_compute_capability_forces_a_rebuild(tiny_onnx, tmp_path, rtx):
    for_ada = build(tiny_onnx, tmp_path, rtx, target_compute_capability="8.9")["engines"][0]
    for_ampere = build(tiny_onnx, tmp_path, rtx, target_compute_capability="8.6")["engines"][0]

    assert not for_ampere["cache_hit"]
    assert for_ampere["key"] != for_ada["key"] and for_ampere["path"] != for_ada["path"]
    assert Path(for_ada["path"]).is_file() and Path(for_ampere["path"]).is_file()
    assert engine_mismatch(for_ampere, rtx, ((8, 9), "NVIDIA L4")) == (
        "the engine was built for compute capability 8.6; this GPU (NVIDIA L4) is 8.9; rerun the tensorrt stage here"
    )


def test_changed_library_version_forces_a_rebuild_and_is_never_loaded(tiny_onnx, tmp_path, rtx):
    # The same real library under another version string: how a record from an upgrade looks.
    older = dataclasses.replace(rtx, version="1.0.0.1")
    old_engine = build(tiny_onnx, tmp_path, older)["engines"][0]
    new_engine = build(tiny_onnx, tmp_path, rtx)["engines"][0]

    assert not new_engine["cache_hit"] and new_engine["key"] != old_engine["key"]
    assert engine_mismatch(old_engine, rtx, ((8, 9), "NVIDIA L4")) == (
        f"the engine was built with TensorRT-RTX 1.0.0.1 but this machine has TensorRT-RTX {rtx.version}; "
        "rerun the tensorrt stage here"
    )


def test_tampered_engine_is_rebuilt_and_never_read(tiny_onnx, tmp_path, rtx):
    engine = build(tiny_onnx, tmp_path, rtx)["engines"][0]
    path = Path(engine["path"])
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")

    with pytest.raises(EngineError, match="does not match its recorded sha256") as failure:
        read_engine(engine)
    assert failure.value.status == "error"
    rebuilt = build(tiny_onnx, tmp_path, rtx)["engines"][0]
    assert not rebuilt["cache_hit"] and hashlib.sha256(path.read_bytes()).hexdigest() == rebuilt["sha256"]


def test_static_mode_builds_one_engine_per_cell(tiny_onnx, tmp_path, rtx):
    grid = {"batch_sizes": [1, 2], "sequence_lengths": [16, 32]}
    record = build(tiny_onnx, tmp_path, rtx, grid=grid, shapes="static", precision="fp16")

    assert record["shapes"] == "static" and len(record["engines"]) == 4
    assert [e["options"]["profile"]["max"] for e in record["engines"]] == [[1, 16], [1, 32], [2, 16], [2, 32]]
    assert record["engine_bytes"] == sum(e["engine_bytes"] for e in record["engines"])
    assert len({e["key"] for e in record["engines"]}) == 4


def test_float16_copy_is_plain_fp16_that_onnxruntime_runs_close_to_fp32(tiny_onnx, tmp_path):
    import onnx
    import onnxruntime as ort

    converted = float16_onnx(tiny_onnx, tmp_path)
    model = onnx.load(converted["path"])
    assert not converted["cached"] and float16_onnx(tiny_onnx, tmp_path)["cached"]
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}  # nothing TensorRT's parser rejects
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    float_weights = [t for t in model.graph.initializer if t.data_type in floats]
    assert float_weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in float_weights)
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.INT64] * 3
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {onnx.TensorProto.FLOAT}

    ids = np.random.default_rng(0).integers(0, 1000, (2, 16))
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    fp32 = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(None, feeds)
    fp16 = ort.InferenceSession(converted["path"], providers=["CPUExecutionProvider"]).run(None, feeds)
    for full, half in zip(fp32, fp16):
        np.testing.assert_allclose(half, full, atol=2e-2)


def test_truncated_cached_float16_copy_is_rebuilt(tiny_onnx, tmp_path):
    import onnx

    first = float16_onnx(tiny_onnx, tmp_path)
    path = Path(first["path"])
    assert first["sha256"] == file_sha256(path) and first["source"] == str(tiny_onnx)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    rebuilt = float16_onnx(tiny_onnx, tmp_path)

    assert rebuilt["cached"] is False and rebuilt["path"] == first["path"]
    assert file_sha256(path) == rebuilt["sha256"] == first["sha256"]
    onnx.checker.check_model(str(path))
    assert float16_onnx(tiny_onnx, tmp_path)["cached"] is True


def test_parser_rejection_carries_the_parser_message(corrupt_onnx, tmp_path, rtx):
    with pytest.raises(EngineError) as failure:
        build(corrupt_onnx, tmp_path, rtx)
    assert failure.value.status == "fail_build"
    assert failure.value.reason.startswith("the ONNX parser rejected corrupt.onnx: ")
    assert "Failed to parse the ONNX model" in failure.value.reason
    assert not (tmp_path / "engines").exists()


def test_missing_onnx_is_named(tmp_path, rtx):
    with pytest.raises(EngineError, match="ONNX file '.*nowhere.onnx' does not exist"):
        build_engine(tmp_path / "nowhere.onnx", tmp_path, precision="fp32",
                     profile={"min": [1, 8], "opt": [1, 8], "max": [1, 8]}, target_cc="8.9", flavour=rtx)


# ------------------------------------------------------------------ targets on GPUs we lack here


def test_rtx_targets_come_from_the_library(rtx):
    assert {(8, 0), (8, 6), (8, 9), (12, 0)} <= set(rtx_targets(rtx))
    assert (9, 0) not in rtx_targets(rtx)


def test_hopper_builds_for_the_default_target_and_says_so_fake_gpu(rtx):
    target, note = resolve_target(rtx, "auto", "8.9", HOPPER)
    assert target == "8.9"
    assert "this GPU (NVIDIA H100 80GB HBM3, 9.0) is not one of its targets" in note
    with pytest.raises(EngineError, match="cannot target compute capability 9.0; allowed: 7.5, 8.0, 8.6, 8.9, 12.0"):
        resolve_target(rtx, "9.0", "8.9", HOPPER)
    assert resolve_target(rtx, "auto", "8.9", ((8, 6), "NVIDIA RTX A6000")) == ("8.6", None)


def test_engine_mismatch_on_hopper_names_the_supported_capabilities_fake_gpu(tiny_onnx, tmp_path, rtx):
    engine = build(tiny_onnx, tmp_path, rtx)["engines"][0]
    supported = "/".join(f"{major}.{minor}" for major, minor in rtx_targets(rtx))
    assert engine_mismatch(engine, rtx, HOPPER) == (
        f"TensorRT-RTX runs on compute capability {supported}; this GPU (NVIDIA H100 80GB HBM3) is 9.0"
    )
    assert engine_mismatch(engine, rtx, ((8, 9), "NVIDIA L4")) is None


# --------------------------------------------------------------------------- Kedro stage, catalog


def benchmark_config(precisions, **tensorrt) -> BenchmarkConfig:
    return BenchmarkConfig(grid=GRID, precisions=precisions, backends={"eager": {}, "tensorrt": tensorrt})


def run_stage(tmp_path, export_artifacts, config, spec):
    """The tensorrt namespace's build step through the catalog, from ``export_artifacts["fp32"]`` (the ONNX export)."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner
    from kedro_datasets.json import JSONDataset

    from bench_pipeline.pipelines.benchmark import backend_pipeline

    artifacts_file = tmp_path / "tensorrt_artifacts.json"
    catalog = DataCatalog(
        {
            "onnx_fp32": MemoryDataset(export_artifacts.get("fp32", {})),
            "onnx_int8": MemoryDataset(export_artifacts.get("int8", {})),  # the quantize step's records
            "params:benchmark": MemoryDataset(config),
            "params:tensorrt_build": MemoryDataset(spec),
            "tensorrt_artifacts": JSONDataset(filepath=str(artifacts_file)),
        }
    )
    SequentialRunner().run(backend_pipeline("tensorrt", plan=False), catalog)
    return JSONDataset(filepath=str(artifacts_file)).load()


def test_stage_builds_through_the_catalog_from_the_fp32_export(tiny_onnx, tmp_path):
    export_artifacts = {
        "fp32": {"status": "ok", "path": str(tiny_onnx), "sha256": "from the export stage", "export_s": EXPORT_S},
        "fp16": {"status": "ok", "path": "ONNX Runtime's fused graph: not for TensorRT"},
    }
    variants = [{"name": "plain"}, {"name": "graphs", "precisions": ["fp32"]}]
    config = benchmark_config(["fp32", "fp16", "bf16"], variants=variants)

    artifacts = run_stage(tmp_path, export_artifacts, config, spec_in(tmp_path))

    assert list(artifacts) == ["fp32", "fp16", "bf16"]
    fp32, fp16 = artifacts["fp32"], artifacts["fp16"]
    assert fp32["status"] == fp16["status"] == "ok" and fp32["target_cc"] == "8.9" and fp32["flavour"] == RTX
    assert fp16["fp16_conversion"]["source"] == str(tiny_onnx)
    assert fp16["engines"][0]["onnx_path"] == fp16["fp16_conversion"]["path"]
    assert fp16["engines"][0]["onnx_sha256"] != fp32["engines"][0]["onnx_sha256"]
    for entry in (fp32, fp16):
        assert read_engine(entry["engines"][0])  # re-read from the path the catalog kept, hash checked
    assert artifacts["bf16"]["status"] == "unsupported" and "no BF16 ONNX" in artifacts["bf16"]["reason"]
    assert fp32["export_s"] == fp16["export_s"] == EXPORT_S  # the engines' one-off cost includes the export

    # where the engine cannot run (no GPU here) its one-off cost is still a result: FP16 includes the conversion
    with pytest.raises(CellFailure) as failure:
        TensorRTBackend().open(backend_context("cpu", artifacts, tmp_path), "default", "fp16", {})
    assert failure.value.costs == {
        "build_s": fp16["build_s"] + fp16["fp16_conversion"]["convert_s"], "export_s": EXPORT_S,
    }
    assert fp16["fp16_conversion"]["convert_s"] > 0

    rerun = run_stage(tmp_path, export_artifacts, config, spec_in(tmp_path))
    assert rerun["fp32"]["cache_hit"] and rerun["fp16"]["cache_hit"] and rerun["fp16"]["fp16_conversion"]["cached"]
    assert rerun["fp16"]["engines"][0]["sha256"] == fp16["engines"][0]["sha256"]


def test_stage_builds_for_the_configured_gpu_fake_gpu(tiny_onnx, tmp_path, monkeypatch):
    """benchmark.device cuda:1 on a machine whose current GPU (0) is an H100 and GPU 1 an A6000:
    the engine is built for GPU 1 (TensorRT-RTX targets 8.6), not for the current one."""
    asked = []

    def described_gpu(device=None):
        asked.append(device)
        return ((8, 6), "NVIDIA RTX A6000") if device == torch.device("cuda", 1) else HOPPER

    monkeypatch.setattr("bench_pipeline.backends.tensorrt.stage.local_gpu", described_gpu)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # config validation is told of two GPUs
    config = BenchmarkConfig(device="cuda:1", grid=GRID, precisions=["fp32"], backends={"tensorrt": {}})
    export_artifacts = {"fp32": {"status": "ok", "path": str(tiny_onnx), "export_s": EXPORT_S}}

    artifacts = run_stage(tmp_path, export_artifacts, config, spec_in(tmp_path))

    assert asked == [torch.device("cuda", 1)]
    assert artifacts["fp32"]["status"] == "ok" and artifacts["fp32"]["target_cc"] == "8.6"
    assert artifacts["fp32"]["note"] is None


def test_stage_turns_a_rejected_onnx_into_fail_build(corrupt_onnx, tmp_path):
    export_artifacts = {"fp32": {"status": "ok", "path": str(corrupt_onnx), "export_s": EXPORT_S}}
    artifacts = run_stage(tmp_path, export_artifacts, benchmark_config(["fp32", "fp16"]), spec_in(tmp_path))

    assert artifacts["fp32"]["status"] == "fail_build"
    assert "the ONNX parser rejected corrupt.onnx" in artifacts["fp32"]["reason"]
    assert artifacts["fp16"]["status"] == "fail_export"
    assert artifacts["fp16"]["reason"].startswith("FP16 conversion for TensorRT: ")


def test_stage_passes_on_a_failed_export(tmp_path):
    export_artifacts = {"fp32": {"status": "fail_export", "reason": "torchscript export failed: boom"}}
    artifacts = run_stage(tmp_path, export_artifacts, benchmark_config(["fp32", "fp16"]), spec_in(tmp_path))
    expected = {"status": "fail_export", "reason": "no ONNX to build from: torchscript export failed: boom"}
    assert artifacts == {"fp32": expected, "fp16": expected}


def test_stage_builds_nothing_when_tensorrt_is_off(tmp_path):
    config = BenchmarkConfig(grid=GRID, backends={"eager": {}, "tensorrt": {"enabled": False}})
    assert run_stage(tmp_path, {}, config, spec_in(tmp_path)) == {}


# ---------------------------------------------------------------------------------------- backend


def backend_context(device: str, artifacts: dict, model_dir: Path) -> BackendContext:
    return BackendContext(
        model_dir=model_dir, model_info={"name": "tiny-bert"}, device=torch.device(device), threads=1,
        cells=[Cell(1, 16)], workdir=model_dir, artifacts={"tensorrt": artifacts},
    )


def test_backend_on_this_cpu_machine_is_skipped_with_the_reason(tiny_onnx, tiny_bert_dir, tmp_path, rtx):
    artifacts = {"fp32": stage_entry(tiny_onnx, tmp_path, rtx)}
    with pytest.raises(CellFailure) as failure:
        TensorRTBackend().open(backend_context("cpu", artifacts, tiny_bert_dir), "default", "fp32", {})
    assert failure.value.status == "skipped"
    assert failure.value.reason == (
        f"TensorRT runs engines only on a CUDA GPU and this run's device is cpu "
        f"(the TensorRT-RTX {rtx.version} engine for compute capability 8.9 was built)"
    )
    # the build ran and its cost is a result, also where the engine cannot execute
    assert failure.value.costs == {"build_s": artifacts["fp32"]["build_s"], "export_s": EXPORT_S}
    assert failure.value.extra["engine_bytes"] == artifacts["fp32"]["engine_bytes"]
    assert failure.value.extra["profiles"] == ["batch 1..4 x seq 16..64"]


def test_backend_passes_on_the_build_status(tiny_bert_dir):
    artifacts = {"fp32": {"status": "fail_build", "reason": "the ONNX parser rejected model.onnx: ..."}}
    with pytest.raises(CellFailure) as failure:
        TensorRTBackend().open(backend_context("cpu", artifacts, tiny_bert_dir), "default", "fp32", {})
    assert (failure.value.status, failure.value.reason) == ("fail_build", "the ONNX parser rejected model.onnx: ...")
    with pytest.raises(CellFailure, match="the tensorrt stage built no fp16 engine"):
        TensorRTBackend().open(backend_context("cpu", artifacts, tiny_bert_dir), "default", "fp16", {})
    with pytest.raises(ValueError, match=r"unknown tensorrt option\(s\) \['graphs'\]"):
        TensorRTBackend().open(backend_context("cpu", artifacts, tiny_bert_dir), "default", "fp32", {"graphs": True})


def test_backend_on_hopper_with_only_tensorrt_rtx_is_skipped_fake_gpu(
    tiny_onnx, tiny_bert_dir, tmp_path, rtx, monkeypatch
):
    """No CUDA call happens before the compute-capability check, so a described H100 is enough."""
    artifacts = {"fp32": stage_entry(tiny_onnx, tmp_path, rtx)}
    monkeypatch.setattr("bench_pipeline.backends.tensorrt.runtime.local_gpu", lambda device: HOPPER)
    with pytest.raises(CellFailure) as failure:
        TensorRTBackend().open(backend_context("cuda", artifacts, tiny_bert_dir), "default", "fp32", {})
    assert failure.value.status == "skipped"
    assert failure.value.reason.startswith("TensorRT-RTX runs on compute capability ")
    assert failure.value.reason.endswith("; this GPU (NVIDIA H100 80GB HBM3) is 9.0")


# ------------------------------------------------------------- execution: only on a supported GPU


def supported_gpu(rtx):
    gpu = local_gpu()
    if gpu is None or gpu[0] not in rtx_targets(rtx):
        pytest.skip(f"needs a GPU TensorRT-RTX runs on; here: {gpu}")
    return gpu


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_engine_outputs_match_torch_needs_supported_gpu(tiny_onnx, tiny_bert_dir, tmp_path, rtx, cuda_graph):
    from transformers import BertModel

    gpu = supported_gpu(rtx)
    artifacts = {"fp32": stage_entry(tiny_onnx, tmp_path, rtx, gpu=gpu)}
    session = TensorRTBackend().open(backend_context("cuda", artifacts, tiny_bert_dir), "default", "fp32",
                                     {"cuda_graph": cuda_graph})
    try:
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(0, 1000, (2, 32), generator=generator)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        runner = session.prepare(inputs, Cell(2, 32))
        for _ in range(3):
            runner.run()
        outputs = runner.outputs()
        with torch.no_grad():
            expected = BertModel.from_pretrained(tiny_bert_dir).eval()(**inputs)
        np.testing.assert_allclose(outputs["last_hidden_state"], expected.last_hidden_state.numpy(), atol=1e-3)
        np.testing.assert_allclose(outputs["pooler_output"], expected.pooler_output.numpy(), atol=1e-3)
        assert session.extra["input_dtypes"]["input_ids"] == "torch.int64"
        with pytest.raises(CellFailure, match="outside the built engine profile"):
            session.prepare(inputs, Cell(8, 32))
    finally:
        session.close()


def test_a_tensorrt_record_with_a_missing_or_mistyped_fact_fails_at_the_stage():
    engine = {"path": "e.plan", "sha256": "ab", "engine_bytes": 10, "build_s": 1.0, "key": "k", "onnx_path": "m.onnx",
              "onnx_sha256": "cd", "options": {"profile": {"min": [1, 1], "opt": [1, 1], "max": [1, 1]}},
              "flavour": RTX, "version": "1.2", "target_cc": "8.9", "device_name": None,
              "flavour_label": "TensorRT-RTX", "timing_cache": None, "timing_cache_hit": None,
              "built_at": "2026-12-02T00:00:00+00:00", "cache_hit": False}
    facts = {"precision": "fp32", "flavour": RTX, "version": "1.2", "target_cc": "8.9", "device_name": None,
             "shapes": "dynamic", "note": None, "build_s": 1.0, "engine_bytes": 10, "cache_hit": False,
             "engines": [engine], "export_s": EXPORT_S}
    record = TensorRTRecord(**facts)
    assert record.model_dump() == {"status": "ok", **facts}  # the catalog's dict; FP32 has no fp16_conversion key
    assert list(record.model_dump()) == ["status", *facts]
    assert record.engines[0].target_cc == "8.9" and record.conversion_s == 0.0
    with pytest.raises(ValidationError, match="engines.0.sha256"):
        TensorRTRecord(**facts | {"engines": [{k: v for k, v in engine.items() if k != "sha256"}]})
    with pytest.raises(ValidationError, match="build_s"):
        TensorRTRecord(**facts | {"build_s": "slow"})

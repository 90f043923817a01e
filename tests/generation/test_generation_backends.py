"""Every generation backend on a real tiny decoder (the embedded tiny Llama, random weights) on CPU: the same
greedy ids as FP32 eager with the dynamic cache, and the KV cache paying off per token at a long prompt."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from bench_pipeline.backends.base import Cell, CellFailure
from bench_pipeline.backends.tensorrt.build import EngineError, TensorRTBuildSpec, build_engine, detect_flavour
from bench_pipeline.config import BenchmarkConfig, ModelSpec
from bench_pipeline.generation.model import materialize_preset, prompt_ids, resolve_generation_model
from bench_pipeline.generation.onnx_export import cache_names, export_generation_onnx
from bench_pipeline.generation.ort_backend import CPU_FP16_NOTE, OrtGenerateBackend
from bench_pipeline.generation.parity import token_parity
from bench_pipeline.generation.plan import GenerationContext
from bench_pipeline.generation.tensorrt_backend import TensorRTGenerateBackend, decoder_profile
from bench_pipeline.generation.torch_backend import CompiledGenerateBackend, EagerGenerateBackend
from bench_pipeline.harness.status import Status

NEW_TOKENS = 6
RTX_MISSING = "TensorRT-RTX (extra tensorrt-rtx) builds engines without a GPU"
VARIANTS = [
    (EagerGenerateBackend, {"cache": "static"}),
    (CompiledGenerateBackend, {"backend": "eager"}),
    (OrtGenerateBackend, {"provider": "cpu", "cache": True}),
    (OrtGenerateBackend, {"provider": "cpu", "cache": False}),
]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> GenerationContext:
    models = tmp_path_factory.mktemp("models")
    info = resolve_generation_model(ModelSpec(source="default"), models, seed=0)
    tensorrt = TensorRTBuildSpec(flavour="tensorrt-rtx", engine_dir=str(models / "engines"),
                                 timing_cache_dir=str(models / "timing"))
    return GenerationContext(model_dir=materialize_preset("tiny-llama", models, 0), model_info=info,
                             device=torch.device("cpu"), threads=1, cells=[], workdir=models / "work",
                             new_tokens=NEW_TOKENS, tensorrt_build=tensorrt)


def generate(backend, ctx, options, cell, precision="fp32"):
    session = backend().open(ctx, "v", precision, options)
    try:
        runner = session.prepare(session.make_inputs(cell, 0), cell)
        return runner.outputs()
    finally:
        session.close()


@pytest.mark.parametrize(("backend", "options"), VARIANTS, ids=lambda v: str(v))
def test_every_backend_generates_the_fp32_eager_greedy_ids(ctx, backend, options):
    cell = Cell(2, 24)
    reference = generate(EagerGenerateBackend, ctx, {}, cell)
    assert reference["token_ids"].shape == (2, NEW_TOKENS)
    assert len(set(reference["token_ids"].ravel().tolist())) > 1  # random weights still pick varied ids
    outputs = generate(backend, ctx, options, cell)
    np.testing.assert_array_equal(outputs["token_ids"], reference["token_ids"])
    finite = np.isfinite(reference["step1_logits"])
    np.testing.assert_allclose(outputs["step1_logits"][finite], reference["step1_logits"][finite], atol=1e-4)


def test_the_compiled_variant_compiles_the_decode_step_through_hf_generate(ctx):
    """A "compiled" row must come from a compiled model: HF's generate compiles the decode step (one graph for
    the one-token step; the prefill stays eager, or it would add a graph), counted in the cell's costs, and a
    second shape recompiles."""
    session = CompiledGenerateBackend().open(ctx, "v", "fp32", {"backend": "eager"})
    try:
        assert session.extra["compiled"].startswith("decode step")
        costs = {}
        for cell in (Cell(1, 16), Cell(2, 16)):
            session.prepare(session.make_inputs(cell, 0), cell)
            costs[cell] = session.cell_costs(cell)
        # one graph per shape: the decode step's. A compiled prefill (16 tokens) would be a second one.
        assert costs[Cell(1, 16)]["recompiles"] == 1 and costs[Cell(1, 16)]["compile_s"] > 0
        assert costs[Cell(2, 16)]["recompiles"] == 1  # a new batch is a new static cache shape
        assert session.model._compiled_call is not None  # HF's own compiled call, not a patched forward
    finally:
        session.close()


def test_prompt_ids_are_seeded_and_inside_the_vocabulary():
    a, b = prompt_ids(1024, 2, 16, seed=3), prompt_ids(1024, 2, 16, seed=3)
    assert torch.equal(a["input_ids"], b["input_ids"]) and a["attention_mask"].all()
    assert int(a["input_ids"].max()) < 1024 and not torch.equal(a["input_ids"], prompt_ids(1024, 2, 16, 4)["input_ids"])


def test_cached_decode_is_faster_per_token_than_no_cache_at_a_long_prompt(ctx):
    """The seed study's point, relative only: at a 512-token prompt a decode step with the cache runs one
    token through the model, without it the whole sequence; medians over several generations."""
    cell = Cell(1, 512)
    per_token = {}
    for with_cache in (True, False):
        session = OrtGenerateBackend().open(ctx, "v", "fp32", {"provider": "cpu", "cache": with_cache})
        runner = session.prepare(session.make_inputs(cell, 0), cell)
        for _ in range(5):
            runner.run()
        steps = runner.round_steps(5)["step_offsets_ms"]
        per_token[with_cache] = float(np.median(np.concatenate([np.diff(s) for s in steps])))
        session.close()
    assert per_token[True] * 2 < per_token[False], per_token


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_builds_the_decoder_engine_here_and_skips_its_cells_with_the_build_costs(ctx, precision):
    """A real TensorRT-RTX build on this GPU-less machine, for compute capability 8.9: the row keeps what it cost."""
    pytest.importorskip("tensorrt_rtx_bindings", reason=RTX_MISSING)
    ctx = dataclasses.replace(ctx, cells=[Cell(1, 16), Cell(4, 32)])
    with pytest.raises(CellFailure) as failure:
        TensorRTGenerateBackend().open(ctx, "default", precision, {})
    skip = failure.value
    assert skip.status == Status.SKIPPED and "this run's device is cpu" in skip.reason
    assert skip.costs["build_s"] > 0 and skip.costs["export_s"] > 0
    assert skip.extra["target_cc"] == "8.9" and "there is no GPU here" in skip.extra["build_note"]
    assert skip.extra["profiles"] == ["batch 1..4 x new tokens 1..32 x past 0..36, tuned for batch 4, "
                                      f"1 new token(s) on a past of {32 + NEW_TOKENS // 2 - 1}"]
    engines = list(Path(ctx.tensorrt_build.engine_dir).glob(f"{precision}-*.plan"))
    assert len(engines) == 1 and engines[0].stat().st_size == skip.extra["engine_bytes"] > 0
    with pytest.raises(CellFailure) as again:  # the same graph and profile: the engine on disk, not a rebuild
        TensorRTGenerateBackend().open(ctx, "default", precision, {})
    assert again.value.extra["build_cache_hit"] and again.value.costs["build_s"] == skip.costs["build_s"]


def test_decoder_profile_covers_the_prefill_and_the_last_decode_step_of_every_cell():
    layout = {"layers": 2, "kv_heads": 4, "head_dim": 8}
    profile = decoder_profile([Cell(1, 128), Cell(8, 512), Cell(32, 128)], 64, layout)["inputs"]
    assert set(profile) == {"input_ids", "attention_mask", *cache_names(2)[0]}
    for batch, prompt in [(1, 128), (8, 512), (32, 128)]:
        prefill = {"input_ids": [batch, prompt], "attention_mask": [batch, prompt], "past.1.value": [batch, 4, 0, 8]}
        last = prompt + 64 - 2  # the past of the 64th token
        decode = {"input_ids": [batch, 1], "attention_mask": [batch, last + 1], "past.1.value": [batch, 4, last, 8]}
        for shapes in (prefill, decode):
            for name, shape in shapes.items():
                assert all(lo <= d <= hi for lo, d, hi in zip(profile[name]["min"], shape, profile[name]["max"]))
    assert profile["past.0.key"]["opt"] == [8, 4, 512 + 31, 8]  # the 33rd token of the median prompt's 64
    one_token = decoder_profile([Cell(2, 16)], 1, layout)["inputs"]  # only a prefill: no past ever
    assert one_token["past.0.key"]["max"] == [2, 4, 0, 8] and one_token["input_ids"]["opt"] == [2, 16]


def test_a_profile_for_another_graph_fails_the_build_naming_the_inputs(ctx, tmp_path):
    pytest.importorskip("tensorrt_rtx_bindings", reason=RTX_MISSING)
    graph = export_generation_onnx(ctx.model_dir, ctx.model_info["weights_sha256"], ctx.workdir, True)
    flavour, _ = detect_flavour("tensorrt-rtx")
    wrong = decoder_profile([Cell(1, 16)], 4, graph | {"layers": graph["layers"] + 1})  # one cache layer too many
    with pytest.raises(EngineError, match=r"the profile names input\(s\) \['past.2.key', 'past.2.value'\]"):
        build_engine(graph["path"], tmp_path, precision="fp32", profile=wrong, target_cc="8.9", flavour=flavour)


def test_tensorrt_generation_has_no_bf16_graph_to_build_from(ctx):
    with pytest.raises(CellFailure) as failure:
        TensorRTGenerateBackend().precheck(ctx, "default", "bf16", {})
    assert failure.value.status == Status.UNSUPPORTED and "allowed: ['fp32', 'fp16']" in failure.value.reason


def _io_types(path: str) -> dict[str, str]:
    graph = onnx.load(path, load_external_data=False).graph
    return {v.name: onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type) for v in [*graph.input, *graph.output]}


@pytest.mark.parametrize("with_cache", [True, False], ids=["cache", "no-cache"])
def test_the_fp16_decoder_graph_has_fp16_cache_and_logits_io_int64_ids_and_its_own_cache_key(ctx, with_cache):
    args = (ctx.model_dir, ctx.model_info["weights_sha256"], ctx.workdir / "export", with_cache)
    fp32, fp16 = export_generation_onnx(*args), export_generation_onnx(*args, "fp16")
    assert fp16["path"] != fp32["path"] and fp16["precision"] == "fp16"
    types = _io_types(fp16["path"])
    assert types.pop("input_ids") == types.pop("attention_mask") == "INT64"
    assert set(types) == ({"logits", *(f"{d}.{i}.{kv}" for d in ("past", "present") for i in (0, 1)
                                      for kv in ("key", "value"))} if with_cache else {"logits"})
    assert set(types.values()) == {"FLOAT16"}  # no FP32 cache or logits at the edges: nothing cast per step
    assert set(_io_types(fp32["path"]).values()) == {"INT64", "FLOAT"}
    assert fp16["size_bytes"] < 0.6 * fp32["size_bytes"]  # the weights are FP16 too
    assert fp16["export_s"] > fp16["float16_convert_s"] > 0
    again = export_generation_onnx(*args, "fp16")
    assert again["cached"] and again["path"] == fp16["path"]


@pytest.mark.parametrize("with_cache", [True, False], ids=["cache", "no-cache"])
def test_onnxruntime_fp16_generation_runs_on_the_cpu_ep_within_fp16_parity(ctx, with_cache):
    """ONNX Runtime's CPU EP runs the FP16 graph (casting to FP32 around the ops it has no FP16 kernel for):
    judged as every FP16 backend is, by the step-1 logits cosine, the first divergent step recorded."""
    cell = Cell(2, 24)
    reference = generate(EagerGenerateBackend, ctx, {}, cell)
    session = OrtGenerateBackend().open(ctx, "cpu", "fp16", {"provider": "cpu", "cache": with_cache})
    try:
        assert session.extra["precision_note"] == CPU_FP16_NOTE and "fp16" in session.extra["onnx_precision"]
        runner = session.prepare(session.make_inputs(cell, 0), cell)
        if with_cache:  # the prefill's empty past is bound as FP16, like every present after it
            assert {value.data_type() for value in runner.empty_past} == {"tensor(float16)"}
        outputs = runner.outputs()
    finally:
        session.close()
    assert outputs["token_ids"].shape == reference["token_ids"].shape
    assert outputs["step1_logits"].dtype == np.float32
    tolerance = BenchmarkConfig(grid={"batch_sizes": [1], "sequence_lengths": [8]}).tolerances["fp16"]
    columns, failure = token_parity(outputs, reference, "fp16", tolerance)
    assert failure is None, failure
    assert tolerance.min_cosine <= columns["cosine"] < 1.0  # FP16 rounding, not the FP32 graph again
    step = columns["first_divergent_step"]
    assert step is None or 1 <= step <= NEW_TOKENS


def test_onnxruntime_generation_bf16_is_unsupported_with_the_reason(ctx):
    with pytest.raises(CellFailure, match="no BF16 generation graph") as failure:
        OrtGenerateBackend().precheck(ctx, "cpu", "bf16", {"provider": "cpu"})
    assert failure.value.status == Status.UNSUPPORTED


def test_a_decoder_that_cannot_be_exported_is_fail_export_naming_the_graph(ctx, tmp_path):
    broken = dataclasses.replace(ctx, model_dir=tmp_path / "no-model-here", workdir=tmp_path / "work")
    for backend in (OrtGenerateBackend, TensorRTGenerateBackend):
        with pytest.raises(CellFailure) as failure:
            backend().open(broken, "v", "fp32", {"provider": "cpu"} if backend is OrtGenerateBackend else {})
        assert failure.value.status == Status.FAIL_EXPORT
        assert failure.value.reason.startswith("decoder ONNX export (with cache, fp32): ")


def test_a_build_that_runs_out_of_memory_keeps_the_export_cost_and_the_target_fake_build_failure(ctx, monkeypatch):
    """An out-of-memory inside TensorRT cannot be made to happen here: the builder call is replaced by one that
    raises as a native library does."""
    pytest.importorskip("tensorrt_rtx_bindings", reason=RTX_MISSING)
    from bench_pipeline.generation import tensorrt_backend

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("std::bad_alloc: out of memory")

    monkeypatch.setattr(tensorrt_backend, "build_engine", out_of_memory)
    with pytest.raises(CellFailure) as failure:
        TensorRTGenerateBackend().open(dataclasses.replace(ctx, cells=[Cell(1, 16)]), "default", "fp32", {})
    assert failure.value.status == Status.OOM and "out of memory" in failure.value.reason
    assert failure.value.costs["export_s"] > 0 and failure.value.extra["target_cc"] == "8.9"

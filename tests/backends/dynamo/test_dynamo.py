"""The dynamo stage for real on CPU: inductor compiles a tiny random BERT (g++ on this machine),
per-shape compile times, recompiles, graph breaks, failures per shape, and the compiled
modules carried in memory through Kedro to the dynamo benchmark."""

from __future__ import annotations

import importlib.util
import json
import pickle

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError
from torch._dynamo.backends.registry import register_backend
from torch._dynamo.utils import counters

from bench_pipeline.backends.base import BackendContext, Cell, CellFailure
from bench_pipeline.backends.dynamo.compile import (
    CompileSpec,
    compile_variant,
    registered_backends,
    validate_variant_options,
    warm_up_compiler,
)
from bench_pipeline.backends.dynamo.records import DynamoRecord
from bench_pipeline.backends.dynamo.runtime import DynamoBackend
from bench_pipeline.backends.dynamo.stage import record
from bench_pipeline.model.source import load_model, make_inputs
from conftest import PROJECT_ROOT

CPU = torch.device("cpu")
STATIC_GRID = [(1, 16), (2, 32)]
FAILING_BACKEND = "test_fails_above_batch_1"


def _fails_above_batch_1(graph_module, example_inputs):
    """A real registered backend that cannot compile one of the grid's shapes."""
    if example_inputs[0].shape[0] > 1:  # the graph's first input is input_ids
        raise RuntimeError("this backend cannot compile batch > 1\nsecond line that must not be reported")
    return graph_module.forward


if FAILING_BACKEND not in registered_backends(include_debug=True):
    register_backend(_fails_above_batch_1, name=FAILING_BACKEND)


def grid_inputs(model_dir, grid):
    return {f"b{b}_s{s}": make_inputs(model_dir, b, s, seed=0) for b, s in grid}


@pytest.fixture(scope="module")
def tiny_model(tiny_bert_dir):
    return load_model(tiny_bert_dir, "fp32", CPU)


@pytest.fixture(scope="module")
def inductor_static(tiny_bert_dir, tiny_model, tmp_path_factory):
    """Inductor, static shapes, over a 2-shape grid: the stage's main path."""
    cache_root = tmp_path_factory.mktemp("inductor_cache")
    warm_up_compiler(CPU, cache_root)
    inputs = grid_inputs(tiny_bert_dir, STATIC_GRID)
    compiled = compile_variant(tiny_model, inputs, CompileSpec.from_options({}), CPU, cache_root / "static")
    return compiled, inputs, cache_root / "static"


def test_inductor_records_cold_and_warm_compile_time_per_shape(inductor_static):
    compiled, _, cache_dir = inductor_static
    assert compiled.status == "ok", compiled.reason
    assert list(compiled.cells) == ["b1_s16", "b2_s32"]
    for name, cell in compiled.cells.items():
        assert cell.status == "ok", (name, cell.reason)
        assert cell.cold_s > 0 and cell.warm_s > 0
        assert cell.frames_compiled >= 1  # static: every shape compiles
    assert any(cache_dir.iterdir()), "inductor wrote no cache into the project-local directory"


def test_static_grid_recompiles_once_per_extra_shape(inductor_static):
    compiled, _, _ = inductor_static
    assert compiled.recompiles == 1
    assert "size mismatch" in compiled.recompile_reasons[0]
    assert compiled.graph_breaks == 0 and compiled.break_reasons == []


def test_compiled_outputs_match_eager_without_recompiling(inductor_static, tiny_model, tiny_bert_dir):
    compiled, _, _ = inductor_static
    frames_before = counters["frames"]["total"]
    # fresh tensors, made as the benchmark makes them: the stage's compiled code must serve them
    for cell_inputs in grid_inputs(tiny_bert_dir, STATIC_GRID).values():
        with torch.inference_mode():
            got, want = compiled.module(**cell_inputs), tiny_model(**cell_inputs)
        np.testing.assert_allclose(got.last_hidden_state, want.last_hidden_state, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(got.pooler_output, want.pooler_output, atol=1e-4, rtol=1e-4)
    assert counters["frames"]["total"] == frames_before


def test_dynamic_compiles_once_for_the_grid(tiny_bert_dir, tiny_model, tmp_path):
    # batches above 1: a size-1 dimension would be specialized even with dynamic=True
    inputs = grid_inputs(tiny_bert_dir, [(2, 16), (3, 24)])
    spec = CompileSpec.from_options({"backend": "eager", "dynamic": True})
    compiled = compile_variant(tiny_model, inputs, spec, CPU, tmp_path)
    assert [c.status for c in compiled.cells.values()] == ["ok", "ok"]
    assert compiled.recompiles == 0
    assert compiled.cells["b3_s24"].frames_compiled == 0


class PrintsMidway(torch.nn.Module):
    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = input_ids.float() * 2
        print("a side effect dynamo cannot trace")
        return hidden + attention_mask


def test_graph_breaks_are_counted_with_their_reason(tiny_bert_dir, tmp_path, capsys):
    inputs = grid_inputs(tiny_bert_dir, [(1, 16)])
    compiled = compile_variant(PrintsMidway(), inputs, CompileSpec.from_options({"backend": "eager"}), CPU, tmp_path)
    assert compiled.cells["b1_s16"].status == "ok"
    assert compiled.graph_breaks == 1
    assert len(compiled.break_reasons) == 1 and "print" in compiled.break_reasons[0]


def test_fullgraph_with_a_graph_break_fails_to_compile(tiny_bert_dir, tmp_path):
    inputs = grid_inputs(tiny_bert_dir, [(1, 16)])
    spec = CompileSpec.from_options({"backend": "eager", "fullgraph": True})
    cell = compile_variant(PrintsMidway(), inputs, spec, CPU, tmp_path).cells["b1_s16"]
    assert cell.status == "fail_compile"
    assert cell.reason.startswith("backend 'eager': Unsupported:") and "print" in cell.reason


def test_a_shape_that_fails_to_compile_does_not_stop_the_grid(tiny_bert_dir, tiny_model, tmp_path):
    inputs = grid_inputs(tiny_bert_dir, STATIC_GRID)
    spec = CompileSpec.from_options({"backend": FAILING_BACKEND})
    compiled = compile_variant(tiny_model, inputs, spec, CPU, tmp_path)
    ok, failed = compiled.cells["b1_s16"], compiled.cells["b2_s32"]
    assert ok.status == "ok" and ok.cold_s > 0
    assert failed.status == "fail_compile"
    assert failed.reason == f"backend '{FAILING_BACKEND}': RuntimeError: this backend cannot compile batch > 1"
    assert failed.cold_s is None

    # the dynamo backend turns the stage's record into a runnable cell and a fail_compile cell
    entry = record(compiled, CPU, load_s=0.1, attention="sdpa", cache_dir=tmp_path)
    assert pickle.loads(pickle.dumps(entry)) == entry  # the record travels to the unit's worker; no module in it
    context = BackendContext(tiny_bert_dir, {}, CPU, 1, [], tmp_path, artifacts={"dynamo": {"v/fp32": entry}})
    # the worker compiles its own module from the variant's options, on the stage's cache
    session = DynamoBackend().open(context, "v", "fp32", {"backend": FAILING_BACKEND})
    assert session.cell_costs(Cell(1, 16)) == {"compile_s": ok.cold_s, "compile_warm_s": ok.warm_s}
    runner = session.prepare(inputs["b1_s16"], Cell(1, 16))
    runner.run()
    assert runner.outputs()["last_hidden_state"].shape == (1, 16, 32)
    with pytest.raises(CellFailure) as failure:
        session.prepare(inputs["b2_s32"], Cell(2, 32))
    assert failure.value.status == "fail_compile" and failure.value.reason == failed.reason
    session.close()
    assert session.module is None  # freed before the worker ends


@pytest.mark.parametrize(
    "options, message",
    [
        ({"backend": "no_such_backend"}, "unknown dynamo backend 'no_such_backend'"),
        ({"mode": "fastest"}, "unknown torch.compile mode 'fastest'"),
        ({"mode": "max-autotune", "options": {"max_autotune": True}}, "not both"),
        ({"options": {"no_such_inductor_option": 1}}, "unknown inductor option(s) ['no_such_inductor_option']"),
        ({"dynamic": "yes"}, "'dynamic' must be true or false"),
        ({"compile_mode": "default"}, "unknown dynamo option(s) ['compile_mode']"),
    ],
)
def test_bad_variant_options_are_rejected_early(options, message):
    with pytest.raises(ValueError) as error:
        validate_variant_options(options)
    assert message in str(error.value)


def test_unknown_backend_message_lists_the_registered_ones():
    with pytest.raises(ValueError) as error:
        validate_variant_options({"backend": "nvfuser"})
    assert str(torch._dynamo.list_backends()) in str(error.value)
    assert "inductor" in str(error.value) and "tensorrt" in str(error.value)


def test_every_listed_mode_and_backend_is_accepted():
    for mode in [None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]:
        validate_variant_options({"mode": mode})
    for backend in [*registered_backends(), "tensorrt", "onnxrt", "aot_eager"]:
        validate_variant_options({"backend": backend})


@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is not None, reason="torch_tensorrt is installed")
def test_tensorrt_backend_without_torch_tensorrt_is_skipped(tiny_model, tmp_path):
    compiled = compile_variant(tiny_model, {}, CompileSpec.from_options({"backend": "tensorrt"}), CPU, tmp_path)
    assert compiled.status == "skipped"
    assert "torch_tensorrt" in compiled.reason and compiled.module is None


def test_cuda_graphs_on_cpu_are_unsupported_not_silently_dropped(tiny_model, tmp_path):
    spec = CompileSpec.from_options({"mode": "reduce-overhead"})
    compiled = compile_variant(tiny_model, {}, spec, CPU, tmp_path)
    assert compiled.status == "unsupported" and "CUDA graphs (mode 'reduce-overhead')" in compiled.reason


def test_inductor_without_a_cpp_compiler_gets_a_clear_status(tiny_model, tmp_path):
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"cpp.cxx": (None, str(tmp_path / "no-such-g++"))}):
        compiled = compile_variant(tiny_model, {}, CompileSpec(), CPU, tmp_path)
    assert compiled.status == "skipped"
    assert "inductor on CPU needs a working C++ compiler" in compiled.reason and "no-such-g++" in compiled.reason


@pytest.mark.slow  # the model, compile, plan and measure nodes through a Kedro runner
def test_compile_then_benchmark_through_kedro(tiny_bert_dir, tmp_path):
    """model stage -> dynamo compile node (costs) -> plan -> the unit's worker compiles and is timed -> rows."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from bench_pipeline.backends.dynamo.stage import DynamoStageConfig
    from bench_pipeline.config import BenchmarkConfig, PathsConfig
    from bench_pipeline.pipelines import benchmark, model

    config = BenchmarkConfig(
        model={"source": "local", "name": str(tiny_bert_dir)},
        device="cpu",
        grid={"batch_sizes": [1, 2], "sequence_lengths": [16]},
        precisions=["fp32", "fp16"],
        timing={"warmup_iters": 5, "warmup_s": 0.05, "min_iters": 3, "min_time_s": 0},
        rounds={"count": 2, "max_spread": 5.0, "retries": 0},  # the gate has its own tests
        noise={"max_other_cpu": 1.0},
        backends={
            "dynamo": {
                "variants": [
                    {"name": "inductor", "options": {"backend": "inductor"}},
                    {"name": "trt", "precisions": ["fp32"], "options": {"backend": "tensorrt"}},
                ]
            }
        },
    )
    catalog_config = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog_dynamo.yml").read_text())
    catalog = DataCatalog.from_config(catalog_config)
    catalog["params:benchmark"] = MemoryDataset(config)
    stage = DynamoStageConfig(cache_dir=str(tmp_path / "cache"), warm_up_compiler=False)
    catalog["params:dynamo_compile"] = MemoryDataset(stage)
    catalog["params:paths"] = MemoryDataset(PathsConfig(
        models_dir=tmp_path / "models", journal_dir=tmp_path / "journal", work_dir=tmp_path / "work",
        fanout_dir=tmp_path / "fanout"))
    catalog["results_dynamo"] = MemoryDataset()
    pipeline = model.create_pipeline() + benchmark.create_pipeline(["dynamo"])
    assert {"dynamo.compile_node", "dynamo.plan_node", "measure_node"} <= {n.name for n in pipeline.nodes}

    SequentialRunner().run(pipeline, catalog)

    rows = catalog.load("results_dynamo").set_index(["variant", "precision", "batch"])
    inductor = rows.loc[("inductor", "fp32")]
    assert (inductor.status == "ok").all(), inductor.reason.tolist()  # parity within the FP32 tolerance
    assert (inductor.compile_s > 0).all() and (inductor.compile_warm_s > 0).all()
    assert (inductor.recompiles == 1).all() and (inductor.graph_breaks == 0).all()
    assert (inductor.cosine > 0.99999).all()
    extra = json.loads(inductor.extra.iloc[0])
    assert extra["backend"] == "inductor" and extra["dynamic"] is False and extra["cuda_graphs"] is False
    assert (rows.loc[("inductor", "fp16")].status == "unsupported").all()
    trt = rows.loc[("trt", "fp32")]
    if importlib.util.find_spec("torch_tensorrt") is None:
        assert (trt.status == "skipped").all() and trt.reason.str.contains("torch_tensorrt").all()


def test_a_static_shape_dynamo_gives_up_on_is_fail_compile_not_a_silent_eager_run(tiny_bert_dir, tmp_path, monkeypatch):
    # A recompile limit already used up by other variants (what torch < 2.13, without
    # isolate_recompiles, does across variants): dynamo would run the new shapes eagerly.
    import bench_pipeline.backends.dynamo.compile as dynamo_compile

    monkeypatch.setattr(dynamo_compile, "_COMPILE_KEYWORDS", {})
    model = load_model(tiny_bert_dir, "fp32", CPU)
    inputs = grid_inputs(tiny_bert_dir, [(1, 8), (2, 8)])
    # torch's own patch, not monkeypatch: undoing a monkeypatch on torch 2.13's config deletes the key for good,
    # and every later compile in this process fails reading it
    with torch._dynamo.config.patch(recompile_limit=-7):  # +8 from this compile: 1 entry
        compiled = compile_variant(model, inputs, CompileSpec.from_options({"backend": "eager"}), CPU, tmp_path)
    cells = compiled.cells
    assert cells["b1_s8"].status == "ok"
    assert cells["b2_s8"].status == "fail_compile"
    assert "would run it eagerly" in cells["b2_s8"].reason


def test_a_dynamo_record_keeps_the_keys_it_was_made_with_and_refuses_a_mistyped_fact():
    settings = {"backend": "inductor", "mode": None, "dynamic": False, "fullgraph": False, "options": {},
                "cuda_graphs": False}
    failed = DynamoRecord(status="unsupported", reason="FP16 on CPU", **settings)
    assert failed.dump() == {"status": "unsupported", "reason": "FP16 on CPU", **settings}  # no costs: none measured
    assert failed.facts() == settings
    cell = {"status": "ok", "reason": None, "cold_s": 1.5, "warm_s": 0.5, "frames_compiled": 1}
    made = DynamoRecord(status="ok", reason=None, cache_dir="c", **settings, compile={"b1_s16": cell}, recompiles=0)
    assert DynamoRecord.model_validate(made.dump()).compile["b1_s16"].cold_s == 1.5  # what the runtime reads
    with pytest.raises(ValidationError, match="recompiles"):
        DynamoRecord(status="ok", reason=None, **settings, recompiles="many")
    with pytest.raises(ValidationError, match="status"):
        DynamoRecord(status="compiled", reason=None, **settings)

"""Thin wiring over ``bench_pipeline.backends.dynamo.compile``: one record per variant x precision, never a crash.

A variant that cannot compile here (library missing, CUDA graphs on CPU, no C++ compiler,
FP16 on CPU) becomes ``{"status", "reason"}``; a shape that fails to compile becomes that
cell's status. The dynamo backend turns both into rows, and every other cell still runs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from bench_pipeline.backends.base import Cell, CellFailure, grid_cells, is_out_of_memory
from bench_pipeline.backends.dynamo import BACKEND
from bench_pipeline.backends.dynamo.compile import (
    CompiledVariant,
    CompileSpec,
    cache_dir_for,
    compile_variant,
    unavailable,
    warm_up_compiler,
)
from bench_pipeline.backends.dynamo.records import DynamoRecord
from bench_pipeline.backends.dynamo.runtime import artifact_key
from bench_pipeline.backends.eager.precision import matmul_precision, quantize
from bench_pipeline.config import BenchmarkConfig, PathsConfig, VariantSpec
from bench_pipeline.harness.journal import Journal, cell_key, key_context
from bench_pipeline.harness.results import cell_name
from bench_pipeline.harness.status import Status
from bench_pipeline.model.source import load_model, make_inputs, precision_unsupported
from bench_pipeline.system.device import configure_torch, resolve_device

log = logging.getLogger(__name__)


class DynamoStageConfig(BaseModel):
    """``params:dynamo_compile`` (validated by Kedro through the type hint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: inductor's FX-graph / autotune caches, one emptied sub-directory per variant x precision
    cache_dir: str  # conf/base/parameters_dynamo.yml: the one source of the folder
    #: also time each shape's first call on a warm cache (a second compile that hits the cache)
    measure_warm: bool = True
    #: compile a throwaway function first, so process start-up costs are not billed to the first variant
    warm_up_compiler: bool = True


def compile_node(
    model_info: dict[str, Any],
    environment: dict[str, Any],
    benchmark: BenchmarkConfig,
    dynamo_compile: DynamoStageConfig,
    paths: PathsConfig,
) -> dict[str, dict[str, Any]]:
    """``{"variant/precision": record}`` for every enabled dynamo variant x precision.

    Only the cells the benchmark will measure are compiled: a cell the journal already holds
    (resume) keeps the compile times it was measured with, and compiling it again would cost
    minutes for nothing. The modules are not kept: each unit's worker compiles its own.
    """
    spec = benchmark.enabled_backends().get("dynamo")
    if spec is None:
        return {}
    # bad options fail here, before any model is loaded, naming the variant
    plan = [(v, _compile_spec(v), p) for v in spec.variants for p in benchmark.precisions_for(v)]
    device = resolve_device(benchmark.device)
    configure_torch(benchmark.threads)  # TF32 off before compiling: inductor bakes it into FP32 kernels
    if dynamo_compile.warm_up_compiler and any(
        s.backend == "inductor" and unavailable(s, device) is None for _, s, _ in plan
    ):
        try:
            warm_up_compiler(device, Path(dynamo_compile.cache_dir))
        except Exception as error:  # noqa: BLE001 - each variant's own compile reports it with a status
            log.warning("dynamo: compiler warm-up failed, variants will say why: %s: %s", type(error).__name__, error)
    cells = grid_cells(benchmark)
    context = key_context(model_info, environment, benchmark)
    done = Journal(paths.journal_dir / "dynamo.jsonl").reusable_keys() if benchmark.resume else set()
    host_inputs = {_name(c): make_inputs(model_info["path"], c.batch, c.seq, benchmark.seed) for c in cells}
    artifacts = {}
    for variant, compile_spec, precision in plan:
        key = artifact_key(variant.name, precision)
        todo = {
            name: inputs for (name, inputs), c in zip(host_inputs.items(), cells)
            if cell_key(context, "dynamo", variant.name, variant.options, precision, c.batch, c.seq) not in done
        }
        artifacts[key] = _compile_one(model_info, variant, compile_spec, precision, device, todo, dynamo_compile)
        _log(key, artifacts[key])
    _stop_compile_workers()
    return artifacts


def _stop_compile_workers() -> None:
    """Inductor keeps a pool of compile worker processes alive; stop it so it does not share the
    CPU with the timings that follow (small shapes are bound by the host's launch speed)."""
    from torch._inductor import async_compile

    shutdown = getattr(async_compile, "shutdown_compile_workers", None)
    if shutdown:
        shutdown()


def _compile_spec(variant: VariantSpec) -> CompileSpec:
    try:
        return CompileSpec.from_options(variant.options)
    except ValueError as error:
        raise ValueError(f"backends.dynamo.variants[{variant.name}].options: {error}") from error


def _compile_one(model_info, variant, compile_spec, precision, device, host_inputs, stage) -> dict[str, Any]:
    blocked = BACKEND.precision_missing(precision) or precision_unsupported(device, precision)
    if blocked:
        return failed(compile_spec, device, Status.UNSUPPORTED, blocked)
    reason = unavailable(compile_spec, device)
    if reason:
        return failed(compile_spec, device, *reason)
    cache_dir = cache_dir_for(Path(stage.cache_dir), variant.name, precision)
    if not host_inputs:
        return DynamoRecord(status=Status.OK, reason=None, compile={}, cache_dir=str(cache_dir),
                            **compile_spec.describe(device)).dump()
    attention = variant.options.get("attn_implementation")
    try:
        started = time.perf_counter()
        model = load_model(
            model_info["path"], precision, device,
            attn_implementation=attention, trust_remote_code=model_info.get("trust_remote_code", False),
        )
        load_s = time.perf_counter() - started
        inputs = {name: {k: v.to(device) for k, v in cell.items()} for name, cell in host_inputs.items()}
        with matmul_precision(precision):  # inductor bakes TF32 (or strict FP32) into the kernels it writes
            model, _ = quantize(model, precision, device)
            compiled = compile_variant(model, inputs, compile_spec, device, cache_dir, measure_warm=stage.measure_warm)
    except CellFailure as error:  # e.g. FP8 without torchao
        return failed(compile_spec, device, error.status, error.reason)
    except Exception as error:  # noqa: BLE001 - a variant that cannot load must not end the run
        if is_out_of_memory(error):
            return failed(compile_spec, device, Status.OOM, f"{type(error).__name__}: {str(error).splitlines()[0]}")
        log.exception("dynamo %s/%s: load or compile raised", variant.name, precision)
        first_line = next(iter(str(error).strip().splitlines()), "")
        return failed(compile_spec, device, Status.ERROR, f"{type(error).__name__}: {first_line}")
    return record(compiled, device, load_s, getattr(model.config, "_attn_implementation", attention), cache_dir)


def record(
    compiled: CompiledVariant, device: torch.device, load_s: float, attention: str | None, cache_dir: Path
) -> dict[str, Any]:
    """The stage's record for one variant x precision: its costs and the cache its workers compile from."""
    return DynamoRecord(
        status=compiled.status,
        reason=compiled.reason,
        cache_dir=str(cache_dir),
        **compiled.spec.describe(device),
        attn_implementation=attention,
        load_s=load_s,
        compile={name: cell.as_dict() for name, cell in compiled.cells.items()},
        recompiles=compiled.recompiles,
        recompile_reasons=compiled.recompile_reasons,
        graph_breaks=compiled.graph_breaks,
        break_reasons=compiled.break_reasons,
    ).dump()


def failed(compile_spec: CompileSpec, device: torch.device, status: str, reason: str) -> dict[str, Any]:
    """A variant x precision that cannot compile here: its status and reason, with the settings it asked for."""
    return DynamoRecord(status=status, reason=reason, **compile_spec.describe(device)).dump()


def _name(cell: Cell) -> str:
    return cell_name(cell.batch, cell.seq)


def _log(key: str, entry: dict[str, Any]) -> None:
    if entry["status"] != Status.OK:
        log.warning("dynamo %s: %s: %s", key, entry["status"], entry["reason"])
        return
    cells = entry["compile"]
    cold = sum(c["cold_s"] or 0 for c in cells.values())
    failures = {name: c["reason"] for name, c in cells.items() if c["status"] != Status.OK}
    log.info(
        "dynamo %s: %d shape(s) compiled in %.1f s cold, %d recompile(s), %d graph break(s)%s",
        key, len(cells) - len(failures), cold, entry["recompiles"], entry["graph_breaks"],
        f"; failed: {failures}" if failures else "",
    )

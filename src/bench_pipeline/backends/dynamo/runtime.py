"""torch.compile'd modules, compiled again in the unit's own worker and timed like eager.

The dynamo stage compiled each variant x precision once for every shape that will be measured,
to record what compiling costs (``compile_s`` cold, ``compile_warm_s`` warm) into its own
inductor cache, and released the modules. A compiled module lives only in the process that
compiled it, so the unit's worker loads the model and compiles it again on the stage's cache
(a warm compile, outside any timed call): the module it times is the one the stage describes,
and no other backend's leftovers share its process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench_pipeline.backends.base import Backend, BackendContext, Cell, CellFailure, CellRunner, Session
from bench_pipeline.backends.dynamo.compile import (
    CompileSpec,
    compile_module,
    compiler_caches_in,
)
from bench_pipeline.backends.dynamo.records import CellCompileRecord, DynamoRecord
from bench_pipeline.backends.eager.runtime import TorchRunner, check_precision, module_bytes, open_torch_model
from bench_pipeline.harness.results import cell_name
from bench_pipeline.harness.status import Status

STAGE = "dynamo"


def artifact_key(variant: str, precision: str) -> str:
    return f"{variant}/{precision}"


class DynamoSession(Session):
    def __init__(self, record: DynamoRecord, module: Any, device: torch.device, load_s: float):
        self.record = record
        self.module = module
        self.device = device
        self.cache_dir = Path(record.cache_dir)
        self.resident_bytes = module_bytes(module._orig_mod if hasattr(module, "_orig_mod") else module)
        self.setup_s = load_s
        # the same for every cell of the variant: how the grid as a whole compiled in the stage
        self.costs = {"recompiles": record.recompiles, "graph_breaks": record.graph_breaks}
        self.extra = record.facts()

    def cell_costs(self, cell: Cell) -> dict[str, float | None]:
        """This cell's first-call compile time, cold and on a warm cache (None: it did not compile)."""
        compiled = self._compiled(cell)
        return {"compile_s": compiled.cold_s, "compile_warm_s": compiled.warm_s}

    def prepare(self, inputs: dict[str, torch.Tensor], cell: Cell) -> CellRunner:
        compiled = self._compiled(cell)
        if compiled.status != Status.OK:
            raise CellFailure(compiled.status, compiled.reason)
        runner = TorchRunner(self.module, {k: v.to(self.device) for k, v in inputs.items()})
        with compiler_caches_in(self.cache_dir):
            runner.run()  # this shape compiles here, from the stage's cache, before any timed call
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return runner

    def close(self) -> None:
        self.module = None

    def _compiled(self, cell: Cell) -> CellCompileRecord:
        name = cell_name(cell.batch, cell.seq)
        return self.record.compile.get(name) or CellCompileRecord(
            status=Status.ERROR, reason=f"the dynamo stage did not compile cell {name}",
            cold_s=None, warm_s=None, frames_compiled=0,
        )


class DynamoBackend(Backend):
    name = "dynamo"

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        self._entry(ctx, variant, precision)

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        record = self._entry(ctx, variant, precision)
        model, load_s, quantized = open_torch_model(ctx, precision, options)
        module = compile_module(model, CompileSpec.from_options(options), len(ctx.cells))
        session = DynamoSession(record, module, ctx.device, load_s)
        if quantized:
            session.costs["quantize_s"] = quantized["quantize_s"]
            session.extra["quantization"] = quantized["quantization"]
        return session

    def _entry(self, ctx: BackendContext, variant: str, precision: str) -> DynamoRecord:
        """The stage's record for (variant, precision), or why this unit cannot run."""
        check_precision(ctx, precision)
        entries = ctx.artifacts.get(STAGE) or {}
        entry = entries.get(artifact_key(variant, precision))
        if entry is None:
            raise CellFailure(
                Status.ERROR,
                f"no dynamo stage record for {artifact_key(variant, precision)} (has: {sorted(entries)}): "
                "run the dynamo stage before its benchmark (`kedro run`)",
            )
        record = DynamoRecord.model_validate(entry)
        if record.status != Status.OK:
            raise CellFailure(record.status, record.reason, extra=record.facts())
        return record

"""torch.compile'd modules from the dynamo stage, timed like eager.

The dynamo stage compiled every variant x precision for every grid shape and left the
modules in memory (``dynamo_artifacts``, keyed ``variant/precision``); this backend only
looks them up, so compile time never leaks into a timed call and each cell's compile
cost comes from the stage (``compile_s`` cold, ``compile_warm_s`` warm).
"""

from __future__ import annotations

from typing import Any

import torch

from bench_pipeline.backends.base import Backend, BackendContext, Cell, CellFailure, CellRunner, Session
from bench_pipeline.backends.eager import TorchRunner, module_bytes
from bench_pipeline.dynamo_compile import validate_variant_options
from bench_pipeline.results import cell_name

STAGE = "dynamo"
#: what the stage recorded about a variant that goes to each row's ``extra``
FACTS = (
    "backend", "mode", "dynamic", "fullgraph", "options", "cuda_graphs",
    "attn_implementation", "recompile_reasons", "break_reasons",
)


def artifact_key(variant: str, precision: str) -> str:
    return f"{variant}/{precision}"


class InProcess:
    """Holds a compiled module in the stage's record and refuses to be pickled.

    A compiled module pickles as its plain model plus compile settings, so a worker process
    would silently recompile it (outside the stage's cache, its time inside the benchmark)
    and time a module the stage's compile numbers do not describe. Refusing makes a sweep
    that isolates backends in workers keep the dynamo backend in the process that compiled.
    """

    def __init__(self, module: Any):
        self.module = module

    def __reduce__(self):
        raise TypeError("a torch.compile'd module is only valid in the process that compiled it")


def facts(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: entry[key] for key in FACTS if key in entry}


class DynamoSession(Session):
    def __init__(self, entry: dict[str, Any], device: torch.device):
        self.entry = entry
        self.module = entry["module"].module
        self.device = device
        self.resident_bytes = module_bytes(self.module)
        self.setup_s = entry["load_s"]
        # the same for every cell of the variant: how the grid as a whole compiled
        self.costs = {"recompiles": entry["recompiles"], "graph_breaks": entry["graph_breaks"]}
        self.extra = facts(entry)

    def cell_costs(self, cell: Cell) -> dict[str, float | None]:
        """This cell's first-call compile time, cold and on a warm cache (None: it did not compile)."""
        compiled = self._compiled(cell)
        return {"compile_s": compiled.get("cold_s"), "compile_warm_s": compiled.get("warm_s")}

    def prepare(self, inputs: dict[str, torch.Tensor], cell: Cell) -> CellRunner:
        compiled = self._compiled(cell)
        if compiled.get("status") != "ok":
            raise CellFailure(compiled["status"], compiled["reason"])
        # placed exactly as the stage placed them, so dynamo's guards (device, dispatch keys) match
        return TorchRunner(self.module, {k: v.to(self.device) for k, v in inputs.items()})

    def close(self) -> None:
        # The stage's record outlives this session (a memory dataset): drop the module from it
        # too, so its weights, compiled graphs and any CUDA-graph pools are freed before the
        # next variant is measured.
        self.module = None
        self.entry["module"] = None

    def _compiled(self, cell: Cell) -> dict[str, Any]:
        return self.entry["compile"].get(cell_name(cell.batch, cell.seq)) or {
            "status": "error",
            "reason": f"the dynamo stage did not compile cell {cell_name(cell.batch, cell.seq)}",
        }


class DynamoBackend(Backend):
    name = "dynamo"

    def check_options(self, options: dict[str, Any]) -> None:
        validate_variant_options(options)

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        entries = ctx.artifacts.get(STAGE) or {}
        entry = entries.get(artifact_key(variant, precision))
        if entry is None:
            raise CellFailure(
                "error",
                f"no dynamo stage record for {artifact_key(variant, precision)} (has: {sorted(entries)}): "
                "run the dynamo stage before its benchmark, in the same process (`kedro run`)",
            )
        if entry["status"] != "ok":
            raise CellFailure(entry["status"], entry["reason"], extra=facts(entry))
        if entry["module"] is None:
            raise CellFailure(
                "error", f"the compiled module for {artifact_key(variant, precision)} was already released"
            )
        return DynamoSession(entry, ctx.device)

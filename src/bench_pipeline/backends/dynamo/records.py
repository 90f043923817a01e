"""The dynamo stage's record of one variant x precision (``dynamo_artifacts["<variant>/<precision>"]``), typed like
the ONNX export's ``ExportRecord``: the stage validates what it persists and the runtime reads attributes, so a
renamed fact fails at the stage, not as a ``KeyError`` in a unit's worker. ``model_dump()`` is the dict the catalog
has always held: the keys a record was made with (a variant that could not compile carries its status, reason and
compile settings only; one whose cells the journal already holds, no compile costs). Pydantic only, no torch."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from bench_pipeline.harness.status import Status


class CellCompileRecord(BaseModel):
    """One grid cell's first calls in the stage (``compile.CellCompile``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status
    reason: str | None
    cold_s: float | None
    warm_s: float | None
    frames_compiled: int


class DynamoRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status
    reason: str | None
    cache_dir: str | None = None  # inductor's caches the unit's worker compiles from
    # torch.compile's settings (``CompileSpec.describe``)
    backend: str
    mode: str | None
    dynamic: bool
    fullgraph: bool
    options: dict[str, Any]
    cuda_graphs: bool
    # what compiling the grid cost, where the stage compiled it
    attn_implementation: str | None = None
    load_s: float | None = None
    compile: dict[str, CellCompileRecord] = {}
    recompiles: int | None = None
    recompile_reasons: list[str] = []
    graph_breaks: int | None = None
    break_reasons: list[str] = []

    def dump(self) -> dict[str, Any]:
        """The catalog's dict: only the keys this record was made with."""
        return self.model_dump(exclude_unset=True)

    def facts(self) -> dict[str, Any]:
        """What the stage recorded about the variant that goes to each row's ``extra``."""
        return self.model_dump(include=set(ROW_FACTS), exclude_unset=True)


ROW_FACTS = (
    "backend", "mode", "dynamic", "fullgraph", "options", "cuda_graphs",
    "attn_implementation", "recompile_reasons", "break_reasons",
)

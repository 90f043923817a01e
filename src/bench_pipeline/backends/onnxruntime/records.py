"""ONNX Runtime's stage record of one fused graph (``export_artifacts["fp16"]`` / ``["fp32_fused"]``), typed like the
plain export's ``ExportRecord`` beside it in ``export_artifacts["fp32"]``: the optimize step validates what it
persists, so a missing or mistyped fact fails there. ``model_dump()`` is the dict the catalog has always held; a
graph the optimizer could not make stays a ``status_record``. Pydantic only: no ONNX Runtime, no torch."""

from __future__ import annotations

from bench_pipeline.harness.records import FileRecord


class FusedGraphRecord(FileRecord):
    fusions: dict[str, int]  # fused operator -> count (zero fused is an answer: an empty dict)
    fusion_error: str | None  # the optimizer's fusions raised: the graph has ONNX Runtime's basic passes only
    optimize_s: float
    float16: bool
    model_type: str  # the optimizer's model type it was fused as
    # the plain export it was made from: its one-off cost is part of this graph's
    exporter: str
    opset: int
    export_s: float

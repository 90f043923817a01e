"""The tensorrt stage's record of one precision (``tensorrt_artifacts[<precision>]``), typed like the ONNX
export's ``ExportRecord``: the stage validates what it persists, so a missing or mistyped fact fails at the build,
not one stage later as a ``KeyError`` in the runtime, which reads attributes. ``model_dump()`` is the dict the
catalog has always held (same keys, same order); a failed precision stays a ``status_record`` with its
``export_s``. Pydantic only: no torch, no TensorRT."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_serializer

from bench_pipeline.harness.records import OkRecord


class EngineRecord(BaseModel):
    """One engine as ``build.build_engine`` writes it (and its ``.json`` sidecar keeps it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    sha256: str
    engine_bytes: int
    build_s: float
    key: str
    onnx_path: str
    onnx_sha256: str
    options: dict[str, Any]  # the builder options, its optimization profile among them
    flavour: str
    version: str
    target_cc: str
    device_name: str | None
    flavour_label: str
    timing_cache: str | None
    timing_cache_hit: bool | None
    built_at: str
    cache_hit: bool


class TensorRTRecord(OkRecord):
    """Every engine one precision needs, their totals, and the export they were built from (``export_s``)."""

    precision: str
    flavour: str
    version: str
    target_cc: str
    device_name: str | None
    shapes: str
    note: str | None
    build_s: float
    engine_bytes: int
    cache_hit: bool
    engines: list[EngineRecord]
    #: FP16 only: the plain FP16 ONNX copy the engines were built from (``onnx.export.cached_artifact``'s record)
    fp16_conversion: dict[str, Any] | None = None
    export_s: float
    #: INT8 only: what making the static QDQ graph (calibration included) took (``onnx_int8``'s record)
    quantize_s: float | None = None

    @property
    def conversion_s(self) -> float:
        return (self.fp16_conversion or {}).get("convert_s", 0.0)

    @model_serializer(mode="wrap")
    def _no_null_precision_keys(self, handler: Any) -> dict[str, Any]:
        """An FP32 record has never had an ``fp16_conversion`` or ``quantize_s`` key; it does not get a null one."""
        data = handler(self)
        for key in ("fp16_conversion", "quantize_s"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

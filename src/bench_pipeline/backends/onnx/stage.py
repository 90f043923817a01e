"""Thin wiring over ``bench_pipeline.backends.onnx.export``: one record per artifact, never a crash.

A model that cannot be exported becomes ``{"status": "fail_export", "reason": <exporter's
message>}``; the onnxruntime and tensorrt backends turn that into rows with the same status,
and every other backend still runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench_pipeline.backends import users_of
from bench_pipeline.backends.onnx.export import OnnxExportError, export_onnx
from bench_pipeline.config import BenchmarkConfig
from bench_pipeline.harness.records import FileRecord
from bench_pipeline.harness.results import status_record
from bench_pipeline.harness.status import Status
from bench_pipeline.system.files import slug

log = logging.getLogger(__name__)

class ExportConfig(BaseModel):
    """``params:export``: how the ONNX files are made (validated by Kedro through the type hint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    opset: int = Field(17, ge=14)
    # eager: ONNX Runtime's optimizer fuses eager attention into one Attention op, SDPA not at all
    attn_implementation: Literal["eager", "sdpa"] = "eager"
    cache_dir: str  # conf/base/parameters_export.yml: the one source of the folder
    # ONNX Runtime's fused graphs (FP16; FP32 for variants with fused: true), built only when
    # an enabled onnxruntime variant will run them
    optimize: bool = True


class ExportRecord(FileRecord):
    """The plain export's stage record (``onnx_fp32``; ``export_artifacts["fp32"]``), typed: a missing or
    mistyped fact fails here, at the stage, not in a backend that reads it. ``model_dump()`` is the same
    dict (same keys, same order) the catalog has always held; a failure stays a ``status_record``."""

    exporter: str
    opset: int
    export_s: float
    validate_max_rel: float
    inputs: list[str]
    outputs: list[str]


def export_onnx_node(model_info: dict[str, Any], benchmark: BenchmarkConfig, export: ExportConfig) -> dict[str, Any]:
    """The FP32 export, or its failure, or a skip when no enabled backend reads ONNX."""
    users = [name for name in users_of("onnx") if name in benchmark.enabled_backends()]
    if not users:
        return status_record(Status.SKIPPED, f"no enabled backend uses ONNX ({', '.join(users_of('onnx'))})")
    out_path = artifact_dir(model_info, export) / "model.onnx"
    try:
        info = export_onnx(
            model_info["path"],
            out_path,
            exporter=export.exporter,
            opset=export.opset,
            attn_implementation=export.attn_implementation,
        )
    except OnnxExportError as error:
        log.warning("ONNX export of %s failed: %s", model_info["name"], error)
        return status_record(Status.FAIL_EXPORT, str(error))
    log.info(
        "ONNX export of %s: %s opset %d, %.1f MB, %.1f s%s",
        model_info["name"], info["exporter"], info["opset"], info["size_bytes"] / 1e6, info["export_s"],
        " (cached)" if info["cached"] else "",
    )
    return ExportRecord(**{name: info[name] for name in ExportRecord.model_fields if name != "status"}).model_dump()


def artifact_dir(model_info: dict[str, Any], export: ExportConfig) -> Path:
    """One folder per model content and export recipe. The name is for people; the folder is
    keyed by the weights and config fingerprint, so two models whose directories share a
    basename (two local ``model/``) neither evict each other nor, run side by side, swap files."""
    name = slug(model_info["name"], keep="._-") or "model"
    model = f"{name}-{model_info['weights_sha256'][:16]}"
    return Path(export.cache_dir) / model / f"{export.exporter}-opset{export.opset}-{export.attn_implementation}"

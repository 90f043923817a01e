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
from bench_pipeline.backends.onnx.export import OnnxExportError, export_onnx, optimize_onnx, optimizer_model_type
from bench_pipeline.backends.onnxruntime.artifacts import (
    FUSED_KEYS,
    default_provider,
    ort_artifact_key,
    provider_unavailable,
)
from bench_pipeline.config import BenchmarkConfig
from bench_pipeline.harness.results import status_record
from bench_pipeline.harness.status import Status
from bench_pipeline.system.device import resolve_device
from bench_pipeline.system.files import slug

log = logging.getLogger(__name__)

class ExportConfig(BaseModel):
    """``params:export``: how the ONNX files are made (validated by Kedro through the type hint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    opset: int = Field(17, ge=14)
    # eager: ONNX Runtime's optimizer fuses eager attention into one Attention op, SDPA not at all
    attn_implementation: Literal["eager", "sdpa"] = "eager"
    cache_dir: str = "data/06_models/onnx"
    # ONNX Runtime's fused graphs (FP16; FP32 for variants with fused: true), built only when
    # an enabled onnxruntime variant will run them
    optimize: bool = True


class ExportRecord(BaseModel):
    """The plain export's stage record (``onnx_fp32``; ``export_artifacts["fp32"]``), typed: a missing or
    mistyped fact fails here, at the stage, not in a backend that reads it. ``model_dump()`` is the same
    dict (same keys, same order) the catalog has always held; a failure stays a ``status_record``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal[Status.OK] = Status.OK
    path: str
    sha256: str
    size_bytes: int
    cached: bool
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


def optimize_onnx_node(
    onnx_fp32: dict[str, Any], model_info: dict[str, Any], benchmark: BenchmarkConfig, export: ExportConfig
) -> dict[str, Any]:
    """``export_artifacts``: the export as ``fp32``, plus ONNX Runtime's fused graphs that some
    onnxruntime variant will run: ``fp16`` (fused FP16) and ``fp32_fused`` (fused FP32, for
    variants with ``fused: true``, e.g. CUDA graphs, which the plain export's CPU shape ops block)."""
    artifacts = {"fp32": onnx_fp32}
    if onnx_fp32.get("status") != Status.OK:
        return artifacts
    on_gpu = resolve_device(benchmark.device).type == "cuda"
    for name in fused_graphs_wanted(benchmark):
        if not export.optimize:
            artifacts[name] = status_record(Status.SKIPPED, "export.optimize is false")
            continue
        float16 = name == "fp16"
        artifacts[name] = _optimize(onnx_fp32, model_info, float16=float16, use_gpu=float16 or on_gpu)
    return artifacts


def fused_graphs_wanted(benchmark: BenchmarkConfig) -> list[str]:
    """Which fused graphs the enabled onnxruntime variants will open, by the backend's own rules
    (``ort_artifact_key``, ``provider_unavailable``): e.g. none for TensorRT's EP, which runs the
    plain export, and none for a variant whose provider cannot run here (it is ``skipped``)."""
    spec = benchmark.enabled_backends().get("onnxruntime")
    if spec is None:
        return []
    device_type = resolve_device(benchmark.device).type
    opened = set()
    for variant in spec.variants:
        provider = variant.options.get("provider", default_provider(device_type))
        if provider_unavailable(provider, device_type):
            continue
        fused = variant.options.get("fused", False)
        opened |= {ort_artifact_key(provider, precision, fused) for precision in benchmark.precisions_for(variant)}
    return sorted(opened & set(FUSED_KEYS))


def _optimize(onnx_fp32: dict[str, Any], model_info: dict[str, Any], *, float16: bool, use_gpu: bool) -> dict:
    label = "FP16" if float16 else "FP32"
    try:
        info = optimize_onnx(
            onnx_fp32["path"],
            Path(onnx_fp32["path"]).with_name(f"model.opt.{label.lower()}.onnx"),
            model_type=optimizer_model_type(model_info["model_type"]),
            num_heads=model_info["num_attention_heads"],
            hidden_size=model_info["hidden_size"],
            float16=float16,
            use_gpu=use_gpu,
        )
    except Exception as error:  # noqa: BLE001 - an optimizer failure must not stop the other backends
        log.warning("ONNX Runtime optimization (%s) of %s failed: %s", label, model_info["name"], error)
        return status_record(Status.FAIL_EXPORT, f"ONNX Runtime optimizer ({label}): {type(error).__name__}: {error}")
    log.info(
        "ONNX Runtime %s graph of %s (%s fusions for model_type %r): %s, %.1f MB, %.1f s%s",
        label, model_info["name"], info["model_type"], model_info["model_type"], info["fusions"] or "nothing fused",
        info["size_bytes"] / 1e6, info["optimize_s"], " (cached)" if info["cached"] else "",
    )
    return {
        "status": Status.OK,
        **_public(info, "fusions", "fusion_error", "optimize_s", "float16", "model_type"),
        "exporter": onnx_fp32["exporter"],
        "opset": onnx_fp32["opset"],
        "export_s": onnx_fp32["export_s"],
    }


def artifact_dir(model_info: dict[str, Any], export: ExportConfig) -> Path:
    """One folder per model content and export recipe. The name is for people; the folder is
    keyed by the weights and config fingerprint, so two models whose directories share a
    basename (two local ``model/``) neither evict each other nor, run side by side, swap files."""
    name = slug(model_info["name"], keep="._-") or "model"
    model = f"{name}-{model_info['weights_sha256'][:16]}"
    return Path(export.cache_dir) / model / f"{export.exporter}-opset{export.opset}-{export.attn_implementation}"


def _public(info: dict[str, Any], *fields: str) -> dict[str, Any]:
    common = ("path", "sha256", "size_bytes", "cached")
    return {name: info[name] for name in (*common, *fields)}



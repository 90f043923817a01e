"""Thin wiring over ``bench_pipeline.backends.onnxruntime.optimize``: ONNX Runtime's build step, one record per
fused graph, never a crash. It reads the shared export's record (``onnx_fp32``) and writes ``export_artifacts``:
the export as ``fp32`` plus the fused graphs some enabled variant will open. An optimizer failure is that graph's
``{"status": "fail_export", "reason"}``; the variants that would open it become rows with that status.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench_pipeline.backends.onnx.stage import ExportConfig
from bench_pipeline.backends.onnxruntime.artifacts import (
    FUSED_KEYS,
    default_provider,
    ort_artifact_key,
    provider_unavailable,
)
from bench_pipeline.backends.onnxruntime.optimize import optimize_onnx, optimizer_model_type
from bench_pipeline.backends.onnxruntime.records import FusedGraphRecord
from bench_pipeline.config import BenchmarkConfig
from bench_pipeline.harness.results import status_record
from bench_pipeline.harness.status import Status
from bench_pipeline.system.device import resolve_device

log = logging.getLogger(__name__)


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
    from_export = {name: onnx_fp32[name] for name in ("exporter", "opset", "export_s")}
    facts = {name: info[name] for name in FusedGraphRecord.model_fields if name not in ("status", *from_export)}
    return FusedGraphRecord(**facts, **from_export).model_dump()

"""Thin wiring over ``bench_pipeline.backends.tensorrt.build``: one record per precision, never a crash.

Every engine is built from the export stage's FP32 ONNX: FP32 as is, FP16 from a plain FP16
copy made here (the export stage's FP16 file is ONNX Runtime's fused graph, which TensorRT's
parser rejects; see ``float16_onnx``). A build that cannot happen or fails (no TensorRT,
parser reject, out of memory) becomes that precision's ``{"status", "reason"}``; the tensorrt
backend turns it into rows with the same status, so a report shows why TensorRT has no
numbers instead of silently missing it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench_pipeline.backends.tensorrt import BACKEND
from bench_pipeline.backends.tensorrt.build import (
    EngineError,
    Flavour,
    TensorRTBuildSpec,
    build_engines,
    building_on,
    detect_flavour,
    float16_onnx,
    local_gpu,
)
from bench_pipeline.backends.tensorrt.records import TensorRTRecord
from bench_pipeline.config import BenchmarkConfig
from bench_pipeline.harness.results import status_record
from bench_pipeline.harness.status import Status
from bench_pipeline.system.device import resolve_device

log = logging.getLogger(__name__)

NO_BF16 = (
    "TensorRT builds strongly typed networks, whose precision comes from the ONNX graph, "
    "and no BF16 ONNX is made (ONNX Runtime's converter writes FP16 only)"
)


def build_engines_node(
    onnx_fp32: dict[str, Any], benchmark: BenchmarkConfig, tensorrt_build: TensorRTBuildSpec,
    onnx_int8: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Engines for every precision a tensorrt variant asks for, keyed by precision.

    Built on, and for, the benchmark's GPU (``benchmark.device``, e.g. ``cuda:1``): a full
    TensorRT engine only runs on the GPU model it was built on. Each entry carries the export's
    ``export_s``: the engine's one-off cost includes making the ONNX it was built from (and INT8's its
    ``quantize_s``). TF32 builds the FP32 export with TF32 tactics allowed (FP32 clears them); INT8 the static
    QDQ graph of ``onnx_int8``, whose scales TensorRT takes as they are (explicit quantization).
    """
    precisions = precisions_to_build(benchmark)
    if not precisions:
        return {}
    flavour, missing = detect_flavour(tensorrt_build.flavour)
    device = resolve_device(benchmark.device)
    gpu = local_gpu(device if device.type == "cuda" else None)
    source = onnx_fp32 or status_record(Status.FAIL_EXPORT, "the export stage wrote no FP32 ONNX")
    artifacts = {}
    for precision in precisions:
        if source.get("status", Status.OK) != Status.OK:
            entry = status_record(source["status"], f"no ONNX to build from: {source.get('reason')}")
        elif flavour is None:
            entry = status_record(Status.SKIPPED, missing)
        elif precision == "bf16":
            entry = status_record(Status.UNSUPPORTED, NO_BF16)
        elif BACKEND.precision_missing(precision):  # e.g. fp8: no FP8 QDQ graph is made (ModelOpt would)
            entry = status_record(Status.UNSUPPORTED, BACKEND.precision_missing(precision))
        elif precision == "int8" and (onnx_int8 or {}).get("int8_static", {}).get("status") != Status.OK:
            qdq = (onnx_int8 or {}).get("int8_static") or {}
            entry = status_record(qdq.get("status", Status.SKIPPED),
                                  f"no static INT8 QDQ graph to build from: {qdq.get('reason', 'not made')}")
        else:
            path = onnx_int8["int8_static"]["path"] if precision == "int8" else source["path"]
            with building_on(device):
                entry = _build(path, precision, benchmark, tensorrt_build, flavour, gpu)
            entry["export_s"] = source["export_s"]
            if entry["status"] == Status.OK:
                if precision == "int8":
                    entry["quantize_s"] = onnx_int8["int8_static"]["quantize_s"]
                entry = TensorRTRecord(**entry).model_dump()
        artifacts[precision] = entry
        _log(precision, entry, flavour)
    return artifacts


def precisions_to_build(benchmark: BenchmarkConfig) -> list[str]:
    """The precisions of the enabled tensorrt variants, in order; none when tensorrt is off."""
    spec = benchmark.enabled_backends().get("tensorrt")
    if spec is None:
        return []
    return list(dict.fromkeys(p for variant in spec.variants for p in benchmark.precisions_for(variant)))



def _build(
    fp32_path: str, precision: str, benchmark: BenchmarkConfig, spec: TensorRTBuildSpec, flavour: Flavour, gpu: Any
) -> dict[str, Any]:
    conversion = None
    try:
        if precision == "fp16":
            conversion = float16_onnx(fp32_path, Path(spec.engine_dir) / "onnx")
    except Exception as error:  # noqa: BLE001 - a converter failure must not end the run
        log.exception("tensorrt fp16: FP16 conversion raised")
        return status_record(Status.FAIL_EXPORT, f"FP16 conversion for TensorRT: {type(error).__name__}: {error}")
    try:
        record = build_engines(
            conversion["path"] if conversion else fp32_path,
            spec,
            precision=precision,
            batch_sizes=benchmark.grid.batch_sizes,
            sequence_lengths=benchmark.grid.sequence_lengths,
            flavour=flavour,
            gpu=gpu,
        )
    except EngineError as error:
        return status_record(error.status, error.reason)
    except MemoryError as error:
        return status_record(Status.OOM, f"out of host memory while building: {error}")
    except Exception as error:  # noqa: BLE001 - a native library failing must not end the run
        log.exception("tensorrt %s: build raised", precision)
        return status_record(Status.FAIL_BUILD, f"{type(error).__name__}: {error}")
    if conversion:
        record["fp16_conversion"] = conversion
    return record


def _log(precision: str, entry: dict[str, Any], flavour: Flavour | None) -> None:
    if entry["status"] != Status.OK:
        log.warning("tensorrt %s: %s: %s", precision, entry["status"], entry["reason"])
        return
    log.info(
        "tensorrt %s: %d engine(s), %.1f s, %.1f MB, %s, compute capability %s%s",
        precision, len(entry["engines"]), entry["build_s"], entry["engine_bytes"] / 1e6, flavour.label,
        entry["target_cc"], " (cached)" if entry["cache_hit"] else "",
    )

"""INT8 ONNX graphs from the plain FP32 export, made once per content (like the export and the fused graphs), with
what the quantization cost recorded as ``quantize_s``: ONNX Runtime's dynamic and static (QDQ) quantization.

``dynamic``: INT8 weights (per output channel), activations quantized at run time per call (``MatMulInteger``);
the CPU EP's method, no calibration. ``static``: QuantizeLinear/DequantizeLinear pairs around the weight
MatMuls/Gemms, activation ranges calibrated (MinMax) on the shipped text sample, drawn with another seed
(seed + 1) from the same sentences the cells are compared on (so the parity of static INT8 is in-sample: the sample
is small) — with symmetric INT8 activations and per-channel weights,
the form the CPU EP fuses into integer kernels and TensorRT's explicit quantization takes. Only MatMul/Gemm are
quantized: LayerNorm, Softmax, GELU and the residual adds stay FP32. Static quantization also leaves FP32 the
MatMuls of two activations (attention scores and context) and those fed by the GELU (the FFN's output
projection): one per-tensor scale cannot cover the long tail after GELU. Measured on all-MiniLM-L6-v2 (8x128,
cosine of the last hidden state to FP32): 0.71 with them quantized, 0.97 without; dynamic with per-tensor
weights 0.93, per-channel 0.99 (it quantizes every weight MatMul).

The node runs in the shared ``onnx`` namespace (ONNX Runtime's EPs and TensorRT both read ``onnx_int8``) and
makes only the graphs an enabled variant will open.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from bench_pipeline.backends.onnx.export import artifact_sha256, cached_artifact, library_versions
from bench_pipeline.backends.onnxruntime.artifacts import (
    INT8_KEYS,
    default_provider,
    ort_artifact_key,
    provider_unavailable,
)
from bench_pipeline.config import BenchmarkConfig
from bench_pipeline.harness.results import status_record
from bench_pipeline.harness.status import Status
from bench_pipeline.model.source import make_inputs
from bench_pipeline.system.device import resolve_device
from bench_pipeline.system.files import json_sha256

log = logging.getLogger(__name__)

RECIPE_VERSION = 3  # bump when the recipe below changes, so cached INT8 files stop matching
OP_TYPES = ["MatMul", "Gemm"]
CALIBRATION_BATCH = 8
CALIBRATION_BATCHES = 2


def quantize_onnx_node(onnx_fp32: dict[str, Any], model_info: dict[str, Any], benchmark: BenchmarkConfig) -> dict:
    """``onnx_int8``: ``{"int8_dynamic": record, "int8_static": record}`` for the methods an enabled variant runs, each
    ``{status: ok, path, sha256, size_bytes, quantize_s, method, calibration, cached}`` or a failure record."""
    wanted = int8_artifacts_wanted(benchmark)
    if not wanted:
        return {}
    if onnx_fp32.get("status") != Status.OK:
        return {key: status_record(onnx_fp32["status"], f"no FP32 export to quantize: {onnx_fp32.get('reason')}")
                for key in wanted}
    records = {}
    for key in wanted:
        method = INT8_KEYS[key]
        try:
            info = quantize_onnx(onnx_fp32["path"], method, model_info["path"], benchmark)
        except Exception as error:  # noqa: BLE001 - a quantizer failure must not stop the other backends
            log.exception("ONNX Runtime %s INT8 quantization raised", method)
            records[key] = status_record(Status.FAIL_EXPORT, f"INT8 {method} quantization: "
                                                             f"{type(error).__name__}: {error}")
            continue
        records[key] = {"status": Status.OK, **info}
        log.info("INT8 %s graph of %s: %.1f MB, %.1f s%s", method, model_info["name"], info["size_bytes"] / 1e6,
                 info["quantize_s"], " (cached)" if info["cached"] else "")
    return records


def int8_artifacts_wanted(benchmark: BenchmarkConfig) -> list[str]:
    """The ``onnx_int8`` keys enabled variants will open: ONNX Runtime's INT8 variants whose provider runs here
    (by the backend's own rule, ``ort_artifact_key``), and the static QDQ graph for TensorRT's INT8 engines."""
    device_type = resolve_device(benchmark.device).type
    backends = benchmark.enabled_backends()
    wanted = set()
    for variant in backends["onnxruntime"].variants if "onnxruntime" in backends else []:
        provider = variant.options.get("provider", default_provider(device_type))
        if "int8" in benchmark.precisions_for(variant) and not provider_unavailable(provider, device_type):
            wanted.add(ort_artifact_key(provider, "int8", False, variant.options.get("quantization")))
    if "tensorrt" in backends and any("int8" in benchmark.precisions_for(v) for v in backends["tensorrt"].variants):
        wanted.add("int8_static")
    return sorted(wanted)


def calibration_spec(benchmark: BenchmarkConfig) -> dict[str, int]:
    """Which inputs calibrate: sentences of the text sample at the longest sequence of the grid."""
    return {"batch": CALIBRATION_BATCH, "batches": CALIBRATION_BATCHES,
            "seq": max(benchmark.grid.sequence_lengths), "seed": benchmark.seed + 1}


def quantize_onnx(fp32_path: str | Path, method: str, model_dir: str | Path, benchmark: BenchmarkConfig) -> dict:
    """The INT8 graph beside the export (cached by its content key); ``method`` is ``dynamic`` or ``static``."""
    fp32_path = Path(fp32_path)
    calibration = calibration_spec(benchmark) if method == "static" else None
    key = json_sha256({"step": "quantize", "recipe": RECIPE_VERSION, "method": method,
                       "input": artifact_sha256(fp32_path), "calibration": calibration, "op_types": OP_TYPES,
                       "versions": library_versions()})
    out = fp32_path.with_name(f"model.int8.{method}.onnx")

    def write(tmp_path: Path) -> dict[str, Any]:
        if method == "dynamic":
            _dynamic(fp32_path, tmp_path)
        else:
            _static(fp32_path, tmp_path, model_dir, calibration)
        return {"method": method, "calibration": calibration, "op_types": OP_TYPES}

    return cached_artifact(out, key, write, elapsed_as="quantize_s")


def _dynamic(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, op_types_to_quantize=OP_TYPES, weight_type=QuantType.QInt8, per_channel=True)


def _static(source: Path, target: Path, model_dir: str | Path, calibration: dict[str, int]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(source), load_external_data=False).graph
    quantize_static(
        source, target, _CalibrationReader(graph, model_dir, calibration),
        quant_format=QuantFormat.QDQ, op_types_to_quantize=OP_TYPES,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=kept_in_fp32(graph),
        # biases stay FP32: TensorRT's parser takes no INT32 DequantizeLinear (a Gemm's quantized bias)
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )


def kept_in_fp32(graph: Any) -> list[str]:
    """The MatMuls static quantization leaves FP32: those with no weight (two activations) and those fed by
    a ``Mul`` (the last op of the exported GELU: the FFN's output projection)."""
    weights = {init.name for init in graph.initializer}
    producer = {output: node.op_type for node in graph.node for output in node.output}
    return [
        node.name for node in graph.node
        if node.op_type == "MatMul"
        and (not any(name in weights for name in node.input) or producer.get(node.input[0]) == "Mul")
    ]


class _CalibrationReader:
    """Feeds of the calibration batches, as the ONNX graph names its inputs (ONNX Runtime's
    ``CalibrationDataReader`` accepts any class with ``get_next``)."""

    def __init__(self, graph: Any, model_dir: str | Path, spec: dict[str, int]):
        names = [i.name for i in graph.input]
        self._feeds = iter([
            {name: tensor.numpy().astype(np.int64) for name, tensor in inputs.items() if name in names}
            for inputs in (make_inputs(model_dir, spec["batch"], spec["seq"], spec["seed"] * 1000 + i)
                           for i in range(spec["batches"]))
        ])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

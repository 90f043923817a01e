"""Which export artifact an ONNX Runtime variant runs, and whether its provider can run here: one
rule for the export stage (which fused graphs to build) and the onnxruntime backend (which file to
open, or why the variant is skipped), so the two cannot drift.

Kept apart from ``backends/onnxruntime.py`` because the export stage must decide without
importing ONNX Runtime's execution code.
"""

from __future__ import annotations

EXECUTION_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
PROVIDERS = tuple(EXECUTION_PROVIDERS)
#: the ``export_artifacts`` keys that are ONNX Runtime's fused graphs (built only when some variant runs them)
FUSED_KEYS = ("fp16", "fp32_fused")
#: the ``onnx_int8`` keys (ONNX Runtime's quantized graphs of the plain export) -> quantization method
INT8_KEYS = {"int8_dynamic": "dynamic", "int8_static": "static"}
QUANTIZATIONS = tuple(INT8_KEYS.values())


def default_provider(device_type: str) -> str:
    """The provider a variant without ``provider`` gets: the CUDA EP on a CUDA device, else the CPU EP."""
    return "cuda" if device_type == "cuda" else "cpu"


def provider_unavailable(provider: str, device_type: str) -> str | None:
    """Why ``provider`` cannot run on a ``device_type`` device here (the cell is ``skipped``), or None.

    The export stage asks this too: a fused graph only a CUDA variant would open is not built on a
    machine without the CUDA EP (for MiniLM on CPU that was 3.5 s and 136 MB for nothing).
    """
    import onnxruntime

    wanted = EXECUTION_PROVIDERS[provider]
    available = onnxruntime.get_available_providers()
    if wanted not in available:
        return f"{wanted} is not available in this onnxruntime build; available: {available}"
    if provider != "cpu" and device_type != "cuda":
        return f"provider {provider!r} needs a CUDA device; this run's device is {device_type}"
    return None


def default_quantization(provider: str) -> str:
    """INT8 without ``quantization``: dynamic on the CPU EP (no calibration, its fastest integer kernels),
    static QDQ on the GPU EPs (TensorRT takes only QDQ; the CUDA EP has no dynamic-quantization kernels)."""
    return "dynamic" if provider == "cpu" else "static"


def ort_artifact_key(provider: str, precision: str, fused: bool, quantization: str | None = None) -> str | None:
    """The artifact key this (provider, precision, fused, quantization) runs: an ``export_artifacts`` key, or
    for INT8 an ``onnx_int8`` key; None where no artifact can run it (BF16: none is written; FP16 on the CPU EP:
    it has no FP16 kernels for most operators; TF32 on the CPU EP).

    The TensorRT EP always runs the plain export (TensorRT cannot build ONNX Runtime's fused
    ``com.microsoft`` ops; FP16 is its own build mode); the CUDA EP's FP16 is the fused FP16 graph.
    TF32 runs the FP32 graphs with TF32 allowed.
    """
    if provider not in PROVIDERS:
        raise ValueError(f"unknown onnxruntime provider {provider!r}; allowed: {list(PROVIDERS)}")
    if precision == "int8":
        return f"int8_{quantization or default_quantization(provider)}"
    if precision == "tf32" and provider != "cpu":
        precision = "fp32"
    if precision not in ("fp32", "fp16") or (precision == "fp16" and provider == "cpu"):
        return None
    if provider == "tensorrt":
        return "fp32"
    if precision == "fp16":
        return "fp16"
    return "fp32_fused" if fused else "fp32"

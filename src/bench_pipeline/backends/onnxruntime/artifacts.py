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


def ort_artifact_key(provider: str, precision: str, fused: bool) -> str | None:
    """The ``export_artifacts`` key this (provider, precision, fused) runs; None where no artifact can
    run it (BF16: none is written; FP16 on the CPU EP: it has no FP16 kernels for most operators).

    The TensorRT EP always runs the plain export (TensorRT cannot build ONNX Runtime's fused
    ``com.microsoft`` ops; FP16 is its own build mode); the CUDA EP's FP16 is the fused FP16 graph.
    """
    if provider not in PROVIDERS:
        raise ValueError(f"unknown onnxruntime provider {provider!r}; allowed: {list(PROVIDERS)}")
    if precision not in ("fp32", "fp16") or (precision == "fp16" and provider == "cpu"):
        return None
    if provider == "tensorrt":
        return "fp32"
    if precision == "fp16":
        return "fp16"
    return "fp32_fused" if fused else "fp32"

"""An ONNX Runtime variant's ``options``, parsed and checked without importing ONNX Runtime or torch: ``config.py``
checks every variant with ``check_options`` before any node runs; the runtime parses them for the run's device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench_pipeline.backends.onnxruntime.artifacts import EXECUTION_PROVIDERS, QUANTIZATIONS, default_provider

_OPTION_NAMES = ("provider", "io_binding", "cuda_graph", "fused", "quantization")
_FLAGS = ("io_binding", "cuda_graph", "fused")


def check_options(options: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming a bad option (the provider a CPU run would default to, for the check)."""
    OrtOptions.parse(options, "cpu")


@dataclass(frozen=True)
class OrtOptions:
    provider: str
    io_binding: bool = True
    cuda_graph: bool = False
    fused: bool = False
    quantization: str | None = None  # INT8's method; None: the provider's default

    @classmethod
    def parse(cls, options: dict[str, Any], device_type: str) -> OrtOptions:
        if "tf32" in options:
            raise ValueError("onnxruntime option tf32 is gone: fp32 is strict FP32; list precision tf32 for TF32")
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise ValueError(f"unknown onnxruntime option(s) {unknown}; allowed: {list(_OPTION_NAMES)}")
        provider = options.get("provider", default_provider(device_type))
        if provider not in EXECUTION_PROVIDERS:
            raise ValueError(f"unknown onnxruntime provider {provider!r}; allowed: {list(EXECUTION_PROVIDERS)}")
        for flag in _FLAGS:
            if flag in options and not isinstance(options[flag], bool):
                raise ValueError(f"onnxruntime option {flag} must be true or false, got {options[flag]!r}")
        quantization = options.get("quantization")
        if quantization is not None and quantization not in QUANTIZATIONS:
            raise ValueError(f"unknown onnxruntime quantization {quantization!r}; allowed: {list(QUANTIZATIONS)}")
        if quantization == "dynamic" and provider != "cpu":
            raise ValueError(f"onnxruntime quantization 'dynamic' runs on provider 'cpu' only (got {provider!r}): "
                             "the CUDA EP has no dynamic-quantization kernels and TensorRT takes QDQ graphs")
        parsed = cls(provider=provider, quantization=quantization,
                     **{k: options[k] for k in _FLAGS if k in options})
        if parsed.fused and provider == "tensorrt":
            raise ValueError("onnxruntime option fused does not apply to provider 'tensorrt': TensorRT cannot "
                             "build ONNX Runtime's fused ops and runs the plain export")
        if parsed.cuda_graph and (provider == "cpu" or not parsed.io_binding):
            raise ValueError(
                "onnxruntime option cuda_graph needs provider 'cuda' or 'tensorrt' and io_binding true "
                f"(got provider {provider!r}, io_binding {parsed.io_binding})"
            )
        return parsed

    @property
    def on_gpu(self) -> bool:
        return self.provider != "cpu"

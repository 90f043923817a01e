"""An ONNX Runtime variant's ``options``, parsed and checked without importing ONNX Runtime or torch: ``config.py``
checks every variant with ``check_options`` before any node runs; the runtime parses them for the run's device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench_pipeline.backends.onnxruntime.artifacts import EXECUTION_PROVIDERS, default_provider

_OPTION_NAMES = ("provider", "io_binding", "cuda_graph", "tf32", "fused")
_FLAGS = ("io_binding", "cuda_graph", "tf32", "fused")


def check_options(options: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming a bad option (the provider a CPU run would default to, for the check)."""
    OrtOptions.parse(options, "cpu")


@dataclass(frozen=True)
class OrtOptions:
    provider: str
    io_binding: bool = True
    cuda_graph: bool = False
    tf32: bool = False
    fused: bool = False

    @classmethod
    def parse(cls, options: dict[str, Any], device_type: str) -> OrtOptions:
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise ValueError(f"unknown onnxruntime option(s) {unknown}; allowed: {list(_OPTION_NAMES)}")
        provider = options.get("provider", default_provider(device_type))
        if provider not in EXECUTION_PROVIDERS:
            raise ValueError(f"unknown onnxruntime provider {provider!r}; allowed: {list(EXECUTION_PROVIDERS)}")
        for flag in _FLAGS:
            if flag in options and not isinstance(options[flag], bool):
                raise ValueError(f"onnxruntime option {flag} must be true or false, got {options[flag]!r}")
        parsed = cls(provider=provider, **{k: options[k] for k in _FLAGS if k in options})
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

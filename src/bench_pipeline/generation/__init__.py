"""The generation scenario (``benchmark.scenario: generate``): a decoder generating text with its KV cache.

One measured call is one full greedy generation of ``generate.new_tokens`` tokens (EOS ignored); inside it
each step is stamped, so a row has the time to first token (prefill), per-token decode latency, end-to-end
latency and generated tokens/s beside the harness's usual rounds, intervals and statuses.

Plain data here (no torch): ``config.py`` checks backend names and options with it before any node runs.
The runtimes live beside it (``torch_backend``, ``ort_backend``, ``tensorrt_backend``) and are imported only
by the worker that opens them.
"""

from __future__ import annotations

from typing import Any

# name under ``generate.backends`` -> "module:class" of its runtime; the names match the forward scenario's
# so the results land in the same ``results_<backend>`` datasets, report and MLflow run
GENERATION_BACKENDS = {
    "eager": "bench_pipeline.generation.torch_backend:EagerGenerateBackend",
    "dynamo": "bench_pipeline.generation.torch_backend:CompiledGenerateBackend",
    "onnxruntime": "bench_pipeline.generation.ort_backend:OrtGenerateBackend",
    "tensorrt": "bench_pipeline.generation.tensorrt_backend:TensorRTGenerateBackend",
}

# option -> allowed values (None: any value of the type shown by the default)
_OPTIONS: dict[str, dict[str, tuple[Any, ...] | None]] = {
    "eager": {"cache": ("dynamic", "static")},
    # torch.compile on the static cache, Hugging Face's recipe; backend any torch._dynamo backend name
    "dynamo": {"mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
               "backend": None, "fullgraph": (True, False)},
    # cache true: past key/values as graph inputs and outputs (IO binding); false: the whole sequence every step
    "onnxruntime": {"provider": ("cpu", "cuda"), "cache": (True, False)},
    "tensorrt": {},
}


def check_generation_options(backend: str, options: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming an unknown option or value and what is allowed."""
    allowed = _OPTIONS[backend]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {backend} generation option(s) {unknown}; allowed: {sorted(allowed)}")
    for key, value in options.items():
        values = allowed[key]
        if values is not None and value not in values:
            raise ValueError(f"{key}={value!r} is not allowed; allowed: {list(values)}")

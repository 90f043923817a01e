"""Backends by name. Adding a backend: one module here, one line below, one block in parameters."""

from __future__ import annotations

from importlib import import_module

from bench_pipeline.backends.base import Backend

# name -> "module:class"; imported only when used, so a missing optional library
# (onnxruntime, tensorrt) never breaks the project at import time.
BACKENDS = {
    "eager": "bench_pipeline.backends.eager.runtime:EagerBackend",
    "dynamo": "bench_pipeline.backends.dynamo.runtime:DynamoBackend",
    "onnxruntime": "bench_pipeline.backends.onnxruntime.runtime:OnnxRuntimeBackend",
    "tensorrt": "bench_pipeline.backends.tensorrt.runtime:TensorRTBackend",
}


def load_backend(name: str) -> Backend:
    return instantiate(BACKENDS[name])


def instantiate(target: str) -> Backend:
    """A backend from its "module:class" target (what a worker process receives)."""
    module_name, class_name = target.split(":")
    return getattr(import_module(module_name), class_name)()

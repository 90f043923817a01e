"""The backend registry: one line per backend package, each naming its ``BACKEND`` descriptor.

Descriptors are plain data (``backends/descriptor.py``): reading the registry imports no backend library, so a
missing optional library (onnxruntime, tensorrt) never breaks the project at import time, and ``config.py``
validates backend names without torch. A runtime is imported only when a unit opens it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from bench_pipeline.backends import dynamo, eager, onnx, onnxruntime, tensorrt
from bench_pipeline.backends.descriptor import BackendDescriptor

if TYPE_CHECKING:
    from bench_pipeline.backends.base import Backend

REGISTRY: dict[str, BackendDescriptor] = {
    "eager": eager.BACKEND,
    "dynamo": dynamo.BACKEND,
    "onnx": onnx.BACKEND,
    "onnxruntime": onnxruntime.BACKEND,
    "tensorrt": tensorrt.BACKEND,
}


def runnable() -> list[str]:
    """Backends with a runtime (those a user lists under ``backends:``), in registry order."""
    return [name for name, descriptor in REGISTRY.items() if descriptor.runtime]


def users_of(build_only: str) -> list[str]:
    """The runnable backends that declare they need ``build_only`` (e.g. the ONNX export)."""
    return [name for name in runnable() if build_only in REGISTRY[name].needs]


def check_options(name: str, options: dict[str, Any]) -> None:
    """``name``'s own check of a variant's options (``ValueError`` naming the bad one); none declared, none run."""
    target = REGISTRY[name].options
    if target:
        module_name, function_name = target.split(":")
        getattr(import_module(module_name), function_name)(options)


def load_backend(name: str) -> Backend:
    return instantiate(REGISTRY[name].runtime)


def instantiate(target: str) -> Backend:
    """A backend from its "module:class" target (what a worker process receives)."""
    module_name, class_name = target.split(":")
    return getattr(import_module(module_name), class_name)()

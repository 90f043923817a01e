"""Eager PyTorch: the baseline every speedup is measured against. No build step."""

from bench_pipeline.backends.descriptor import BackendDescriptor

BACKEND = BackendDescriptor(
    "eager",
    runtime="bench_pipeline.backends.eager.runtime:EagerBackend",
    options="bench_pipeline.backends.eager.options:check_options",
)

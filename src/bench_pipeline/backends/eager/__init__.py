"""Eager PyTorch: the baseline every speedup is measured against. No build step."""

from bench_pipeline.backends.descriptor import BackendDescriptor

BACKEND = BackendDescriptor(
    "eager",
    runtime="bench_pipeline.backends.eager.runtime:EagerBackend",
    precisions={
        "fp32": "CPU, CUDA",
        "tf32": "CUDA, compute capability >= 8.0",
        "fp16": "CUDA",
        "bf16": "CUDA; CPU with AVX512-BF16 or AMX",
        "int8": "CPU: torch dynamic quantization of nn.Linear (INT8 weights, activations quantized per call)",
    },
    options="bench_pipeline.backends.eager.options:check_options",
)

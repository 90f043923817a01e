"""torch.compile (dynamo): a compile step that measures compile costs for the cells to be measured, and a runtime
that compiles its own module in the unit's worker from the step's records and caches."""

from bench_pipeline.backends.descriptor import BackendDescriptor, BuildStep

BACKEND = BackendDescriptor(
    "dynamo",
    runtime="bench_pipeline.backends.dynamo.runtime:DynamoBackend",
    build=(
        BuildStep(
            "bench_pipeline.backends.dynamo.stage:compile_node",
            ("model_info", "environment", "params:benchmark", "params:dynamo_compile", "params:paths"),
            "dynamo_artifacts",
            "compile_node",
        ),
    ),
    reads={"dynamo": "dynamo_artifacts"},
    precisions={
        "fp32": "CPU, CUDA",
        "tf32": "CUDA, compute capability >= 8.0",
        "fp16": "CUDA",
        "bf16": "CUDA; CPU with AVX512-BF16 or AMX",
        "fp8": "CUDA, compute capability >= 8.9: torchao float8 (dynamic activation + weight, rowwise), compiled",
    },
    options="bench_pipeline.backends.dynamo.compile:validate_variant_options",
)

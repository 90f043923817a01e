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
    options="bench_pipeline.backends.dynamo.compile:validate_variant_options",
)

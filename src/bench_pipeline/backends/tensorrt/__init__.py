"""TensorRT: engines built from the shared ONNX export, content-hashed, and their runtime."""

from bench_pipeline.backends.descriptor import BackendDescriptor, BuildStep

BACKEND = BackendDescriptor(
    "tensorrt",
    runtime="bench_pipeline.backends.tensorrt.runtime:TensorRTBackend",
    build=(
        BuildStep(
            "bench_pipeline.backends.tensorrt.stage:build_engines_node",
            ("onnx_fp32", "params:benchmark", "params:tensorrt_build"),
            "tensorrt_artifacts",
            "build_engines_node",
        ),
    ),
    reads={"tensorrt": "tensorrt_artifacts"},
    needs=("onnx",),
    options="bench_pipeline.backends.tensorrt.options:check_options",
)

"""The shared ONNX export: a build-only backend (no runtime) that ONNX Runtime and TensorRT declare they need."""

from bench_pipeline.backends.descriptor import BackendDescriptor, BuildStep

BACKEND = BackendDescriptor(
    "onnx",
    build=(
        BuildStep(
            "bench_pipeline.backends.onnx.stage:export_onnx_node",
            ("model_info", "params:benchmark", "params:export"),
            "onnx_fp32",
            "export_onnx_node",
        ),
    ),
)

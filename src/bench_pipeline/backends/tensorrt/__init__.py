"""TensorRT: engines built from the shared ONNX export, content-hashed, and their runtime."""

from bench_pipeline.backends.descriptor import BackendDescriptor, BuildStep

BACKEND = BackendDescriptor(
    "tensorrt",
    runtime="bench_pipeline.backends.tensorrt.runtime:TensorRTBackend",
    build=(
        BuildStep(
            "bench_pipeline.backends.tensorrt.stage:build_engines_node",
            ("onnx_fp32", "params:benchmark", "params:tensorrt_build", "onnx_int8"),
            "tensorrt_artifacts",
            "build_engines_node",
        ),
    ),
    reads={"tensorrt": "tensorrt_artifacts"},
    needs=("onnx",),
    precisions={
        "fp32": "full TensorRT or TensorRT-RTX on their GPUs (TF32 off)",
        "tf32": "as fp32, TF32 tactics allowed; compute capability >= 8.0",
        "fp16": "as fp32, from an FP16 copy of the export",
        "int8": "as fp32, from the static QDQ graph (explicit quantization, ONNX Runtime's calibration)",
    },
    options="bench_pipeline.backends.tensorrt.options:check_options",
)

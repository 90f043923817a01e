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
        BuildStep(  # ONNX Runtime's quantizer, shared: ONNX Runtime's EPs and TensorRT's INT8 engines read it
            "bench_pipeline.backends.onnxruntime.quantize:quantize_onnx_node",
            ("onnx_fp32", "model_info", "params:benchmark"),
            "onnx_int8",
            "quantize_onnx_node",
        ),
    ),
)

"""ONNX Runtime: its optimizer's fused graphs built from the shared ONNX export, and sessions over them."""

from bench_pipeline.backends.descriptor import BackendDescriptor, BuildStep

BACKEND = BackendDescriptor(
    "onnxruntime",
    runtime="bench_pipeline.backends.onnxruntime.runtime:OnnxRuntimeBackend",
    build=(
        BuildStep(
            "bench_pipeline.backends.onnx.stage:optimize_onnx_node",
            ("onnx_fp32", "model_info", "params:benchmark", "params:export"),
            "export_artifacts",
            "optimize_onnx_node",
        ),
    ),
    reads={"export": "export_artifacts"},
    needs=("onnx",),
)

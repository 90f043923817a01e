"""ONNX Runtime: its optimizer's fused graphs built from the shared ONNX export (optimize.py, stage.py), and
sessions over them (runtime.py; artifacts.py says which graph a variant opens)."""

from bench_pipeline.backends.descriptor import BackendDescriptor, BuildStep

BACKEND = BackendDescriptor(
    "onnxruntime",
    runtime="bench_pipeline.backends.onnxruntime.runtime:OnnxRuntimeBackend",
    build=(
        BuildStep(
            "bench_pipeline.backends.onnxruntime.stage:optimize_onnx_node",
            ("onnx_fp32", "model_info", "params:benchmark", "params:export"),
            "export_artifacts",
            "optimize_onnx_node",
        ),
    ),
    reads={"export": "export_artifacts"},
    needs=("onnx",),
    options="bench_pipeline.backends.onnxruntime.options:check_options",
)

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
    reads={"export": "export_artifacts", "quantized": "onnx_int8"},
    needs=("onnx",),
    precisions={
        "fp32": "CPU EP, CUDA EP (TF32 off), TensorRT EP (no TF32 switch: TensorRT's default allows TF32 tactics)",
        "tf32": "CUDA EP (use_tf32), TensorRT EP (TF32 tactics); compute capability >= 8.0",
        "fp16": "CUDA EP (fused FP16 graph), TensorRT EP (FP16 mode)",
        "int8": "CPU EP (dynamic or static QDQ), CUDA EP and TensorRT EP (static QDQ, calibrated on the text sample)",
    },
    options="bench_pipeline.backends.onnxruntime.options:check_options",
)

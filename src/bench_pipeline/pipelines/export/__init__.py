"""Export stage: the resolved model to ONNX (FP32) and ONNX Runtime's fused FP16 graph."""

from bench_pipeline.pipelines.export.pipeline import create_pipeline

__all__ = ["create_pipeline"]

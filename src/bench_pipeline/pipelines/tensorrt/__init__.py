"""TensorRT stage: ONNX from the export stage -> engines, content-hashed, for the tensorrt backend."""

from bench_pipeline.pipelines.tensorrt.pipeline import create_pipeline

__all__ = ["create_pipeline"]

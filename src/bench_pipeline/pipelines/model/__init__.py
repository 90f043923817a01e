from bench_pipeline.pipelines.model.pipeline import create_pipeline

__all__ = ["create_pipeline"]

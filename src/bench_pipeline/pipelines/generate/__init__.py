from bench_pipeline.pipelines.generate.pipeline import create_pipeline

__all__ = ["create_pipeline"]

from bench_pipeline.pipelines.benchmark.pipeline import create_pipeline

__all__ = ["create_pipeline"]

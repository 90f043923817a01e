from bench_pipeline.pipelines.benchmark.pipeline import backend_pipeline, create_pipeline, needed

__all__ = ["backend_pipeline", "create_pipeline", "needed"]

"""Project pipelines: ``benchmark`` is the whole chain, model -> stages -> backends -> report."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from bench_pipeline.pipelines import benchmark, dynamo, export, model, report, tensorrt


def register_pipelines() -> dict[str, Pipeline]:
    stages = {
        "model": model.create_pipeline(),
        "export": export.create_pipeline(),
        "tensorrt": tensorrt.create_pipeline(),
        "dynamo": dynamo.create_pipeline(),
    }
    full = sum(stages.values(), Pipeline([])) + benchmark.create_pipeline() + report.create_pipeline()
    return {**stages, "benchmark": full, "__default__": full}

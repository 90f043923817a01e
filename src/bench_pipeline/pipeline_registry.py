"""Project pipelines: ``benchmark`` is the whole chain, model -> stages -> backends -> report."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from bench_pipeline.pipelines import benchmark, model, report

BACKENDS_WIRED = ["eager"]


def register_pipelines() -> dict[str, Pipeline]:
    stages = {
        "model": model.create_pipeline(),
        "report": report.create_pipeline(BACKENDS_WIRED),
    }
    full = stages["model"] + benchmark.create_pipeline(BACKENDS_WIRED) + stages["report"]
    return {**stages, "benchmark": full, "__default__": full}

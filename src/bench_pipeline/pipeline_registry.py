"""Project pipelines: ``benchmark`` is the whole chain, model -> each backend's [build] -> plan -> measure -> report;
``<backend>`` is one backend's namespace with the build steps it needs (e.g. ``kedro run --pipeline=tensorrt``)."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from bench_pipeline.backends import REGISTRY
from bench_pipeline.pipelines import benchmark, generate, model, report


def register_pipelines() -> dict[str, Pipeline]:
    per_backend = {
        name: sum((benchmark.backend_pipeline(b, plan=b == name) for b in benchmark.needed([name])), Pipeline([]))
        for name in REGISTRY
    }
    full = model.create_pipeline() + benchmark.create_pipeline() + report.create_pipeline()
    # the generation scenario (benchmark.scenario: generate), into the same report and MLflow run
    generation = generate.create_pipeline() + report.create_pipeline()
    return {"model": model.create_pipeline(), **per_backend, "benchmark": full, "generate": generation,
            "__default__": full}

"""``kedro run --pipelines=generate``: decoder generation with a KV cache per backend, into the same results
datasets, report and MLflow run as the forward scenario (``results_<backend>`` for each generation backend)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from bench_pipeline.generation import GENERATION_BACKENDS
from bench_pipeline.pipelines.generate.nodes import (
    generate_node,
    generation_reference_node,
    resolve_generation_model_node,
)
from bench_pipeline.pipelines.model.nodes import environment_node


def create_pipeline(**kwargs) -> Pipeline:
    backends = list(GENERATION_BACKENDS)
    return Pipeline([
        Node(resolve_generation_model_node, ["params:benchmark", "params:paths"], "model_info",
             name="resolve_generation_model_node"),
        Node(environment_node, "params:benchmark", "environment", name="environment_node"),
        Node(generation_reference_node, ["model_info", "params:benchmark"], "generation_reference",
             name="generation_reference_node"),
        Node(generate_node, ["model_info", "environment", "generation_reference", "params:benchmark", "params:paths",
                             "params:tensorrt_build"],
             [*[f"results_{b}" for b in backends], *[f"raw_times_{b}" for b in backends]], name="generate_node"),
    ])

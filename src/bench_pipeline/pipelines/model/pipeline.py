from kedro.pipeline import Node, Pipeline

from bench_pipeline.pipelines.model.nodes import environment_node, reference_node, resolve_model_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(resolve_model_node, ["params:benchmark", "params:paths"], "model_info", name="resolve_model_node"),
            Node(environment_node, "params:benchmark", "environment", name="environment_node"),
            Node(reference_node, ["model_info", "params:benchmark"], "reference_outputs", name="reference_node"),
        ]
    )

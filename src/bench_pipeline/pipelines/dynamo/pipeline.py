"""model_info ──► compile_node ──► dynamo_artifacts (in memory) ──► the dynamo benchmark node.

The compile node sits in the ``dynamo`` namespace with the dynamo benchmark node, so
``kedro run --namespaces=dynamo`` compiles and measures in one process (the compiled modules
cannot travel between processes), while kedro-viz still shows compile and benchmark apart.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from bench_pipeline.pipelines.dynamo.nodes import compile_node


def create_pipeline(**kwargs) -> Pipeline:
    template = Pipeline(
        [
            Node(
                func=compile_node,
                inputs=["model_info", "params:benchmark", "params:dynamo_compile"],
                outputs="dynamo_artifacts",
                name="compile_node",
            )
        ]
    )
    return Pipeline(
        template,
        namespace="dynamo",
        inputs={"model_info"},
        parameters={"params:benchmark", "params:dynamo_compile"},
        outputs={"dynamo_artifacts"},
    )

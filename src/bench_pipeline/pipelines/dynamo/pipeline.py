"""model_info ──► compile_node ──► dynamo_artifacts (compile costs, cache folders) ──► the dynamo units.

The compile node measures what compiling costs, cold and warm, for the cells that will be
measured; each dynamo unit's worker then compiles its own module from that cache.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from bench_pipeline.backends.dynamo.stage import compile_node


def create_pipeline(**kwargs) -> Pipeline:
    template = Pipeline(
        [
            Node(
                func=compile_node,
                inputs=["model_info", "environment", "params:benchmark", "params:dynamo_compile"],
                outputs="dynamo_artifacts",
                name="compile_node",
            )
        ]
    )
    return Pipeline(
        template,
        namespace="dynamo",
        inputs={"model_info", "environment"},
        parameters={"params:benchmark", "params:dynamo_compile"},
        outputs={"dynamo_artifacts"},
    )

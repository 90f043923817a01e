from kedro.pipeline import Node, Pipeline

from bench_pipeline.backends.tensorrt.stage import build_engines_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                build_engines_node,
                ["export_artifacts", "params:benchmark", "params:tensorrt_build"],
                "tensorrt_artifacts",
                name="build_engines_node",
            )
        ]
    )

"""One namespaced plan node per backend (the kedro-viz demo pattern), feeding one measure node
that times all backends' units together in interleaved rounds; results leave it as
``results_<backend>`` and ``raw_times_<backend>``."""

from kedro.pipeline import Node, Pipeline

from bench_pipeline.backends import BACKENDS
from bench_pipeline.pipelines.benchmark.nodes import make_measure_node, make_plan_node

# The earlier stages each backend reads, by stage name; their outputs are "<stage>_artifacts".
STAGES = {"onnxruntime": ["export"], "tensorrt": ["tensorrt"], "dynamo": ["dynamo"]}


def backend_pipeline(backend: str) -> Pipeline:
    stages = STAGES.get(backend, [])
    artifacts = [f"{stage}_artifacts" for stage in stages]
    template = Pipeline(
        [
            Node(
                make_plan_node(backend, stages),
                ["model_info", "environment", "reference_outputs", "params:benchmark", *artifacts],
                "units",
                name="plan_node",
            )
        ]
    )
    return Pipeline(
        template,
        namespace=backend,
        inputs={"model_info", "environment", "reference_outputs", *artifacts},
        parameters={"params:benchmark"},
        outputs={"units": f"units_{backend}"},
    )


def create_pipeline(backends: list[str] | None = None, **kwargs) -> Pipeline:
    backends = list(backends or BACKENDS)
    measure = Node(
        make_measure_node(backends),
        ["params:benchmark", *[f"units_{b}" for b in backends]],
        [*[f"results_{b}" for b in backends], *[f"raw_times_{b}" for b in backends]],
        name="measure_node",
    )
    return sum((backend_pipeline(b) for b in backends), Pipeline([])) + Pipeline([measure])

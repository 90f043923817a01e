"""One namespaced sub-pipeline per backend (the kedro-viz demo pattern), each able to run
alone with ``--namespaces=<backend>``; results leave the namespace as ``results_<backend>``."""

from kedro.pipeline import Node, Pipeline

from bench_pipeline.backends import BACKENDS
from bench_pipeline.pipelines.benchmark.nodes import make_benchmark_node

# The earlier stages each backend reads, by stage name; their outputs are "<stage>_artifacts".
STAGES = {"onnxruntime": ["export"], "tensorrt": ["tensorrt"], "dynamo": ["dynamo"]}


def backend_pipeline(backend: str) -> Pipeline:
    stages = STAGES.get(backend, [])
    artifacts = [f"{stage}_artifacts" for stage in stages]
    template = Pipeline(
        [
            Node(
                make_benchmark_node(backend, stages),
                ["model_info", "environment", "reference_outputs", "params:benchmark", *artifacts],
                ["results", "raw_times"],
                name="benchmark_node",
            )
        ]
    )
    return Pipeline(
        template,
        namespace=backend,
        inputs={"model_info", "environment", "reference_outputs", *artifacts},
        parameters={"params:benchmark"},
        outputs={"results": f"results_{backend}", "raw_times": f"raw_times_{backend}"},
    )


def create_pipeline(backends: list[str] | None = None, **kwargs) -> Pipeline:
    return sum((backend_pipeline(b) for b in backends or BACKENDS), Pipeline([]))

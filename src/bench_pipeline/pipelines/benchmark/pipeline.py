"""One template per backend descriptor (the kedro-viz demo pattern): the namespace ``<backend>`` holds the
backend's build steps and its plan node, so kedro-viz shows each backend's build and measurement together.
Then one measure node times all backends' units together in interleaved rounds (interleaving needs one
measuring node); results leave it as ``results_<backend>`` and ``raw_times_<backend>``.

A build-only backend (the shared ONNX export) is a namespace of build steps and no plan; it joins the pipeline
whenever a backend that needs it does. Build outputs keep their catalog names outside the namespace."""

from __future__ import annotations

from importlib import import_module

from kedro.pipeline import Node, Pipeline

from bench_pipeline.backends import REGISTRY, runnable
from bench_pipeline.backends.descriptor import BackendDescriptor, BuildStep
from bench_pipeline.pipelines.benchmark.nodes import make_measure_node, make_plan_node

COMMON_INPUTS = ("model_info", "environment", "reference_outputs")


def backend_pipeline(backend: str, plan: bool = True) -> Pipeline:
    """The namespace ``backend``: its build steps (tagged ``build``), then its plan node unless ``plan`` is off."""
    descriptor = REGISTRY[backend]
    nodes = [_build_node(step) for step in descriptor.build]
    if plan and descriptor.runtime:
        inputs = [*COMMON_INPUTS, "params:benchmark", "params:paths", *descriptor.reads.values()]
        nodes.append(Node(make_plan_node(backend, list(descriptor.reads)), inputs, "units", name="plan_node"))
    return _namespaced(Pipeline(nodes), descriptor, plan and descriptor.runtime is not None)


def needed(backends: list[str]) -> list[str]:
    """The build-only backends ``backends`` declare they need, first, then ``backends``, each once."""
    return list(dict.fromkeys([need for b in backends for need in REGISTRY[b].needs] + backends))


def create_pipeline(backends: list[str] | None = None, **kwargs) -> Pipeline:
    backends = list(backends or runnable())
    measure = Node(
        make_measure_node(backends),
        ["params:benchmark", "params:paths", *[f"units_{b}" for b in backends]],
        [*[f"results_{b}" for b in backends], *[f"raw_times_{b}" for b in backends]],
        name="measure_node",
    )
    return sum((backend_pipeline(b, plan=b in backends) for b in needed(backends)), Pipeline([])) + Pipeline([measure])


def _build_node(step: BuildStep) -> Node:
    module_name, function_name = step.func.split(":")
    func = getattr(import_module(module_name), function_name)
    return Node(func, list(step.inputs), step.output, name=step.name, tags={"build"})


def _namespaced(pipeline: Pipeline, descriptor: BackendDescriptor, with_units: bool) -> Pipeline:
    free = pipeline.inputs()
    outputs = {step.output: step.output for step in descriptor.build}
    if with_units:
        outputs["units"] = f"units_{descriptor.name}"
    return Pipeline(
        pipeline,
        namespace=descriptor.name,
        inputs={name for name in free if not name.startswith("params:")},
        parameters={name for name in free if name.startswith("params:")},
        outputs=outputs,
    )

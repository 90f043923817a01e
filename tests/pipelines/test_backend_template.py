"""One descriptor per backend, one template: each backend is a namespace ``[build] -> plan_node``, build-only
backends join when needed, and a new backend with a build step needs nothing but its descriptor."""

from bench_pipeline.backends import REGISTRY, runnable, users_of
from bench_pipeline.backends.descriptor import BackendDescriptor, BuildStep
from bench_pipeline.config import known_backends
from bench_pipeline.pipelines.benchmark import create_pipeline


def convert_node(model_info: dict, benchmark) -> dict:
    return {"status": "ok", "path": "model.xml"}


def test_every_backend_is_one_namespace_with_its_build_then_its_plan():
    names = {node.name for node in create_pipeline().nodes}
    assert {f"{b}.plan_node" for b in runnable()} <= names
    assert {"onnx.export_onnx_node", "onnxruntime.optimize_onnx_node", "tensorrt.build_engines_node",
            "dynamo.compile_node", "measure_node"} <= names
    assert "onnx.plan_node" not in names  # build-only: the shared export has no runtime


def test_the_onnx_export_joins_only_with_a_backend_that_needs_it():
    assert users_of("onnx") == ["onnxruntime", "tensorrt"]
    assert "onnx.export_onnx_node" not in {n.name for n in create_pipeline(["eager"]).nodes}
    assert "onnx.export_onnx_node" in {n.name for n in create_pipeline(["tensorrt"]).nodes}
    assert "onnx" not in known_backends()  # not a backend a user can list under backends:


def test_a_new_backend_with_a_build_step_is_one_descriptor(monkeypatch):
    step = BuildStep(f"{__name__}:convert_node", ("model_info", "params:benchmark"), "openvino_artifacts",
                     "convert_node")
    descriptor = BackendDescriptor("openvino", runtime="nowhere:Backend", build=(step,),
                                   reads={"openvino": "openvino_artifacts"})
    monkeypatch.setitem(REGISTRY, "openvino", descriptor)
    pipeline = create_pipeline(["eager", "openvino"])
    by_name = {node.name: node for node in pipeline.nodes}
    assert by_name["openvino.convert_node"].outputs == ["openvino_artifacts"]
    assert "openvino_artifacts" in by_name["openvino.plan_node"].inputs
    assert "units_openvino" in by_name["measure_node"].inputs
    assert {"results_openvino", "raw_times_openvino"} <= set(by_name["measure_node"].outputs)
    assert "openvino" in known_backends()

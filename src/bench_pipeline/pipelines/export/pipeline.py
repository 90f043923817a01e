"""model_info ──► export_onnx_node ──► optimize_onnx_node ──► export_artifacts (JSON in the catalog)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from bench_pipeline.backends.onnx.stage import export_onnx_node, optimize_onnx_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=export_onnx_node,
                inputs=["model_info", "params:benchmark", "params:export"],
                outputs="onnx_fp32",
                name="export_onnx_node",
            ),
            Node(
                func=optimize_onnx_node,
                inputs=["onnx_fp32", "model_info", "params:benchmark", "params:export"],
                outputs="export_artifacts",
                name="optimize_onnx_node",
            ),
        ]
    )

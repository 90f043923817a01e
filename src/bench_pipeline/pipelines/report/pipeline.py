from kedro.pipeline import Node, Pipeline

from bench_pipeline.backends import runnable
from bench_pipeline.pipelines.report.nodes import mlflow_metrics, publish_results, render_report


def create_pipeline(backends: list[str] | None = None, **kwargs) -> Pipeline:
    backends = backends or runnable()
    return Pipeline(
        [
            Node(
                publish_results,
                ["environment", "model_info", *[f"results_{b}" for b in backends]],
                ["results", "results_csv"],
                name="aggregate_results_node",
            ),
            Node(mlflow_metrics, "results", "benchmark_metrics", name="mlflow_metrics_node"),
            Node(
                render_report,
                ["results", "environment", "model_info"],
                ["report_figures", "report_html", "report_md"],
                name="render_report_node",
            ),
        ]
    )

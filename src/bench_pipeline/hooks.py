"""Project hooks: what kedro-mlflow cannot know on its own.

kedro-mlflow logs a typed (pydantic) parameter as one long string, useless for comparing
runs in the UI, so the values a user compares are logged here as flat parameters. The
environment becomes run tags as soon as it is captured.
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl

from bench_pipeline.config import BenchmarkConfig

log = logging.getLogger(__name__)


def flat_params(config: BenchmarkConfig) -> dict[str, str]:
    """The run's knobs as short MLflow parameters (lists joined with commas)."""
    enabled = config.enabled_backends()
    params = {
        "model.source": config.model.source,
        "model.name": config.model.name or "all-MiniLM-L6-v2 (embedded)",
        "model.trust_remote_code": config.model.trust_remote_code,
        "device": config.device,
        "grid.batch_sizes": ",".join(map(str, config.grid.batch_sizes)),
        "grid.sequence_lengths": ",".join(map(str, config.grid.sequence_lengths)),
        "precisions": ",".join(config.precisions),
        "backends": ",".join(enabled),
        "threads": config.threads or "all",
        "seed": config.seed,
        **{f"timing.{k}": v for k, v in config.timing.model_dump().items()},
    }
    for name, spec in enabled.items():
        params[f"backends.{name}.variants"] = ",".join(v.name for v in spec.variants)
    return {key: str(value) for key, value in params.items()}


class MlflowRunDetailsHooks:
    def __init__(self) -> None:
        self._params_logged = False
        self._run_id: str | None = None

    @hook_impl
    def before_node_run(self, inputs: dict[str, Any]) -> None:
        config = inputs.get("params:benchmark")
        if self._params_logged or not isinstance(config, BenchmarkConfig) or mlflow.active_run() is None:
            return
        mlflow.log_params(flat_params(config))
        self._run_id = mlflow.active_run().info.run_id
        if config.model.trust_remote_code:
            log.warning("trust_remote_code is on: the model repository's own code runs in this process")
        self._params_logged = True

    @hook_impl
    def after_node_run(self, outputs: dict[str, Any]) -> None:
        if mlflow.active_run() is None:
            return
        if "model_info" in outputs:
            info = outputs["model_info"]
            mlflow.set_tags({"model": info["name"], "model.parameters": str(info["num_parameters"])})
        if "environment" in outputs:
            from bench_pipeline.system.environment import mlflow_tags

            mlflow.set_tags(mlflow_tags(outputs["environment"]))

    @hook_impl
    def after_pipeline_run(self, catalog) -> None:
        """Say where the results are: the last thing a user reads after a long run."""
        reports = [catalog.get(name) for name in ("results_csv", "report_html") if name in catalog]
        paths = [str(getattr(getattr(d, "_dataset", d), "_filepath", "")) for d in reports if d is not None]
        log.info("Results: %s", ", ".join(p for p in paths if p) or "data/08_reporting/")
        if self._run_id:
            log.info(
                "MLflow run %s in %s; open it with: mlflow ui --backend-store-uri %s --host 127.0.0.1",
                self._run_id, mlflow.get_tracking_uri(), mlflow.get_tracking_uri(),
            )

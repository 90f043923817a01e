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

    @hook_impl
    def before_node_run(self, inputs: dict[str, Any]) -> None:
        config = inputs.get("params:benchmark")
        if self._params_logged or not isinstance(config, BenchmarkConfig) or mlflow.active_run() is None:
            return
        mlflow.log_params(flat_params(config))
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
            from bench_pipeline.environment import mlflow_tags

            mlflow.set_tags(mlflow_tags(outputs["environment"]))

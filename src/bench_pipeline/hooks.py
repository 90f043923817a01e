"""Project hooks: kedro-mlflow's hook, plus what it cannot know on its own.

kedro-mlflow logs a typed (pydantic) parameter as one long repr string, useless in the UI: here
``benchmark`` becomes the flat parameters a user compares, the other typed stage configs are
flattened like any dict parameter, and each is also a JSON artifact (``params/<name>.json``).
The run is named after what it measures, the environment becomes run tags as soon as it is
captured, and runs a kill left RUNNING are closed as KILLED by the run that resumes them.
A ``--params`` key that no pipeline reads is a typo and fails before anything starts.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro_mlflow.framework.hooks import MlflowHook
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from bench_pipeline import mlflow_runs
from bench_pipeline.config import BenchmarkConfig, unknown_keys_message
from bench_pipeline.generation.model import DEFAULT_PRESET

log = logging.getLogger(__name__)


def flat_params(config: BenchmarkConfig) -> dict[str, str]:
    """The run's knobs as short MLflow parameters (lists joined with commas)."""
    enabled = config.enabled_backends()
    params = {
        "model.source": config.model.source,
        "model.name": config.model.name or default_model_name(config),
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
    if config.scenario == "generate":
        params |= {"scenario": config.scenario, "generate.new_tokens": config.generate.new_tokens}
    for name, spec in enabled.items():
        params[f"backends.{name}.variants"] = ",".join(v.name for v in spec.variants)
    return {key: str(value) for key, value in params.items()}


def default_model_name(config: BenchmarkConfig) -> str:
    """What ``model.source: default`` is in the run's scenario."""
    return f"{DEFAULT_PRESET} (embedded)" if config.scenario == "generate" else "all-MiniLM-L6-v2 (embedded)"


def check_runtime_params(runtime_params: dict[str, Any], read: set[str]) -> None:
    """``--params "benchmrk.grid.batch_sizes=4"`` would add a parameter nothing reads and run the
    defaults: a top-level key that no pipeline reads (``read``) is refused."""
    unknown = sorted(set(runtime_params) - read)
    if unknown and "parameters" not in read:
        raise ValueError(f"--params: {unknown_keys_message(unknown, sorted(read))}")


def params_read_by_pipelines() -> set[str]:
    """Top-level parameter names the registered pipelines' nodes take (``params:<name>``)."""
    from kedro.framework.project import pipelines

    names = {name for pipeline in pipelines.values() for name in pipeline.datasets()}
    # a node that takes "parameters" reads every key: then nothing is unknown
    read = {n.removeprefix("params:").split(".")[0] for n in names if n.startswith("params:")}
    return read | ({"parameters"} & names)


class BenchMlflowHook(MlflowHook):
    """Registered in ``settings.HOOKS`` instead of kedro-mlflow's own instance, so that typed
    parameters are handled before kedro-mlflow logs them and our steps run once its run exists."""

    def __init__(self) -> None:
        super().__init__()
        self._logged: set[str] = set()
        self._config: BenchmarkConfig | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        check_runtime_params(context.config_loader.runtime_params, params_read_by_pipelines())
        super().after_context_created(context)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        self._logged, self._config = set(), None
        super().before_pipeline_run(run_params, pipeline, catalog)
        run = mlflow.active_run()
        if not self._is_mlflow_enabled or run is None:
            return
        client = MlflowClient()
        mlflow_runs.claim_run(client, run.info.run_id)
        mlflow_runs.mark_killed_runs(client, run.info.experiment_id, run.info.run_id)
        mlflow_runs.show_runs_first(client, run.info.experiment_id)

    @hook_impl
    def before_node_run(self, node, catalog, inputs: dict[str, Any], is_async: bool) -> None:
        typed = {name: value for name, value in inputs.items() if isinstance(value, BaseModel)}
        flattened = {
            name: value.model_dump(mode="json")
            for name, value in typed.items() if not isinstance(value, BenchmarkConfig)
        }
        plain = {name: value for name, value in inputs.items() if name not in typed} | flattened
        super().before_node_run(node, catalog, plain, is_async)
        if not self._is_mlflow_enabled or mlflow.active_run() is None:
            return
        for name, value in typed.items():
            if name not in self._logged:
                mlflow.log_dict(value.model_dump(mode="json"), f"params/{name.removeprefix('params:')}.json")
                self._logged.add(name)
        config = inputs.get("params:benchmark")
        if isinstance(config, BenchmarkConfig) and "flat_params" not in self._logged:
            self._log_benchmark(config)
            self._logged.add("flat_params")

    def _log_benchmark(self, config: BenchmarkConfig) -> None:
        mlflow.log_params(flat_params(config))
        self._config = config
        if config.model.trust_remote_code:
            log.warning("trust_remote_code is on: the model repository's own code runs in this process")

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
            self._name_run(outputs["environment"]["device"])

    def _name_run(self, device: str) -> None:
        """``model · device · date`` once the device is known, unless the user named the run."""
        if self._config is None or self.mlflow_config.tracking.run.name is not None or self._already_active_mlflow:
            return
        started = datetime.fromtimestamp(mlflow.active_run().info.start_time / 1000)
        mlflow.set_tag("mlflow.runName", mlflow_runs.run_name(self._config, device, started))

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        """Say where the results are: the last thing a user reads after a long run."""
        super().after_pipeline_run(run_params, pipeline, catalog)
        reports = [catalog.get(name) for name in ("results_csv", "report_html") if name in catalog]
        paths = [str(getattr(getattr(d, "_dataset", d), "_filepath", "")) for d in reports if d is not None]
        log.info("Results: %s", ", ".join(p for p in paths if p) or "data/08_reporting/")
        if self._is_mlflow_enabled and self.run_id:
            log.info(
                "MLflow run %s in %s; open it with: mlflow ui --backend-store-uri %s --host 127.0.0.1",
                self.run_id, mlflow.get_tracking_uri(), mlflow.get_tracking_uri(),
            )

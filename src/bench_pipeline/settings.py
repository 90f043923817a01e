"""Kedro project settings: the project's hooks and how configuration environments merge."""

import os

from omegaconf.resolvers import oc

from bench_pipeline.config_loader import NamedFileConfigLoader
from bench_pipeline.hooks import BenchMlflowHook

# An MLflow server that does not answer should fail a run in seconds, not after minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

# kedro-mlflow's hook, extended (see hooks.py); so its own instance is not registered as well.
HOOKS = (BenchMlflowHook(),)
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-mlflow", "kedro_mlflow")  # the distribution's name, as either spelling

# Kedro's OmegaConfigLoader; a YAML error names its file.
CONFIG_LOADER_CLASS = NamedFileConfigLoader

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # soft: a `benchmark:` block in conf/gpu or conf/local holds only what differs from conf/base,
    # instead of replacing the whole base block (Kedro's default, destructive merge)
    "merge_strategy": {"parameters": "soft"},
    # ${oc.env:NAME,default} outside credentials too: mlflow.yml lets MLFLOW_TRACKING_URI win over its default
    "custom_resolvers": {"oc.env": oc.env},
}

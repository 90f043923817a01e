"""Kedro project settings: the project's hooks and how configuration environments merge."""

import os

from bench_pipeline.hooks import MlflowRunDetailsHooks

# An MLflow server that does not answer should fail a run in seconds, not after minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

HOOKS = (MlflowRunDetailsHooks(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # soft: a `benchmark:` block in conf/gpu or conf/local holds only what differs from conf/base,
    # instead of replacing the whole base block (Kedro's default, destructive merge)
    "merge_strategy": {"parameters": "soft"},
}

"""What a user meets in the MLflow UI, beyond what kedro-mlflow records on its own.

Plain functions over an ``MlflowClient``, so they are tested against a real store; ``hooks.py``
calls them at the right moment of a ``kedro run``.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from pathlib import Path

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from bench_pipeline.config import BenchmarkConfig

log = logging.getLogger(__name__)

# MLflow 3 opens an experiment without this tag in its GenAI (traces) view, empty for us.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# Who runs a run: a RUNNING run whose process is gone on this host was killed.
HOST_TAG, PID_TAG = "bench.host", "bench.pid"
RESUMED_BY_TAG, RESUMES_TAG = "bench.resumed_by", "bench.resumes"


def model_label(config: BenchmarkConfig) -> str:
    """The model as a user names it: hub id, preset, directory name, or the embedded default."""
    spec = config.model
    if spec.source == "default":
        return "all-MiniLM-L6-v2"
    return Path(spec.name).name if spec.source == "local" else spec.name


def run_name(config: BenchmarkConfig, device: str, started: datetime) -> str:
    """``model · device · date``: a list of runs that says what each one measured."""
    return f"{model_label(config)} · {device} · {started:%Y-%m-%d %H:%M}"


def show_runs_first(client: MlflowClient, experiment_id: str) -> None:
    """Mark the experiment as model development, so MLflow 3 opens it on its runs, not on traces.
    A kind a user picked in the UI is kept."""
    if EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, "custom_model_development")


def claim_run(client: MlflowClient, run_id: str) -> None:
    """Tag the run with this host and process, so a later run can tell whether it still lives."""
    client.set_tag(run_id, HOST_TAG, socket.gethostname())
    client.set_tag(run_id, PID_TAG, str(os.getpid()))


def mark_killed_runs(client: MlflowClient, experiment_id: str, run_id: str) -> list[str]:
    """Runs of this host left RUNNING by a process that is gone (SIGKILL, OOM killer, power loss)
    become KILLED, tagged with ``run_id``, the run that resumes their sweep. Runs of other hosts,
    or of a process that still exists, are left alone: they may be running."""
    host = socket.gethostname()
    running = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    )
    killed = [
        run.info.run_id for run in running
        if run.info.run_id != run_id and not _alive(int(run.data.tags.get(PID_TAG, "0")))
    ]
    for dead in killed:
        client.set_tag(dead, RESUMED_BY_TAG, run_id)
        client.set_terminated(dead, RunStatus.to_string(RunStatus.KILLED))
    if killed:
        client.set_tag(run_id, RESUMES_TAG, ",".join(killed))
        log.info("MLflow run(s) %s were killed mid-run; marked KILLED, resumed by %s", ", ".join(killed), run_id)
    return killed


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True

"""One MLflow server for every writer of a fan-out: a parent run per sweep, a child run per unit.

Workers never open the sqlite file themselves: alembic migrations race on a fresh file and
sqlite is unsafe on network filesystems. With a ``sqlite:`` tracking URI (the project default)
the driver starts ``mlflow server`` on 127.0.0.1 with that store behind it for the sweep; an
``http(s)://`` URI is used as it is (several hosts: a server with PostgreSQL behind it). The
experiment is created once by the driver before any work is sent (a lookup-then-create in each
worker races: one of six concurrent processes got ``RESOURCE_ALREADY_EXISTS`` in a probe).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_pipeline.harness.results import cell_name

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
SERVER_START_S = 180  # a loaded 2-core machine needs a while to import mlflow and migrate
# Writers to the sweep's own server wait for it: a busy host answers late, and a `kedro run`'s
# settings.py tells MLflow to give up after 10 s and one retry (right for a dead server, wrong here:
# a child run that fails to log would fail its shard, which would then be measured again).
PATIENT_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5", "MLFLOW_HTTP_REQUEST_TIMEOUT": "120"}


def without_mlflow(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` less every ``MLFLOW_*`` variable. The driver's process may hold a store or a run that
    is not the sweep's: ``mlflow.set_tracking_uri`` (a notebook, an earlier test) puts the URI in
    ``MLFLOW_TRACKING_URI``, an active run its id in ``MLFLOW_RUN_ID``; a process started from it
    would inherit them."""
    return {k: v for k, v in env.items() if not k.startswith("MLFLOW_")}


def writer_env(url: str | None) -> dict[str, str]:
    """The MLflow variables every process of a fan-out gets: the sweep's server (when it has one), patient requests."""
    return ({"MLFLOW_TRACKING_URI": url} if url else {}) | PATIENT_HTTP


@contextmanager
def tracking_server(uri: str, remote_workers: bool, log_path: Path) -> Iterator[str]:
    """An HTTP tracking URI every worker can write to, for the duration of the fan-out."""
    if uri.startswith(("http://", "https://")):
        yield uri
        return
    if not uri.startswith("sqlite:"):
        raise ValueError(f"MLflow tracking URI {uri!r}: fan-out workers write through a server; use sqlite:///... "
                         "(a server on 127.0.0.1 is started for the sweep) or http(s)://...")
    if remote_workers:
        raise ValueError(f"MLflow tracking URI {uri!r} with benchmark.scale.scheduler: workers on other hosts cannot "
                         "reach a server on 127.0.0.1; set mlflow_tracking_uri (conf/<env>/mlflow.yml) to a shared "
                         "server, e.g. `mlflow server --backend-store-uri postgresql://... --host 0.0.0.0`")
    with _local_server(uri, log_path) as url:
        yield url


@contextmanager
def _local_server(store: str, log_path: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    url = f"http://{LOOPBACK}:{port}"
    # `python -m mlflow`: the `mlflow` script need not sit beside the interpreter (wheels installed with --target)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
               "--host", LOOPBACK, "--port", str(port), "--workers", "1"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = without_mlflow(os.environ) | {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    with log_path.open("w") as server_log:
        server = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_healthy(url, server, log_path)
        log.info("fan-out: MLflow server %s over %s (log: %s)", url, store, log_path)
        yield url
    finally:  # its own process group: the uvicorn workers stop with it
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _wait_healthy(url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server {url} did not answer within {SERVER_START_S} s: {log_path.read_text()[-2000:]}")


def start_sweep(url: str, sweep_id: str, experiment_name: str, parent_run_id: str | None) -> dict[str, Any]:
    """The experiment (created here, once, before any worker writes) and the sweep's parent run
    (the driver's own run when there is one, e.g. kedro-mlflow's; else a new one)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    if parent_run_id:
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        client.set_tag(parent_run_id, "sweep_id", sweep_id)
    else:
        experiment = client.get_experiment_by_name(experiment_name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
        parent_run_id = client.create_run(experiment_id, tags={"sweep_id": sweep_id},
                                          run_name=f"sweep {sweep_id}").info.run_id
    return {"url": url, "experiment_id": experiment_id, "parent_run_id": parent_run_id, "sweep_id": sweep_id}


def log_child_runs(tracking: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """One child run per unit of a shard (FINISHED, or ``result["run_status"]`` for a shard that
    could not be measured): plain tags to line runs up in the UI, trustworthy cells as metrics."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=tracking["url"])
    device, ids = result["device"], []
    units: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in result["rows"]:
        units.setdefault((row["backend"], row["variant"], row["precision"]), []).append(row)
    for (backend, variant, precision), rows in units.items():
        tags = {
            "mlflow.parentRunId": tracking["parent_run_id"], "sweep_id": tracking["sweep_id"],
            "model": rows[0]["model"], "backend": backend, "variant": variant, "precision": precision,
            "gpu_uuid": device["gpu_uuid"] or "none", "gpu_id": device["gpu_id"], "host": device["host"],
            "shard": device["shard"], "worker": result["worker"],
        }
        run = client.create_run(tracking["experiment_id"], start_time=int(result["start"] * 1000), tags=tags,
                                run_name=f"{backend}/{variant}/{precision} on {device['host']} GPU {device['gpu_id']}")
        now = int(time.time() * 1000)
        metrics = [Metric(f"{name}/{cell_name(r['batch'], r['seq'])}", float(r[name]), now, 0)
                   for r in rows if r["status"] == "ok" for name in ("p50_ms", "speedup") if r[name] is not None]
        metrics.append(Metric("cells_ok", float(sum(r["status"] == "ok" for r in rows)), now, 0))
        client.log_batch(run.info.run_id, metrics=metrics)
        client.set_terminated(run.info.run_id, result.get("run_status", "FINISHED"), end_time=int(result["end"] * 1000))
        ids.append(run.info.run_id)
    return ids

"""What a user sees in the MLflow UI, read back from a real ``mlflow server`` over its REST API.

Two real ``kedro run --pipelines=benchmark`` runs of a tiny BERT that differ in one knob (CPU
threads), like two GPUs or two library versions would, land in one store. A real MLflow server
on 127.0.0.1 then has to answer the questions the UI asks: are both runs there, does every cell
have a value in both runs (cell-by-cell comparison), can runs be filtered on the knob, does a
backend's latency form a line along batch size (metric history with step = batch), and are the
report and figures attached.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import FAST_TIMING, copy_project, kedro
from ui_helpers import LOOPBACK, background_server, free_port, get_json, http_get, post_json

pytestmark = [pytest.mark.slow, pytest.mark.ui]  # a `kedro run`, then an MLflow server over HTTP

EXPERIMENT = "bench_pipeline"
CELL_METRIC = "p50_ms/eager.default/fp32/b2_s16"
BY_BATCH_METRIC = "p50_ms_by_batch/eager.default/fp32/s16"


@pytest.fixture(scope="module")
def project_with_two_runs(tiny_bert_dir, tmp_path_factory) -> Path:
    """One project, one MLflow store, two runs: threads=1, then threads=2 from the command line."""
    project = copy_project(tmp_path_factory.mktemp("project"), {
        "model": {"source": "local", "name": str(tiny_bert_dir)},
        "grid": {"batch_sizes": [1, 2], "sequence_lengths": [16]},
        "precisions": ["fp32"],
        "timing": FAST_TIMING,
        "threads": 1,
    })
    for extra in ([], ["--params", "benchmark.threads=2"]):
        result = kedro(project, "run", "--pipelines=benchmark", *extra)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project


@pytest.fixture(scope="module")
def mlflow_url(project_with_two_runs, tmp_path_factory) -> str:
    """Base URL of an ``mlflow server`` on loopback, reading the project's own store."""
    project = project_with_two_runs
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_cli), "server",
        "--backend-store-uri", f"sqlite:///{project / 'mlflow.db'}",
        "--host", LOOPBACK, "--port", str(port), "--workers", "1",
    ]
    env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    url = f"http://{LOOPBACK}:{port}"
    log = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    with background_server(command, project, f"{url}/health", log, env=env, timeout_s=180):
        yield url


@pytest.fixture(scope="module")
def runs(mlflow_url) -> list[dict]:
    """The experiment's runs as the REST API returns them."""
    experiment = get_json(mlflow_url, "/api/2.0/mlflow/experiments/get-by-name", experiment_name=EXPERIMENT)
    experiment_id = experiment["experiment"]["experiment_id"]
    return post_json(mlflow_url, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]})["runs"]


@pytest.fixture(scope="module")
def runs_by_threads(runs) -> dict[str, dict]:
    return {params(run)["threads"]: run for run in runs}


def params(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def test_ui_index_page_is_served(mlflow_url):
    status, content_type, body = http_get(f"{mlflow_url}/")
    assert status == 200 and content_type.startswith("text/html")
    assert "<title>MLflow</title>" in body


def test_both_runs_are_in_the_experiment_and_finished(runs):
    assert sorted(params(run)["threads"] for run in runs) == ["1", "2"]
    assert all(run["info"]["status"] == "FINISHED" for run in runs)


def test_every_cell_has_a_value_in_both_runs(runs_by_threads):
    """The UI's run comparison lines up metrics by key: same keys in both runs, one per cell."""
    first, second = (metrics(runs_by_threads[t]) for t in ("1", "2"))
    assert first[CELL_METRIC] > 0 and second[CELL_METRIC] > 0
    cell_keys = {key for key in first if key.startswith("p50_ms/")}
    assert cell_keys == {key for key in second if key.startswith("p50_ms/")}
    assert {"p50_ms/eager.default/fp32/b1_s16", "p50_ms/eager.default/fp32/b2_s16"} <= cell_keys


def test_runs_can_be_filtered_on_a_parameter(mlflow_url, runs_by_threads):
    experiment_id = runs_by_threads["1"]["info"]["experiment_id"]
    for threads, run in runs_by_threads.items():
        found = post_json(mlflow_url, "/api/2.0/mlflow/runs/search", {
            "experiment_ids": [experiment_id], "filter": f"params.threads = '{threads}'",
        })["runs"]
        assert [r["info"]["run_id"] for r in found] == [run["info"]["run_id"]]


def test_latency_along_batch_size_is_a_metric_history(mlflow_url, runs_by_threads):
    """Step = batch size, so the UI's metric chart draws latency against batch, one line per backend."""
    for run in runs_by_threads.values():
        history = get_json(
            mlflow_url, "/api/2.0/mlflow/metrics/get-history",
            run_id=run["info"]["run_id"], metric_key=BY_BATCH_METRIC,
        )["metrics"]
        assert sorted(point["step"] for point in history) == [1, 2]
        assert all(point["value"] > 0 for point in history)


def test_report_and_figures_are_run_artifacts(mlflow_url, runs_by_threads):
    run_id = runs_by_threads["2"]["info"]["run_id"]
    listing = get_json(mlflow_url, "/api/2.0/mlflow/artifacts/list", run_id=run_id)["files"]
    entries = {entry["path"]: entry["is_dir"] for entry in listing}
    assert entries.get("report.html") is False and entries.get("figures") is True
    figures = get_json(mlflow_url, "/api/2.0/mlflow/artifacts/list", run_id=run_id, path="figures")["files"]
    assert "figures/speedup_heatmap.png" in {entry["path"] for entry in figures}
    status, _, report = http_get(f"{mlflow_url}/get-artifact?path=report.html&run_uuid={run_id}")
    assert status == 200 and "data:image/png;base64," in report

"""`kedro run --pipeline=benchmark` for real, in a temporary copy of the project, then the
results file and the MLflow store (read back with MlflowClient) are checked."""

import time

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import FAST_TIMING, copy_project, kedro


@pytest.fixture(scope="module")
def finished_run(tiny_bert_dir, tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("project"), {
        "model": {"source": "local", "name": str(tiny_bert_dir)},
        "grid": {"batch_sizes": [1, 2], "sequence_lengths": [16]},
        "precisions": ["fp32", "fp16"],
        "timing": FAST_TIMING,
    })
    result = kedro(project, "run", "--pipeline=benchmark")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project, result


def test_results_have_one_row_per_planned_cell(finished_run):
    project, _ = finished_run
    results = pd.read_parquet(project / "data/08_reporting/results.parquet")
    # the default run lists every backend, runnable here or not
    assert set(results.backend) == {"eager", "dynamo", "onnxruntime", "tensorrt"}
    assert not results.duplicated(["backend", "variant", "precision", "batch", "seq"]).any()
    onnx_cpu = results[(results.backend == "onnxruntime") & (results.variant == "cpu")]
    assert (onnx_cpu.status == "ok").all() and (onnx_cpu.cosine > 0.99999).all()
    cuda_rows = results[(results.backend == "onnxruntime") & (results.variant == "cuda")]
    assert (cuda_rows.status == "skipped").all() and cuda_rows.reason.str.contains("CUDAExecutionProvider").all()
    inductor = results[(results.backend == "dynamo") & (results.variant == "inductor")]
    assert (inductor.status == "ok").all() and (inductor.compile_s > 0).all()
    eager = results[results.backend == "eager"]
    assert sorted(zip(eager.precision, eager.batch, eager.seq)) == [
        ("fp16", 1, 16), ("fp16", 2, 16), ("fp32", 1, 16), ("fp32", 2, 16)]
    fp32 = eager[eager.precision == "fp32"]
    assert (fp32.status == "ok").all() and (fp32.p50_ms > 0).all() and (fp32.speedup == 1.0).all()
    assert (eager[eager.precision == "fp16"].status == "unsupported").all()
    csv = pd.read_csv(project / "data/08_reporting/results.csv")
    assert len(csv) == len(results)


def test_mlflow_run_has_params_metrics_tags_and_artifacts(finished_run):
    project, _ = finished_run
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["bench_pipeline"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    params = run.data.params
    assert params["grid.batch_sizes"] == "1,2" and params["grid.sequence_lengths"] == "16"
    assert params["precisions"] == "fp32,fp16" and "eager" in params["backends"].split(",")
    assert params["model.source"] == "local"
    metrics = run.data.metrics
    assert metrics["p50_ms/eager.default/fp32/b2_s16"] > 0
    assert metrics["speedup/eager.default/fp32/b1_s16"] == 1.0
    results = pd.read_parquet(project / "data/08_reporting/results.parquet")
    for status, count in results.status.value_counts().items():
        assert metrics[f"cells/{status}"] == count
    history = MlflowClient().get_metric_history(run.info.run_id, "p50_ms_by_batch/eager.default/fp32/s16")
    assert sorted(m.step for m in history) == [1, 2]
    tags = run.data.tags
    assert tags["env.lib.torch"] and tags["env.device"] == "cpu" and tags["model"]
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"results.parquet", "results.csv", "environment.json", "report.html", "report.md", "figures"} <= artifacts
    figures = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "figures")}
    assert "figures/speedup_heatmap.png" in figures


def test_report_names_every_unsupported_cell_and_embeds_figures(finished_run):
    project, _ = finished_run
    html = (project / "data/08_reporting/report.html").read_text()
    assert "FP16 is not a supported inference precision on CPU" in html
    assert "data:image/png;base64," in html
    markdown = (project / "data/08_reporting/report.md").read_text()
    assert "figures/speedup_heatmap.png" in markdown
    assert (project / "data/08_reporting/figures/speedup_heatmap.png").stat().st_size > 10_000


def test_the_run_says_where_its_results_and_mlflow_run_are(finished_run):
    project, result = finished_run
    output = " ".join((result.stdout + result.stderr).split())
    assert "Results:" in output and "report.htm" in output
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    run_id = mlflow.search_runs(experiment_names=["bench_pipeline"], output_format="list")[0].info.run_id
    assert "MLflow run" in output and run_id in output  # rich wraps log lines: check the parts
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in output


def test_raw_per_call_times_are_kept(finished_run):
    project, _ = finished_run
    results = pd.read_parquet(project / "data/08_reporting/results.parquet")
    ok = results[results.status == "ok"]
    key = ["variant", "precision", "batch", "seq"]
    checked = []
    for backend, rows in ok.groupby("backend"):
        raw = pd.read_parquet(project / f"data/07_model_output/raw_times_{backend}.parquet")
        assert set(raw.backend) == {backend}
        counts = raw.groupby(key).size()
        for row in rows.itertuples():
            cell = (row.variant, row.precision, row.batch, row.seq)
            assert counts.get(cell, 0) == row.iterations, (backend, cell)  # every timed call of the cell
        checked.append(backend)
    assert len(checked) >= 2, checked  # eager and at least one other backend ran ok here


def test_bad_parameter_fails_before_any_node_runs(tmp_path):
    project = copy_project(tmp_path)
    result = kedro(project, "run", "--pipeline=benchmark", "--params", "benchmark.device=tpu")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unknown device 'tpu'" in output
    assert "Running node" not in output and not (project / "data/06_models/model_info.json").exists()


def test_unreachable_mlflow_server_fails_fast_before_any_node(tmp_path):
    project = copy_project(tmp_path)
    mlflow_yml = project / "conf/base/mlflow.yml"
    mlflow_yml.write_text(mlflow_yml.read_text().replace("sqlite:///mlflow.db", "http://127.0.0.1:9"))
    started = time.monotonic()
    result = kedro(project, "run", "--pipeline=benchmark")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "http://127.0.0.1:9" in output and "Connection refused" in output
    assert "Running node" not in output
    assert time.monotonic() - started < 120  # settings.py caps MLflow's HTTP retries

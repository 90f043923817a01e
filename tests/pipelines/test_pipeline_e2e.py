"""`kedro run --pipelines=benchmark` for real, in a temporary copy of the project, then the
results file and the MLflow store (read back with MlflowClient) are checked."""

import json
import re
import subprocess
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import FAST_TIMING, copy_project, kedro

pytestmark = pytest.mark.slow  # whole `kedro run`s in subprocesses


@pytest.fixture(scope="module")
def finished_run(tiny_bert_dir, tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("project"), {
        "model": {"source": "local", "name": str(tiny_bert_dir)},
        "grid": {"batch_sizes": [1, 2], "sequence_lengths": [16]},
        "precisions": ["fp32", "fp16"],
        "timing": FAST_TIMING,
    })
    result = kedro(project, "run", "--pipelines=benchmark")
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
    result = kedro(project, "run", "--pipelines=benchmark", "--params", "benchmark.device=tpu")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unknown device 'tpu'" in output
    assert "Running node" not in output and not (project / "data/06_models/model_info.json").exists()


def test_unreachable_mlflow_server_fails_fast_before_any_node(tmp_path):
    project = copy_project(tmp_path)
    mlflow_yml = project / "conf/base/mlflow.yml"
    mlflow_yml.write_text(mlflow_yml.read_text().replace("sqlite:///mlflow.db", "http://127.0.0.1:9"))
    started = time.monotonic()
    result = kedro(project, "run", "--pipelines=benchmark")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "http://127.0.0.1:9" in output and "Connection refused" in output
    assert "Running node" not in output
    assert time.monotonic() - started < 120  # settings.py caps MLflow's HTTP retries


def failed_before_any_node(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Running node" not in output
    return " ".join(output.split())  # rich wraps long lines


def test_mlflow_run_is_named_after_what_it_measured(finished_run, tiny_bert_dir):
    project, _ = finished_run
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    run = mlflow.search_runs(experiment_names=["bench_pipeline"], output_format="list")[0]
    name = run.info.run_name
    assert re.fullmatch(rf"{tiny_bert_dir.name} · cpu · \d{{4}}-\d\d-\d\d \d\d:\d\d", name), name


def test_typed_configs_are_json_artifacts_and_flat_params_not_repr_strings(finished_run):
    project, _ = finished_run
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    run = mlflow.search_runs(experiment_names=["bench_pipeline"], output_format="list")[0]
    params = run.data.params
    assert not {"benchmark", "export", "tensorrt_build", "dynamo_compile"} & set(params)
    assert not [key for key, value in params.items() if "Spec(" in value or "Config(" in value]
    assert params["export.opset"] == "17" and params["tensorrt_build.shapes"] == "dynamic"
    client = MlflowClient()
    files = {a.path for a in client.list_artifacts(run.info.run_id, "params")}
    assert {"params/benchmark.json", "params/export.json", "params/tensorrt_build.json"} <= files
    benchmark = json.loads(Path(client.download_artifacts(run.info.run_id, "params/benchmark.json")).read_text())
    assert benchmark["grid"] == {"batch_sizes": [1, 2], "sequence_lengths": [16]}


def test_the_experiment_opens_on_its_runs_not_on_genai_traces(finished_run):
    project, _ = finished_run
    experiment = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_experiment_by_name("bench_pipeline")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_a_typo_at_the_top_of_params_fails_before_any_node_naming_the_known_keys(tmp_path):
    project = copy_project(tmp_path)
    output = failed_before_any_node(
        kedro(project, "run", "--pipelines=benchmark", "--params", "benchmrk.grid.batch_sizes=4"))
    assert "--params: unknown key(s) ['benchmrk'] (did you mean 'benchmark'?)" in output
    assert "'export'" in output and "'tensorrt_build'" in output


def test_a_list_in_params_is_written_with_spaces(tmp_path):
    """Kedro splits --params at commas; the validation error shows the list arrived whole."""
    project = copy_project(tmp_path)
    result = kedro(project, "run", "--pipelines=benchmark", "--params", "benchmark.grid.sequence_lengths=16 1024")
    assert "sequence length(s) [1024] exceed" in failed_before_any_node(result)


def test_a_list_in_a_kedro_run_config_file(tmp_path):
    project = copy_project(tmp_path)
    (project / "run.yml").write_text(yaml.safe_dump({"run": {
        "pipelines": "benchmark", "params": {"benchmark": {"grid": {"sequence_lengths": [16, 1024]}}}}}))
    assert "sequence length(s) [1024] exceed" in failed_before_any_node(kedro(project, "run", "--config", "run.yml"))


def test_mlflow_tracking_uri_variable_wins_over_the_default(tmp_path):
    project = copy_project(tmp_path)
    store = tmp_path / "elsewhere.db"
    # a bad parameter stops the run before any node, after kedro-mlflow has opened the store
    failed_before_any_node(kedro(project, "run", "--pipelines=benchmark", "--params", "benchmark.device=tpu",
                                 env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"}))
    assert MlflowClient(f"sqlite:///{store}").get_experiment_by_name("bench_pipeline") is not None
    assert not (project / "mlflow.db").exists()


def test_unreachable_mlflow_tracking_uri_variable_fails_fast_naming_it(tmp_path):
    project = copy_project(tmp_path)
    started = time.monotonic()
    result = kedro(project, "run", "--pipelines=benchmark", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    output = failed_before_any_node(result)
    assert "http://127.0.0.1:9" in output and "Connection refused" in output
    assert time.monotonic() - started < 120

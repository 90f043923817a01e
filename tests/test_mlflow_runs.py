"""The MLflow run bookkeeping of ``mlflow_runs`` against a real sqlite store."""

import os
import socket
import subprocess
import sys

from mlflow.tracking import MlflowClient

from bench_pipeline import mlflow_runs


def test_only_runs_whose_process_is_gone_on_this_host_are_marked_killed(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("e")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    runs = {}
    for name, host, pid in [("dead", socket.gethostname(), gone.stdout.strip()),
                            ("alive", socket.gethostname(), str(os.getpid())),
                            ("elsewhere", "another-host", gone.stdout.strip())]:
        run = client.create_run(experiment, run_name=name, tags={mlflow_runs.HOST_TAG: host, mlflow_runs.PID_TAG: pid})
        runs[name] = run.info.run_id
    current = client.create_run(experiment, run_name="current").info.run_id

    assert mlflow_runs.mark_killed_runs(client, experiment, current) == [runs["dead"]]
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "elsewhere": "RUNNING"}
    assert client.get_run(runs["dead"]).data.tags[mlflow_runs.RESUMED_BY_TAG] == current


def test_an_experiment_kind_a_user_picked_is_kept(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    fresh, picked = client.create_experiment("fresh"), client.create_experiment("picked")
    client.set_experiment_tag(picked, mlflow_runs.EXPERIMENT_KIND_TAG, "genai_development")
    for experiment in (fresh, picked):
        mlflow_runs.show_runs_first(client, experiment)
    assert client.get_experiment(fresh).tags[mlflow_runs.EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert client.get_experiment(picked).tags[mlflow_runs.EXPERIMENT_KIND_TAG] == "genai_development"

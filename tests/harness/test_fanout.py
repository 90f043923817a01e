"""The sweep fanned out on a real Dask cluster of SIMULATED GPUs (this machine has none).

Each simulated "GPU" worker is a real single-threaded Dask nanny with resource GPU=1 and its own
``CUDA_VISIBLE_DEVICES`` id; the units still run on the CPU. A real ``mlflow server`` on 127.0.0.1
(started by the fan-out over a sqlite store) takes every child run. One unit kills its own Dask
worker the first time it opens: the scheduler must give its shard to a worker again.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench_pipeline.backends import REGISTRY
from bench_pipeline.backends.base import BackendContext, Cell
from bench_pipeline.backends.descriptor import BackendDescriptor
from bench_pipeline.config import BenchmarkConfig, ModelSpec
from bench_pipeline.harness.journal import Journal
from bench_pipeline.harness.sweep import plan_units, run_units
from bench_pipeline.model.reference import compute_reference
from bench_pipeline.model.source import resolve_model
from bench_pipeline.system.device import configure_torch
from ui_helpers import background_server, free_port, log_tail, stop_process_group

pytest.importorskip("distributed")

from bench_pipeline.fanout.cluster import check_workers, local_cluster, worker_specs  # noqa: E402
from bench_pipeline.fanout.driver import fan_out, make_shards, overlaps, run_shards  # noqa: E402

pytestmark = pytest.mark.slow  # local Dask clusters and real kedro runs: minutes on 2 cores

CELLS = [Cell(1, 16), Cell(2, 16)]
FAST = {"warmup_iters": 2, "warmup_s": 0, "min_iters": 5, "min_time_s": 0, "max_time_s": 5}
TESTS = Path(__file__).resolve().parent
# a loaded shared 2-core machine may still mark a cell unstable: measured, numbers kept
MEASURED = ("ok", "unstable")
TAGS = ("model", "backend", "variant", "precision", "gpu_uuid", "host", "sweep_id")


@pytest.fixture(scope="module")
def sim_backend():
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(REGISTRY, "sim", BackendDescriptor("sim", runtime="simulated_gpu:SimBackend"))
        # the workers and their shard processes import simulated_gpu to open the sim units
        patch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS.parents[1] / "src"), str(TESTS)]))
        yield


@pytest.fixture(scope="module")
def setup(tiny_bert_dir, tmp_path_factory):
    info = resolve_model(ModelSpec(source="local", name=str(tiny_bert_dir)), tmp_path_factory.mktemp("m"), 0)
    ctx = BackendContext(Path(info["path"]), info, torch.device("cpu"), configure_torch(1), CELLS,
                         tmp_path_factory.mktemp("w"))
    return ctx, compute_reference(info, CELLS, torch.device("cpu"), seed=0)


def config_for(tmp: Path, **scale) -> BenchmarkConfig:
    seen = tmp / "seen"
    seen.mkdir(exist_ok=True)
    return BenchmarkConfig(
        grid={"batch_sizes": [1, 2], "sequence_lengths": [16]}, timing=FAST, threads=1,
        # a shared 2-core machine: only the fan-out is under test here, not the noise gate
        rounds={"count": 2, "max_spread": 5.0, "retries": 0}, noise={"max_other_cpu": 1.0},
        backends={"eager": {}, "sim": {"variants": [
            {"name": "a", "options": {"record_dir": str(seen)}}, {"name": "b", "options": {"record_dir": str(seen)}},
            {"name": "c"},
            {"name": "killed-once", "options": {"kill_marker": str(tmp / "killed")}},
            {"name": "always-killed", "options": {"kill_always": True}},
            {"name": "cpu", "options": {"provider": "cpu"}},
        ]}},
        scale=scale,
    )


def plan(setup, config, journal_dir: Path, without=("always-killed",)):
    ctx, reference = setup
    return [u for name in ("eager", "sim") for u in plan_units(
        name, config.backends[name], config, ctx, reference, Journal(journal_dir / f"{name}.jsonl"), {"run": 1})
        if u.variant not in without]


@pytest.fixture(scope="module")
def fanned(setup, sim_backend, tmp_path_factory):
    """The sweep on 2 simulated GPU workers and 1 CPU worker, MLflow behind a server over sqlite,
    driven from a process that holds another store and run in its environment (as an earlier
    ``mlflow.set_tracking_uri`` or a notebook's active run leaves them)."""
    tmp = tmp_path_factory.mktemp("fanout")
    config = config_for(tmp, gpus=2, cpu_workers=1)
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'stray.db'}")
        patch.setenv("MLFLOW_RUN_ID", "0123456789abcdef")
        result = fan_out(plan(setup, config, tmp / "journal", without=()), config, store, project_dir=tmp,
                         fanout_dir=tmp / "fanout")
    return result, store, tmp


def extra(row) -> dict:
    return json.loads(row["extra"] or "{}")


def test_each_unit_saw_exactly_one_simulated_gpu_id_and_both_ids_were_used(fanned):
    result, _, tmp = fanned
    measured = [r for r in result.rows if r["variant"] not in ("always-killed", "killed-once")]
    assert all(r["status"] in MEASURED for r in measured), [(r["variant"], r["reason"]) for r in measured]
    processes = [json.loads(p.read_text()) for p in (tmp / "seen").glob("*.json")]
    assert len(processes) >= 2 and all(p["CUDA_VISIBLE_DEVICES"] in ("0", "1") for p in processes), processes
    seen = {}
    for row in [r for r in result.rows if r["variant"] != "always-killed"]:
        seen.setdefault((row["backend"], row["variant"]), set()).add(extra(row)["gpu_id"])
    assert all(len(ids) == 1 for ids in seen.values()), seen
    assert seen[("sim", "cpu")] == {""}  # the CPU-only unit ran on the worker without a GPU
    assert {next(iter(ids)) for key, ids in seen.items() if key != ("sim", "cpu")} == {"0", "1"}


def test_no_two_shards_overlapped_in_time_on_one_simulated_gpu(fanned):
    result, _, _ = fanned
    gpu_shards = [s for s in result.shards if s["device"]["gpu_id"]]
    assert len(gpu_shards) == 4 and all(s["status"] == "ok" for s in gpu_shards)
    assert overlaps(result.shards) == []


def test_a_unit_whose_worker_was_killed_is_retried_and_the_sweep_completes(fanned):
    result, _, tmp = fanned
    assert (tmp / "killed").read_text() == "killed once"  # the first attempt did kill its worker
    killed = [r for r in result.rows if r["variant"] == "killed-once"]
    assert len(killed) == 2 and all(r["status"] in MEASURED and r["p50_ms"] > 0 for r in killed), killed
    lost = [r for r in result.rows if r["variant"] == "always-killed"]
    assert [r["status"] for r in lost] == ["crashed", "crashed"]  # retried once, then recorded
    assert "its Dask worker died on two attempts (KilledWorker)" in lost[0]["reason"]
    others = [r for r in result.rows if r["variant"] != "always-killed"]
    assert all(r["status"] in MEASURED for r in others), [(r["variant"], r["reason"]) for r in others]


def test_units_see_the_sweeps_tracking_server_not_the_drivers_stray_store_or_run(fanned):
    result, _, tmp = fanned
    processes = [json.loads(p.read_text()) for p in (tmp / "seen").glob("*.json")]
    assert processes and all(p["MLFLOW_RUN_ID"] is None for p in processes), processes
    assert {p["MLFLOW_TRACKING_URI"].rsplit(":", 1)[0] for p in processes} == {"http://127.0.0.1"}, processes
    assert not (tmp / "stray.db").exists()
    assert len(list((tmp / "fanout").glob("mlflow-*.log"))) == 1  # in its fanout_dir, not the cwd


def test_every_unit_is_a_finished_child_run_of_one_parent_with_plain_tags(fanned):
    from mlflow import MlflowClient

    result, store, _ = fanned
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name("bench_pipeline").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = {r.data.tags["mlflow.parentRunId"] for r in children}
    assert len(parents) == 1 and parents <= {r.info.run_id for r in runs}
    assert {r.data.tags["variant"] for r in children if r.info.status != "FINISHED"} == {"always-killed"}
    units = {(r.data.tags["backend"], r.data.tags["variant"]) for r in children if r.info.status == "FINISHED"}
    assert units == {("eager", "default"), *{("sim", v) for v in ("a", "b", "c", "killed-once", "cpu")}}
    for run in [r for r in children if r.info.status == "FINISHED"]:
        assert all(run.data.tags[tag] for tag in TAGS if tag != "gpu_uuid")
        assert run.data.tags["sweep_id"] == result.sweep_id
        assert run.data.tags["gpu_uuid"] == "none"  # simulated: NVML knows no such GPU
        assert "cells_ok" in run.data.metrics


def test_merged_results_have_the_cell_set_of_a_single_process_run(fanned, setup, sim_backend, tmp_path):
    result, _, tmp = fanned
    config = config_for(tmp)
    plain, _ = run_units(plan(setup, config, tmp_path), config)
    def cells(rows):
        return sorted(
            (r["backend"], r["variant"], r["precision"], r["batch"], r["seq"]) for r in rows
            if r["variant"] != "always-killed"
        )

    assert cells(result.rows) == cells(plain)
    assert all(r["status"] in MEASURED for r in plain)
    # each with its own GPU's baseline (none where that shard's baseline cell was not ok: a loaded machine)
    paired = [r for r in result.rows if r["status"] == "ok" and r["variant"] != "default" and r["speedup"] is not None]
    assert paired and all(r["speedup"] > 0 and extra(r)["speedup_paired"] for r in paired)


def test_a_cluster_whose_gpu_workers_share_an_id_is_refused_and_overlaps(setup, sim_backend, tmp_path):
    """Two simulated GPU workers both on id 0: the pre-flight check refuses the cluster, and the
    timeline check catches what would happen on it (two shards at once on one GPU)."""
    config = config_for(tmp_path, gpus=2)
    units = [u for u in plan(setup, config, tmp_path) if u.variant in ("default", "a", "b")]
    with local_cluster(worker_specs(["0", "0"], 0)) as client:
        with pytest.raises(ValueError, match="2 workers on .* share CUDA_VISIBLE_DEVICES=0"):
            check_workers(client)
        records = run_shards(client, make_shards(units, 1, "miscfg"), config, "miscfg", None, tmp_path)
    assert len(records) == 2 and len(overlaps(records)) == 1


@pytest.mark.parametrize("scale, message", [
    ({"gpus": "some"}, "scale.gpus 'some': allowed 0"),
    ({"gpus": 2, "scheduler": "tcp://h:8786"}, "the scheduler's workers are the GPUs"),
    ({"scheduler": "h:8786"}, "a Dask scheduler address, e.g. 'tcp://host:8786'"),
    ({"workers": 3}, "Extra inputs are not permitted"),
])
def test_bad_scale_settings_fail_early_with_the_value(scale, message):
    with pytest.raises(ValueError, match=message):
        BenchmarkConfig(grid={"batch_sizes": [1], "sequence_lengths": [8]}, scale=scale)


def test_all_gpus_on_a_machine_without_one_fails_before_anything_starts(tmp_path):
    config = BenchmarkConfig(grid={"batch_sizes": [1], "sequence_lengths": [8]}, scale={"gpus": "all"})
    with pytest.raises(ValueError, match="no visible CUDA device; use scale.gpus=N to simulate"):
        fan_out([], config, f"sqlite:///{tmp_path / 'mlflow.db'}", visible_gpus=0, project_dir=tmp_path,
                fanout_dir=tmp_path / "fanout")
    assert not list(tmp_path.iterdir())  # no server, no log


def test_the_report_lists_which_gpu_measured_which_cell(fanned, setup):
    from bench_pipeline.harness.results import to_frame
    from bench_pipeline.reporting.sections import report_sections

    result, _, _ = fanned
    ctx, _ = setup
    sections = {s.title: s for s in report_sections(to_frame(result.rows), {}, ctx.model_info)}
    table = sections["Which GPU measured which cell"].table.set_index("backend precision")
    row = next(r for r in result.rows if r["variant"] == "a" and r["batch"] == 1)
    host, gpu = extra(row)["host"], extra(row)["gpu_id"]
    assert table.loc["sim:a fp32", "1×16"] == f"{host} GPU {gpu} (no NVML UUID: simulated)"
    assert table.loc["sim:cpu fp32", "1×16"] == f"{host} CPU worker"


def test_cells_the_shards_journaled_are_reused_by_the_next_plan(fanned, setup):
    """Shards append to the project's journal (under a lock): a rerun takes their cells from it."""
    result, _, tmp = fanned
    config = config_for(tmp, gpus=2, cpu_workers=1)
    units = plan(setup, config, tmp / "journal")
    # every shard journals its own baseline too (the last one wins): the candidates are what is compared
    reused = {(u.variant, c.batch): row["row"] for u in units if u.variant != "default" for c, row in u.reused.items()}
    ok = {(r["variant"], r["batch"]) for r in result.rows
          if r["status"] == "ok" and not r["contamination"] and r["variant"] != "default"}
    assert ok and set(reused) == ok
    assert all(extra(row)["sweep_id"] and "gpu_id" in extra(row) for row in reused.values())


@contextmanager
def started(command: list[str], log: Path, env: dict[str, str]):
    """A CLI process in its own process group, stopped (with what it spawned) on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield process
    finally:
        stop_process_group(process)


def test_several_hosts_mode_uses_a_running_scheduler_and_an_http_mlflow_server(setup, sim_backend, tmp_path):
    """The multi-host path on one machine: `dask scheduler` and `dask worker --nthreads 1 --resources
    GPU=1` started from their CLIs (one SIMULATED GPU, id 3), an MLflow server reached over HTTP."""
    from distributed import Client
    from mlflow import MlflowClient

    from bench_pipeline.fanout.tracking import tracking_server

    dask_cli = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{free_port()}"
    env = os.environ | {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    config = config_for(tmp_path, scheduler=address)
    units = [u for u in plan(setup, config, tmp_path / "journal") if u.variant in ("default", "a")]
    with started([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                  "--no-dashboard"], tmp_path / "scheduler.log", env), \
            started([dask_cli, "worker", address, "--nthreads", "1", "--resources", "GPU=1", "--no-dashboard"],
                    tmp_path / "worker.log", env | {"CUDA_VISIBLE_DEVICES": "3"}), \
            tracking_server(f"sqlite:///{tmp_path / 'mlflow.db'}", False, tmp_path / "mlflow.log") as url:
        with Client(address, timeout=120) as client:
            client.wait_for_workers(1, timeout=120)
        with pytest.raises(ValueError, match="workers on other hosts cannot reach a server on 127.0.0.1"):
            fan_out(units, config, f"sqlite:///{tmp_path / 'other.db'}", project_dir=tmp_path,
                    fanout_dir=tmp_path / "fanout")
        result = fan_out(units, config, url, project_dir=tmp_path, fanout_dir=tmp_path / "fanout")
        client = MlflowClient(tracking_uri=url)
        runs = client.search_runs([client.get_experiment_by_name("bench_pipeline").experiment_id])
    assert {extra(r)["gpu_id"] for r in result.rows} == {"3"}
    assert all(r["status"] in MEASURED for r in result.rows)
    assert sorted(r.data.tags["variant"] for r in runs if "mlflow.parentRunId" in r.data.tags) == ["a", "default"]


@contextmanager
def postgresql(log: Path) -> Iterator[str]:
    """A real PostgreSQL server (Debian's `postgresql` package) on 127.0.0.1 with trust auth; its SQLAlchemy URI.
    PostgreSQL refuses to run as root: as root it runs as the `postgres` user, in a folder of its own under /tmp
    (pytest's are private to root). Missing, it skips the test, unless `BENCH_REQUIRE_POSTGRESQL=1` (`.ci/run`
    installs it and sets that, so CI never passes without running it)."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = shutil.which("initdb") or (versions[-1] if versions else None)
    as_root = os.geteuid() == 0
    missing = ("PostgreSQL is not installed here (Debian: apt-get install postgresql)" if initdb is None else
               "no `postgres` user to run PostgreSQL as" if as_root and not _user_exists("postgres") else None)
    if missing:
        if os.environ.get("BENCH_REQUIRE_POSTGRESQL") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    bin_dir = Path(initdb).resolve().parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if as_root else []
    home = Path(tempfile.mkdtemp(prefix="bench-pg-", dir="/tmp"))
    data, server_log = home / "data", home / "server.log"

    def run(*command: str | Path) -> None:
        done = subprocess.run([*as_postgres, *command], cwd=home, capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"{command} exited with {done.returncode}:\n{done.stdout}{done.stderr}\n"
                                 f"{log_tail(server_log)}")

    try:
        if as_root:
            shutil.chown(home, "postgres")
        run(bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        port = free_port()
        run(bin_dir / "pg_ctl", "-D", data, "-l", server_log, "-w", "start",
            "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], cwd=home,
                           capture_output=True)
        if server_log.exists():
            shutil.copy(server_log, log)
        shutil.rmtree(home, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_several_hosts_mode_writes_concurrent_child_runs_through_an_mlflow_server_on_postgresql(setup, sim_backend,
                                                                                                 tmp_path):
    """The README's several-hosts recipe, all of it real on one machine: PostgreSQL, `mlflow server
    --backend-store-uri postgresql://...`, `dask scheduler` and two `dask worker --nthreads 1 --resources GPU=1`
    (SIMULATED GPUs 3 and 5) whose shards write their child runs at the same time."""
    from distributed import Client
    from mlflow import MlflowClient

    dask_cli = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{free_port()}"
    url = f"http://127.0.0.1:{free_port()}"
    env = os.environ | {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    config = config_for(tmp_path, scheduler=address)  # a shard per unit
    units = [u for u in plan(setup, config, tmp_path / "journal") if u.variant in ("default", "a", "b", "c")]
    with postgresql(tmp_path / "postgresql.log") as store, \
            background_server([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
                                          "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1], "--workers", "2"],
                                         tmp_path, f"{url}/health", tmp_path / "mlflow.log"), \
            started([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                     "--no-dashboard"], tmp_path / "scheduler.log", env), \
            started([dask_cli, "worker", address, "--nthreads", "1", "--resources", "GPU=1", "--no-dashboard"],
                    tmp_path / "worker3.log", env | {"CUDA_VISIBLE_DEVICES": "3"}), \
            started([dask_cli, "worker", address, "--nthreads", "1", "--resources", "GPU=1", "--no-dashboard"],
                    tmp_path / "worker5.log", env | {"CUDA_VISIBLE_DEVICES": "5"}):
        with Client(address, timeout=120) as client:
            client.wait_for_workers(2, timeout=120)
        result = fan_out(units, config, url, project_dir=tmp_path, fanout_dir=tmp_path / "fanout")
        client = MlflowClient(tracking_uri=url)
        runs = client.search_runs([client.get_experiment_by_name("bench_pipeline").experiment_id])
    assert {extra(r)["gpu_id"] for r in result.rows} == {"3", "5"}
    assert all(r["status"] in MEASURED for r in result.rows)
    spans = {gpu: [(s["start"], s["end"]) for s in result.shards if s["device"]["gpu_id"] == gpu] for gpu in "35"}
    assert any(a < d and c < b for a, b in spans["3"] for c, d in spans["5"])  # shards on both GPUs wrote at once
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    # a shard per candidate, each with its own baseline measured beside it
    assert sorted(r.data.tags["variant"] for r in children) == ["a", "b", "c", "default", "default", "default"]
    assert all(r.info.status == "FINISHED" and all(t in r.data.tags for t in TAGS) for r in children)


def test_the_kedro_run_fans_out_with_one_simulated_gpu_and_keeps_its_outputs(tiny_bert_dir, tmp_path):
    """`kedro run --pipelines=benchmark --params benchmark.scale.gpus=1` (the README command): the
    same results table and report, kedro-mlflow's run the parent of the units' child runs."""
    from mlflow import MlflowClient

    from conftest import copy_project, kedro

    project = copy_project(tmp_path, {
        "model": {"source": "local", "name": str(tiny_bert_dir)},
        "grid": {"batch_sizes": [1], "sequence_lengths": [16]}, "precisions": ["fp32"], "timing": FAST,
        "threads": 1, "rounds": {"count": 2, "max_spread": 5.0, "retries": 0}, "noise": {"max_other_cpu": 1.0},
        "backends": {"eager": {"variants": [{"name": "default"}, {"name": "sdpa",
                                                                  "options": {"attn_implementation": "sdpa"}}]}},
    })
    scale = "benchmark.scale.gpus=1,benchmark.scale.cpu_workers=0"
    done = kedro(project, "run", "--pipelines=benchmark", "--params", scale)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = pd.read_csv(project / "data/08_reporting/results.csv")
    assert sorted(results["variant"]) == ["default", "sdpa"]
    assert {json.loads(e)["gpu_id"] for e in results["extra"]} == {"0"}
    assert len(list((project / "data/07_model_output/fanout").glob("shards-*.json"))) == 1
    assert "Which GPU measured which cell" in (project / "data/08_reporting/report.md").read_text()
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("bench_pipeline").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    # kedro-mlflow's run (its runtime params; cells' metrics only where a loaded machine left them ok)
    assert len(parents) == 1 and "scale" in parents[0].data.tags["runtime_params"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(r.data.tags["variant"] for r in children) == ["default", "sdpa"]

"""The noise gate on a real sweep: busy processes started beside it make its cells `unstable`,
and a rerun measures them again instead of reusing them."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench_pipeline.backends.base import BackendContext, Cell
from bench_pipeline.config import BenchmarkConfig, ModelSpec
from bench_pipeline.harness.journal import Journal, reusable
from bench_pipeline.harness.machine_load import contamination, effective_threads, usable_cores
from bench_pipeline.harness.sweep import run_backend
from bench_pipeline.model.reference import compute_reference
from bench_pipeline.model.source import resolve_model
from bench_pipeline.system.device import configure_torch

CELLS = [Cell(1, 16), Cell(2, 16)]
ROUNDS = {"count": 2, "retries": 1}
TIMING = {"warmup_iters": 5, "warmup_s": 0.05, "min_iters": 20, "min_time_s": 0.3, "max_time_s": 10}


@pytest.fixture(scope="module")
def setup(tiny_bert_dir, tmp_path_factory):
    info = resolve_model(ModelSpec(source="local", name=str(tiny_bert_dir)), tmp_path_factory.mktemp("m"), 0)
    ctx = BackendContext(Path(info["path"]), info, torch.device("cpu"), configure_torch(None), CELLS,
                         tmp_path_factory.mktemp("w"))
    return ctx, compute_reference(info, CELLS, torch.device("cpu"), seed=0)


def sweep(setup, journal, **settings):
    ctx, reference = setup
    config = BenchmarkConfig(grid={"batch_sizes": [1, 2], "sequence_lengths": [16]}, timing=TIMING,
                             backends={"eager": {}}, **settings)
    rows, _ = run_backend("eager", config.backends["eager"], config, ctx, reference, journal, {"run": 1})
    return rows


def busy_processes(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


@pytest.mark.slow  # a real sweep beside processes that keep every core busy, run twice
def test_cells_timed_beside_busy_processes_are_unstable_and_measured_again_on_rerun(setup, tmp_path):
    journal = Journal(tmp_path / "eager.jsonl")
    load = busy_processes(usable_cores())  # every core kept busy by someone else
    try:
        loaded = sweep(setup, journal, rounds=ROUNDS)
    finally:
        for process in load:
            process.kill()
            process.wait()
    for row in loaded:
        assert row["status"] == "unstable", row
        assert "other processes kept" in row["contamination"] and "other processes kept" in row["reason"]
        assert row["p50_ms"] > 0  # the numbers are kept, marked
        assert len(json.loads(row["extra"])["round_p50_ms"]) == 3  # and every round's median with them
        # the retry's round counts only if it agrees with the others (harness/stats.py agreeing_rounds, tested in
        # test_stats.py): which rounds agree depends on the load, that none is lost does not
        assert row["rounds"] == len(json.loads(row["extra"])["counted_rounds"]) >= 2
        assert row["rounds"] + row["rounds_set_aside"] == 3
    assert not any(reusable(entry["row"]) for entry in journal.load().values())

    rerun = sweep(setup, journal, rounds=ROUNDS)
    assert all("reused_from_journal" not in json.loads(row["extra"]) for row in rerun)  # measured again


def test_a_contaminated_or_unstable_row_is_never_reusable():
    clean = {"status": "ok", "contamination": None}
    assert reusable(clean)
    assert not reusable(clean | {"contamination": "other processes kept 1.9 of 2 usable core(s) busy"})
    assert not reusable({"status": "unstable", "contamination": None})
    assert reusable({"status": "fail_accuracy", "contamination": None})  # a wrong answer stays wrong


def test_contamination_names_the_load_and_the_allowance():
    cores = usable_cores()
    assert contamination(0.1 * cores, 0.25) is None
    assert contamination(None, 0.25) is None  # no /proc/stat: nothing claimed
    message = contamination(0.9 * cores, 0.25)
    assert f"of {cores} usable core(s)" in message and "allowed: 25%" in message


def test_threads_above_the_usable_cores_are_clamped_with_a_warning(caplog):
    cores = usable_cores()
    with caplog.at_level(logging.WARNING):
        assert effective_threads(cores + 3) == cores
    assert f"threads={cores + 3} is above the {cores} usable core(s)" in caplog.text
    assert effective_threads(None) == cores
    assert effective_threads(1) == 1


def test_rounds_config_is_checked_before_any_node():
    with pytest.raises(ValueError, match="greater than or equal to 2"):
        BenchmarkConfig(grid={"batch_sizes": [1], "sequence_lengths": [8]}, rounds={"count": 1})
    with pytest.raises(ValueError, match="less than or equal to 1"):
        BenchmarkConfig(grid={"batch_sizes": [1], "sequence_lengths": [8]}, noise={"max_other_cpu": 2})

"""Faults injected into a real sweep: a crash, a hang, an out-of-memory. Each costs one cell;
the cells after it still run."""

import os
import signal
import time
from pathlib import Path

import pytest
import torch

from bench_pipeline.backends import REGISTRY
from bench_pipeline.backends.base import Backend, BackendContext, Cell
from bench_pipeline.backends.descriptor import BackendDescriptor
from bench_pipeline.backends.eager.runtime import EagerBackend
from bench_pipeline.config import BenchmarkConfig, ModelSpec
from bench_pipeline.harness.sweep import run_backend
from bench_pipeline.model.reference import compute_reference
from bench_pipeline.model.source import resolve_model

pytestmark = pytest.mark.slow  # real sweeps whose workers crash, hang, run out of memory

CELLS = [Cell(1, 16), Cell(1, 32), Cell(2, 16)]
FAST = {"warmup_iters": 5, "warmup_s": 0.05, "min_iters": 3, "min_time_s": 0, "max_time_s": 5}
BAD_CELL = Cell(1, 32)


class FaultyBackend(Backend):
    """Eager, except that the cell BAD_CELL does what ``options["fault"]`` says."""

    name = "faulty"

    def open(self, ctx, variant, precision, options):
        if options["fault"] == "hang_open":  # a load or compile that never ends
            time.sleep(3600)
        session = EagerBackend().open(ctx, variant, precision, {})
        session.extra["torch_threads"] = torch.get_num_threads()  # as the process that runs the cell sees it
        prepare = session.prepare

        def faulty_prepare(inputs, cell):
            runner = prepare(inputs, cell)
            if cell == BAD_CELL:
                fault = options["fault"]
                if fault == "segfault":
                    runner.run = lambda: os.kill(os.getpid(), signal.SIGSEGV)
                elif fault == "hang":
                    runner.run = lambda: time.sleep(3600)
                elif fault == "allocate":  # a real allocation far beyond this machine's memory
                    torch.empty(options["allocate_gib"] * 2**30, dtype=torch.uint8)
            return runner

        session.prepare = faulty_prepare
        return session


@pytest.fixture(scope="module")
def setup(tiny_bert_dir, tmp_path_factory):
    info = resolve_model(ModelSpec(source="local", name=str(tiny_bert_dir)), tmp_path_factory.mktemp("m"), 0)
    ctx = BackendContext(Path(info["path"]), info, torch.device("cpu"), 1, CELLS,
                         tmp_path_factory.mktemp("w"))
    return ctx, compute_reference(info, CELLS, torch.device("cpu"), seed=0)


@pytest.fixture(autouse=True)
def faulty_backend(monkeypatch):
    monkeypatch.setitem(REGISTRY, "faulty", BackendDescriptor("faulty", runtime=f"{__name__}:FaultyBackend"))


def sweep(setup, options, **settings):
    ctx, reference = setup
    config = BenchmarkConfig(
        grid={"batch_sizes": [1, 2], "sequence_lengths": [16, 32]}, timing=FAST,
        rounds={"count": 2, "max_spread": 5.0, "retries": 0}, noise={"max_other_cpu": 1.0},  # gate: own tests
        backends={"faulty": {"variants": [{"name": "default", "options": options}]}}, **settings,
    )
    rows, _ = run_backend("faulty", config.backends["faulty"], config, ctx, reference)
    return {(r["batch"], r["seq"]): r for r in rows}


def test_a_segfault_in_a_worker_is_a_crashed_cell_and_later_cells_run(setup):
    rows = sweep(setup, {"fault": "segfault"}, isolation="process", cell_timeout_s=120)
    assert rows[(1, 32)]["status"] == "crashed"
    assert "killed by SIGSEGV" in rows[(1, 32)]["reason"]
    assert rows[(1, 16)]["status"] == "ok" and rows[(2, 16)]["status"] == "ok"


def test_a_hang_past_the_cell_timeout_is_a_timeout_cell_and_later_cells_run(setup):
    started = time.monotonic()
    rows = sweep(setup, {"fault": "hang"}, isolation="process", cell_timeout_s=20)
    assert rows[(1, 32)]["status"] == "timeout"
    assert "cell_timeout_s=20" in rows[(1, 32)]["reason"]
    assert rows[(1, 16)]["status"] == "ok" and rows[(2, 16)]["status"] == "ok"
    assert time.monotonic() - started < 120


def test_a_worker_that_never_opens_is_killed_at_the_open_timeout_and_its_cells_say_so(setup):
    started = time.monotonic()
    rows = sweep(setup, {"fault": "hang_open"}, isolation="process", open_timeout_s=15)
    assert {r["status"] for r in rows.values()} == {"timeout"} and len(rows) == 3
    assert all("had not opened (loaded, compiled) within open_timeout_s=15.0 s" in r["reason"] for r in rows.values())
    assert time.monotonic() - started < 90


def test_out_of_memory_is_an_oom_cell_and_later_cells_run(setup):
    rows = sweep(setup, {"fault": "allocate", "allocate_gib": 4096})
    assert rows[(1, 32)]["status"] == "oom"
    assert "allocate" in rows[(1, 32)]["reason"].lower()
    assert rows[(1, 16)]["status"] == "ok" and rows[(2, 16)]["status"] == "ok"


def test_out_of_memory_in_a_worker_is_recorded_the_same_way(setup):
    rows = sweep(setup, {"fault": "allocate", "allocate_gib": 4096}, isolation="process", cell_timeout_s=120)
    assert rows[(1, 32)]["status"] == "oom"
    assert rows[(2, 16)]["status"] == "ok"


def test_cell_timeout_without_isolation_is_a_config_error():
    with pytest.raises(ValueError, match="cell_timeout_s=5.0 needs isolation: process"):
        BenchmarkConfig(grid={"batch_sizes": [1], "sequence_lengths": [8]}, isolation="none", cell_timeout_s=5)
    with pytest.raises(ValueError, match="open_timeout_s=5.0 needs isolation: process"):
        BenchmarkConfig(grid={"batch_sizes": [1], "sequence_lengths": [8]}, isolation="none", open_timeout_s=5)


def test_a_worker_process_uses_the_configured_thread_count(setup):
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # this process's torch is not what the worker uses
    try:
        rows = sweep(setup, {"fault": "none"}, isolation="process", cell_timeout_s=120)
    finally:
        torch.set_num_threads(before)
    assert all(r["status"] == "ok" and '"torch_threads": 1' in r["extra"] for r in rows.values())

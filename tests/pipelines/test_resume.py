"""Kill a real `kedro run` mid-sweep (SIGKILL) and run it again: no finished cell is lost or
measured twice."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bench_pipeline.harness.journal import Journal
from conftest import copy_project, kedro_env

pytestmark = pytest.mark.slow  # `kedro run`s killed and resumed

SLOW_TIMING = {"warmup_iters": 2, "warmup_s": 0, "min_iters": 5, "min_time_s": 1.0}
CELLS = 9  # 3 batch sizes x 3 sequence lengths, fp32, eager only


def start_run(project: Path) -> subprocess.Popen:
    env = kedro_env()
    kedro = str(Path(sys.executable).with_name("kedro"))
    return subprocess.Popen([kedro, "run", "--pipelines=benchmark"], cwd=project, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def complete_lines(journal: Path) -> list[dict]:
    if not journal.exists():
        return []
    entries = []
    for line in journal.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # torn by the kill
        if "round" not in entry:  # a finished cell, not one of its rounds
            entries.append(entry)
    return entries


@pytest.fixture(scope="module")
def killed_then_rerun(tiny_bert_dir, tmp_path_factory):
    """A run SIGKILLed after 3 cells, then the same command again to the end."""
    project = copy_project(tmp_path_factory.mktemp("project"), {
        "model": {"source": "local", "name": str(tiny_bert_dir)},
        "grid": {"batch_sizes": [1, 2, 4], "sequence_lengths": [16, 32, 64]},
        "precisions": ["fp32"],
        "timing": SLOW_TIMING,
        "backends": {"eager": {}},
    })
    journal = project / "data/07_model_output/journal/eager.jsonl"

    first = start_run(project)
    deadline = time.monotonic() + 300
    while len(complete_lines(journal)) < 3 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    before = complete_lines(journal)
    assert 3 <= len(before) < CELLS, "the kill must land mid-sweep"
    assert not (project / "data/08_reporting/results.parquet").exists()

    second = start_run(project)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output[-3000:]
    return project, before, " ".join(output.split())


def test_sigkill_mid_sweep_then_rerun_loses_and_remeasures_nothing(killed_then_rerun):
    project, before, output = killed_then_rerun
    assert f"eager: reused {len(before)} of {CELLS} cells" in output

    after = complete_lines(project / "data/07_model_output/journal/eager.jsonl")
    assert after[: len(before)] == before  # what was on disk is untouched
    assert len(after) == CELLS and len({e["key"] for e in after}) == CELLS  # each cell measured once
    results = pd.read_parquet(project / "data/08_reporting/results.parquet")
    assert len(results) == CELLS and (results.status == "ok").all()
    for entry in before:
        row = entry["row"]
        kept = results[(results.batch == row["batch"]) & (results.seq == row["seq"])].iloc[0]
        assert kept.p50_ms == row["p50_ms"] and kept.iterations == row["iterations"]
        assert '"reused_from_journal": true' in kept.extra


def test_the_killed_run_is_closed_as_killed_by_the_run_that_resumed_it(killed_then_rerun):
    project, _, _ = killed_then_rerun
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bench_pipeline")
    killed, resumed = sorted(client.search_runs([experiment.experiment_id]), key=lambda run: run.info.start_time)
    assert killed.info.status == "KILLED" and killed.info.end_time is not None
    assert killed.data.tags["bench.resumed_by"] == resumed.info.run_id
    assert resumed.info.status == "FINISHED" and resumed.data.tags["bench.resumes"] == killed.info.run_id


FRAGMENT = '{"key": "torn", "row": {"status": "o'  # what a kill during a write leaves


def journal_with_fragment(tmp_path: Path) -> Journal:
    journal = Journal(tmp_path / "eager.jsonl")
    journal.append("a", {"status": "ok"}, None)
    with journal.path.open("a") as f:
        f.write(FRAGMENT)
    return journal


def test_a_torn_line_is_quarantined_so_no_later_cell_is_lost(tmp_path, caplog):
    journal = journal_with_fragment(tmp_path)
    with caplog.at_level("WARNING", logger="bench_pipeline.harness.journal"):
        assert set(journal.load()) == {"a"}  # the first run after the kill
    assert "line 2 is incomplete" in caplog.text and "eager.jsonl.torn" in caplog.text
    for key in ("b", "c", "d"):
        journal.append(key, {"status": "ok"}, None)
    caplog.clear()
    with caplog.at_level("WARNING", logger="bench_pipeline.harness.journal"):
        assert set(journal.load()) == {"a", "b", "c", "d"}  # the second run reuses all 4
    assert caplog.text == ""  # said once, not on every run
    assert (tmp_path / "eager.jsonl.torn").read_text() == FRAGMENT + "\n"


def test_an_append_without_a_load_first_does_not_glue_onto_a_fragment(tmp_path):
    """``resume: false`` appends without reading the journal first."""
    journal = journal_with_fragment(tmp_path)
    journal.append("b", {"status": "ok"}, None)
    assert set(journal.load()) == {"a", "b"}


def test_a_cell_already_glued_onto_a_fragment_is_recovered(tmp_path):
    journal = journal_with_fragment(tmp_path)
    with journal.path.open("a") as f:  # what appending after a kill used to do
        f.write(json.dumps({"key": "b", "row": {"status": "ok"}, "raw_times_ms": [1.5]}) + "\n")
    entries = journal.load()
    assert set(entries) == {"a", "b"} and entries["b"]["raw_times_ms"] == [1.5]
    assert [json.loads(line)["key"] for line in journal.path.read_text().splitlines()] == ["a", "b"]

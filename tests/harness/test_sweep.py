"""The sweep on a real model: one row per cell, failures recorded, later cells still run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench_pipeline.backends import REGISTRY
from bench_pipeline.backends.base import Backend, BackendContext, Cell, CellFailure
from bench_pipeline.backends.descriptor import BackendDescriptor
from bench_pipeline.backends.eager.runtime import EagerBackend
from bench_pipeline.config import BenchmarkConfig, ModelSpec
from bench_pipeline.harness.journal import Journal
from bench_pipeline.harness.sweep import run_backend
from bench_pipeline.model.reference import compute_reference
from bench_pipeline.model.source import _cpu_has_native_bf16, resolve_model
from bench_pipeline.system.device import configure_torch
from conftest import PROJECT_ROOT

CELLS = [Cell(1, 16), Cell(2, 32)]
FAST = {"warmup_iters": 5, "warmup_s": 0.05, "min_iters": 5, "min_time_s": 0, "max_time_s": 5}


@pytest.fixture(scope="module")
def setup(tiny_bert_dir, tmp_path_factory):
    info = resolve_model(ModelSpec(source="local", name=str(tiny_bert_dir)), tmp_path_factory.mktemp("m"), 0)
    configure_torch(None)
    # one thread: a 2-thread team on a shared 2-core machine waits for its preempted thread at every op
    ctx = BackendContext(Path(info["path"]), info, torch.device("cpu"), 1, CELLS, tmp_path_factory.mktemp("w"))
    reference = compute_reference(info, CELLS, torch.device("cpu"), seed=0)
    return ctx, reference


def config_for(backends, precisions=("fp32",)):
    return BenchmarkConfig(
        grid={"batch_sizes": [1, 2], "sequence_lengths": [16, 32]},
        precisions=list(precisions),
        timing=FAST,
        # a shared test machine: the gate is tested on its own (test_noise_gate.py); here only
        # a machine with every core busy elsewhere would make these cells unstable
        rounds={"count": 3, "max_spread": 5.0, "retries": 2},  # retries leave a cold first round out
        noise={"max_other_cpu": 1.0},
        backends=backends,
    )


def test_eager_rows_one_per_cell_with_sane_numbers(setup):
    ctx, reference = setup
    config = config_for({"eager": {}}, precisions=["fp32", "fp16", "bf16"])
    rows, raw = run_backend("eager", config.backends["eager"], config, ctx, reference)
    assert [(r["precision"], r["batch"], r["seq"]) for r in rows] == [
        (p, c.batch, c.seq) for p in ["fp32", "fp16", "bf16"] for c in CELLS
    ]
    by_precision = {p: [r for r in rows if r["precision"] == p] for p in ["fp32", "fp16", "bf16"]}
    for row in by_precision["fp32"]:
        assert row["status"] == "ok" and row["reason"] is None, row["reason"]
        assert row["max_abs"] == 0.0 and row["cosine"] == pytest.approx(1.0)
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["p50_ci_low_ms"] <= row["p50_ms"] <= row["p50_ci_high_ms"]
        assert row["rounds"] == 3 and row["round_spread"] >= 0
        assert row["speedup"] == 1.0  # the FP32 eager baseline itself
        assert row["iterations"] >= 3 * 5 and row["first_call_ms"] > 0
        assert row["throughput_tok_s"] == pytest.approx(row["throughput_seq_s"] * row["seq"])
        assert row["threads"] == ctx.threads and row["model"] == ctx.model_info["name"]
    assert all(r["status"] == "unsupported" and "FP16" in r["reason"] for r in by_precision["fp16"])
    native_bf16 = _cpu_has_native_bf16()  # AVX512-BF16 or AMX
    if native_bf16:
        for row in by_precision["bf16"]:
            assert row["status"] == "ok" and 0 < row["max_abs"] < 0.5 and row["cosine"] > 0.99
    else:  # torch would emulate BF16 here: refused rather than timed
        assert all(r["status"] == "unsupported" and "BF16" in r["reason"] for r in by_precision["bf16"])
    timed = ["fp32", "bf16"] if native_bf16 else ["fp32"]
    assert set(raw) == {f"eager/default/{p}/b{c.batch}_s{c.seq}" for p in timed for c in CELLS}
    for row in rows:
        if row["status"] == "ok":  # every round's calls are kept, the counted ones make the row
            rounds = raw[f"eager/default/{row['precision']}/b{row['batch']}_s{row['seq']}"]
            counted = json.loads(row["extra"])["counted_rounds"]
            assert sum(len(rounds[r]) for r in counted) == row["iterations"]


class FlakyBackend(Backend):
    """Cannot open variant 'broken'; in variant 'default' the 1x16 cell raises, 2x32 runs eager."""

    name = "flaky"

    def open(self, ctx, variant, precision, options):
        if variant == "broken":
            raise RuntimeError("driver exploded\nlong traceback text")
        session = EagerBackend().open(ctx, variant, precision, options)
        prepare = session.prepare

        def flaky_prepare(inputs, cell):
            if cell == Cell(1, 16):
                raise CellFailure("skipped", "this shape is not in the profile")
            return prepare(inputs, cell)

        session.prepare = flaky_prepare
        return session


class WrongBackend(Backend):
    """Runs eager but returns outputs that are off: a fast wrong answer."""

    name = "wrong"

    def open(self, ctx, variant, precision, options):
        session = EagerBackend().open(ctx, variant, precision, options)
        prepare = session.prepare

        def wrong_prepare(inputs, cell):
            runner = prepare(inputs, cell)
            outputs = runner.outputs
            runner.outputs = lambda: {k: v + 1.0 for k, v in outputs().items()}
            return runner

        session.prepare = wrong_prepare
        return session


@pytest.fixture
def test_backends(monkeypatch):
    monkeypatch.setitem(REGISTRY, "flaky", BackendDescriptor("flaky", runtime=f"{__name__}:FlakyBackend"))
    monkeypatch.setitem(REGISTRY, "wrong", BackendDescriptor("wrong", runtime=f"{__name__}:WrongBackend"))


def test_failures_become_rows_and_the_sweep_goes_on(setup, test_backends):
    ctx, reference = setup
    config = config_for({"flaky": {"variants": [{"name": "broken"}, {"name": "default"}]}})
    journal = Journal(ctx.workdir / "flaky.jsonl")
    rows, _ = run_backend("flaky", config.backends["flaky"], config, ctx, reference, journal, {"run": 1})
    by_cell = lambda row: (row["variant"], row["batch"], row["seq"])  # noqa: E731
    journaled = sorted((entry["row"] for entry in journal.load().values()), key=by_cell)
    assert journaled == sorted(rows, key=by_cell)  # each row on disk as its cell finished
    statuses = [(r["variant"], r["batch"], r["status"], r["reason"]) for r in rows]
    assert statuses[:2] == [("broken", 1, "error", "RuntimeError: driver exploded"),
                            ("broken", 2, "error", "RuntimeError: driver exploded")]
    assert statuses[2] == ("default", 1, "skipped", "this shape is not in the profile")
    assert statuses[3][:3] == ("default", 2, "ok")


def test_a_sweep_stopped_before_its_report_is_recovered_from_the_journal_alone(setup, test_backends, tmp_path):
    """benchmarks/journal_results.py: every row of one sweep, as the sweep wrote it (skips and errors too, each
    labelled with its sweep), and a second sweep of the same config kept apart, not merged; journal_rounds.py
    gives one sweep's rounds alone."""
    ctx, reference = setup
    config = config_for({"flaky": {"variants": [{"name": "broken"}, {"name": "default"}]}})
    journal = Journal(tmp_path / "journal" / "flaky.jsonl")
    sweeps = []
    for _ in range(2):
        rows, _ = run_backend("flaky", config.backends["flaky"], config, ctx, reference, journal, {"run": 1},
                              reuse=False)
        ids = {json.loads(r["extra"])["sweep_id"] for r in rows}
        assert len(ids) == 1, ids  # every row names its sweep, the skipped and failed ones too
        sweeps.append((ids.pop(), rows))
    script = [sys.executable, str(PROJECT_ROOT / "benchmarks/journal_results.py"),
              "--journal", str(tmp_path / "journal")]
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT / "src")}
    listing = subprocess.run(script, capture_output=True, text=True, env=env, timeout=120)
    assert all(f"{sweep}  " in listing.stdout for sweep, _ in sweeps), listing.stdout + listing.stderr
    sweep, rows = sweeps[1]
    out = tmp_path / "recovered.csv"
    done = subprocess.run([*script, "--sweep", sweep, "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    recovered = pd.read_csv(out)
    assert len(recovered) == len(rows) == 4
    assert sorted(recovered.status) == sorted(r["status"] for r in rows) == ["error", "error", "ok", "skipped"]
    ok = next(r for r in rows if r["status"] == "ok")
    assert recovered[recovered.status == "ok"].p50_ms.item() == pytest.approx(ok["p50_ms"])
    wrong = subprocess.run([*script, "--sweep", "0123", "--out", str(out)], capture_output=True, text=True, env=env,
                           timeout=120)
    assert wrong.returncode == 2 and "--sweep ['0123']: not in" in wrong.stderr and sweep in wrong.stderr
    rounds = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks/journal_rounds.py"), "--journal",
                             str(tmp_path / "journal"), "--sweep", sweeps[0][0]], capture_output=True, text=True,
                            env=env, timeout=120)
    lines = [line for line in rounds.stdout.splitlines() if "| flaky/default/fp32 |" in line]
    assert len(lines) == 1 and lines[0].startswith(f"| {sweeps[0][0]} | b2_s32 |"), rounds.stdout + rounds.stderr
    first_ok = next(r for r in sweeps[0][1] if r["status"] == "ok")
    measured = first_ok["rounds"] + first_ok["rounds_set_aside"]
    assert len(lines[0].split(" | ")[4].split(", ")) == measured  # that sweep's rounds, not both sweeps'


def test_wrong_outputs_are_fail_accuracy_with_numbers_kept(setup, test_backends):
    ctx, reference = setup
    config = config_for({"wrong": {}})
    rows, _ = run_backend("wrong", config.backends["wrong"], config, ctx, reference)
    assert all(r["status"] == "fail_accuracy" for r in rows)
    assert all("mean abs diff" in r["reason"] and r["p50_ms"] > 0 for r in rows)
    assert rows[0]["max_abs"] == pytest.approx(1.0, abs=1e-6)


def test_reference_keys_cover_every_cell_and_output(setup):
    _, reference = setup
    assert set(reference) == {f"b{c.batch}_s{c.seq}/{o}" for c in CELLS for o in ("last_hidden_state", "pooler_output")}
    assert reference["b2_s32/last_hidden_state"].shape == (2, 32, 32)
    assert reference["b2_s32/last_hidden_state"].dtype == np.float32


def test_journaled_cells_are_reused_and_only_errors_are_retried(setup, test_backends):
    ctx, reference = setup
    config = config_for({"flaky": {"variants": [{"name": "broken"}, {"name": "default"}]}})
    journal = Journal(ctx.workdir / "resume.jsonl")
    first, first_raw = run_backend("flaky", config.backends["flaky"], config, ctx, reference, journal, {"run": 1})
    second, second_raw = run_backend("flaky", config.backends["flaky"], config, ctx, reference, journal, {"run": 1})
    ok_first = [r for r in first if r["status"] == "ok"]
    ok_second = [r for r in second if r["status"] == "ok"]
    assert len(ok_second) == 1 and ok_second[0]["p50_ms"] == ok_first[0]["p50_ms"]  # not measured again
    assert '"reused_from_journal": true' in ok_second[0]["extra"]
    first_rounds, second_rounds = first_raw["flaky/default/fp32/b2_s32"], second_raw["flaky/default/fp32/b2_s32"]
    assert set(first_rounds) == set(second_rounds)
    assert all(np.array_equal(first_rounds[r], second_rounds[r]) for r in first_rounds)
    skipped = next(r for r in second if r["status"] == "skipped")
    assert "reused_from_journal" not in (skipped["extra"] or "")  # a skip is retried: a library may be there now
    retried = [r for r in second if r["status"] == "error"]
    assert len(retried) == 2 and "reused_from_journal" not in (retried[0]["extra"] or "")
    third, _ = run_backend("flaky", config.backends["flaky"], config, ctx, reference, journal, {"run": 2})
    assert "reused_from_journal" not in next(r for r in third if r["status"] == "ok")["extra"]  # other config
    fourth, _ = run_backend("flaky", config.backends["flaky"], config, ctx, reference, journal, {"run": 1}, reuse=False)
    assert "reused_from_journal" not in next(r for r in fourth if r["status"] == "ok")["extra"]  # forced rerun


def test_a_torn_last_journal_line_is_ignored(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.append("k1", {"status": "ok", "p50_ms": 1.0}, {0: np.array([1.0, 2.0])})
    with journal.path.open("a") as f:
        f.write('{"key": "k2", "row": {"sta')  # what a SIGKILL mid-write leaves
    assert list(journal.load()) == ["k1"]


def test_the_baseline_is_measured_again_beside_a_candidate_measured_now(setup):
    ctx, reference = setup
    journal = Journal(ctx.workdir / "pairing.jsonl")
    first = config_for({"eager": {}})
    run_backend("eager", first.backends["eager"], first, ctx, reference, journal, {"run": 1})
    both = config_for({"eager": {"variants": [{"name": "default"},
                                              {"name": "eager-attn", "options": {"attn_implementation": "eager"}}]}})
    rows, _ = run_backend("eager", both.backends["eager"], both, ctx, reference, journal, {"run": 1})
    baseline = [r for r in rows if r["variant"] == "default"]
    candidate = [r for r in rows if r["variant"] == "eager-attn"]
    assert all("reused_from_journal" not in json.loads(r["extra"]) for r in baseline)  # measured again
    assert all(json.loads(r["extra"])["speedup_paired"] for r in candidate if r["status"] == "ok")


def test_journal_scripts_attribute_rows_and_rounds_of_an_older_journal(tmp_path):
    """A journal from before every row named its sweep, with a killed sweep's rounds left in it: a row without an
    id belongs to the labelled row before it (or to `unlabelled`), and the killed attempt's rounds never join the
    next attempt's row."""
    def row(key, status, sweep=None, p50=None, variant="default"):
        extra = json.dumps({"sweep_id": sweep}) if sweep else None
        return {"key": key, "row": {"model": "m", "backend": "eager", "variant": variant, "precision": "fp32",
                                    "batch": 1, "seq": 8, "status": status, "p50_ms": p50, "extra": extra}}

    def round_(key, index, ms):
        return {"key": key, "round": index, "record": {"status": "measured", "times_ms": [ms, ms]}}

    killed = [round_("K", i, 9.0) for i in range(4)]  # a sweep killed in its cell's retries
    lines = [row("S", "skipped", variant="s"), *killed, round_("K", 0, 5.0), round_("K", 1, 5.1),
             round_("K", 2, 5.2), row("K", "ok", "A", 5.1),
             row("T", "skipped", variant="t")]
    (tmp_path / "eager.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT / "src")}
    listing = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks/journal_results.py"), "--journal",
                              str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert listing.stdout.splitlines() == ["A  m  ok: 1", "A  m  skipped: 1", "unlabelled  m  skipped: 1"]
    rounds = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks/journal_rounds.py"), "--journal",
                             str(tmp_path), "--sweep", "A"], capture_output=True, text=True, env=env, timeout=120)
    assert "| A | b1_s8 | eager/default/fp32 | ok | 5.000, 5.100, 5.200 |" in rounds.stdout, rounds.stderr

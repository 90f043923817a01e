"""benchmarks/fidelity.py on a tiny real run: cells measured alone in fresh processes, the table it
prints and writes, and its exit status. Timing on a shared CPU is noisy, so nothing here asserts that
real cells agree; a results file doctored to 3× the p50 must be reported as disagreeing."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow  # two `kedro run`s, then each cell timed alone

SCRIPT = PROJECT_ROOT / "benchmarks/fidelity.py"
QUICK = ["--warmup", "2", "--calls", "5", "--repeats", "2"]
COLUMNS = ["cell", "sweep_p50_ms", "sweep_ci_low_ms", "sweep_ci_high_ms", "alone_p50_ms", "alone_spread",
           "ratio", "verdict"]


def fidelity(project, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT / "src")}
    return subprocess.run([sys.executable, str(SCRIPT), "--project", str(project), *QUICK, *args],
                          capture_output=True, text=True, timeout=600, env=env)


def test_cells_measured_alone_become_a_table_with_the_sweeps_numbers(two_eager_ort_runs, tmp_path):
    cells = ["eager/default/fp32/b1_s16", "onnxruntime/cpu/fp32/b2_s16"]
    done = fidelity(two_eager_ort_runs, "--cells", *cells, "--out", str(tmp_path))
    assert done.returncode in (0, 1), done.stderr  # 1: a cell disagreed on this noisy machine
    table = pd.read_csv(tmp_path / "fidelity.csv")
    assert list(table.columns) == COLUMNS and list(table.cell) == cells
    results = pd.read_parquet(two_eager_ort_runs / "data/08_reporting/results.parquet")
    sweep = {f"{r.backend}/{r.variant}/{r.precision}/b{r.batch}_s{r.seq}": r.p50_ms for r in results.itertuples()}
    for row in table.itertuples():
        assert row.sweep_p50_ms == sweep[row.cell] and row.alone_p50_ms > 0
        assert abs(row.ratio - row.sweep_p50_ms / row.alone_p50_ms) < 1e-9
        assert row.verdict in ("agrees", "DISAGREES")
    assert done.returncode == int((table.verdict == "DISAGREES").any())
    markdown = (tmp_path / "fidelity.md").read_text()
    assert "machine:" in markdown and "torch" in markdown and "| eager/default/fp32/b1_s16 |" in markdown
    assert "eager/default/fp32/b1_s16" in done.stdout and "versions:" in done.stdout


def test_a_sweep_number_three_times_too_slow_disagrees_and_fails(two_eager_ort_runs, tmp_path):
    results = pd.read_parquet(two_eager_ort_runs / "data/08_reporting/results.parquet")
    for column in ("p50_ms", "p50_ci_low_ms", "p50_ci_high_ms"):
        results[column] = pd.to_numeric(results[column]) * 3
    doctored = tmp_path / "results.csv"
    results.to_csv(doctored, index=False)
    done = fidelity(two_eager_ort_runs, "--results", str(doctored), "--cells", "onnxruntime/cpu/fp32/b1_s16")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DISAGREES" in done.stdout


def test_default_pick_is_eager_fp32_fp16_and_each_backends_fastest_at_the_smallest_and_largest_cell():
    gpu = "benchmarks/results/2026-11-26-h200-bert-base/results.csv"
    done = fidelity(PROJECT_ROOT, "--results", gpu, "--list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "eager/default/fp32/b1_s128", "eager/default/fp32/b32_s512",
        "eager/default/fp16/b1_s128", "eager/default/fp16/b32_s512",
        "dynamo/reduce-overhead/fp16/b1_s128", "dynamo/reduce-overhead/fp16/b32_s512",
        "onnxruntime/cuda-graph/fp16/b1_s128", "onnxruntime/cuda-graph/fp16/b32_s512",
    ]  # TensorRT: no ok cell in those results


def test_all_picks_every_ok_cell_and_only_those():
    gpu = "benchmarks/results/2026-12-02-h200-isolated/results.csv"
    done = fidelity(PROJECT_ROOT, "--results", gpu, "--all", "--list")
    assert done.returncode == 0, done.stderr
    results = pd.read_csv(PROJECT_ROOT / gpu)
    ok = results[results.status == "ok"]
    assert len(done.stdout.split()) == len(ok) == 30
    assert "eager/default/fp16/b1_s512" in done.stdout.split()  # ok there; its unstable neighbours are not listed
    assert "eager/default/fp32/b1_s128" not in done.stdout.split()


def test_bad_cells_are_refused_naming_what_is_allowed(two_eager_ort_runs):
    done = fidelity(two_eager_ort_runs, "--cells", "eager/default/fp32/b9_s16")
    assert done.returncode == 2
    assert "cell eager/default/fp32/b9_s16 is not in the results; they hold: eager/default/fp32/b1_s16" in done.stderr
    done = fidelity(two_eager_ort_runs, "--cells", "eager/fp32")
    assert done.returncode == 2 and "expected backend/variant/precision/bB_sS" in done.stderr

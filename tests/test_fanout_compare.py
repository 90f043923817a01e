"""benchmarks/fanout_compare.py: two results tables compared cell by cell (the GPU check of issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd

from conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "benchmarks/fanout_compare.py"


def table(path, cells):
    """A results table of ``cells``: (variant, batch, status, p50, low, high)."""
    rows = [{"backend": "eager", "variant": v, "precision": "fp32", "batch": b, "seq": 128, "status": s,
             "p50_ms": p, "p50_ci_low_ms": lo, "p50_ci_high_ms": hi} for v, b, s, p, lo, hi in cells]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def compare(tmp_path, plain, fanout):
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT / "src")}
    return subprocess.run([sys.executable, str(SCRIPT), str(table(tmp_path / "plain.csv", plain)),
                           str(table(tmp_path / "fanout.csv", fanout)), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)


def test_same_cells_with_p50s_inside_each_others_intervals_agree(tmp_path):
    done = compare(tmp_path, [("default", 1, "ok", 1.0, 0.9, 1.1), ("sdpa", 1, "unstable", 2.0, 1.8, 2.3)],
                   [("default", 1, "ok", 1.05, 0.95, 1.2), ("sdpa", 1, "ok", 2.1, 1.9, 2.2)])
    assert done.returncode == 0, done.stdout + done.stderr
    report = (tmp_path / "out/fanout_compare.md").read_text()
    assert "- same cell set: yes" in report and "inside the other run's 95 % interval: 2 of 2" in report
    assert "| eager/default/fp32/1/128 | ok | ok | 1 [0.9, 1.1] | 1.05 [0.95, 1.2] | yes | yes | +5.0% | yes |" \
        in report


def test_a_missing_cell_and_a_p50_outside_the_other_interval_are_reported(tmp_path):
    done = compare(tmp_path, [("default", 1, "ok", 1.0, 0.9, 1.1), ("default", 32, "ok", 5.0, 4.9, 5.1)],
                   [("default", 1, "ok", 1.5, 1.4, 1.6)])
    assert done.returncode == 1
    report = (tmp_path / "out/fanout_compare.md").read_text()
    assert "- same cell set: NO: eager/default/fp32/32/128" in report
    assert "| eager/default/fp32/1/128 | ok | ok | 1 [0.9, 1.1] | 1.5 [1.4, 1.6] | NO | NO | +50.0% | NO |" in report


def test_overlapping_intervals_are_reported_beside_a_strict_disagreement(tmp_path):
    done = compare(tmp_path, [("default", 1, "ok", 1.0, 0.98, 1.02)], [("default", 1, "ok", 1.03, 1.01, 1.05)])
    assert done.returncode == 1  # the strict check decides the exit status
    report = (tmp_path / "out/fanout_compare.md").read_text()
    assert "interval: 0 of 1; intervals overlap: 1 of 1" in report
    assert "| 1 [0.98, 1.02] | 1.03 [1.01, 1.05] | NO | NO | +3.0% | yes |" in report


def test_a_file_that_is_not_a_results_table_is_refused(tmp_path):
    (tmp_path / "plain.csv").write_text("a,b\n1,2\n")
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "plain.csv"), str(tmp_path / "plain.csv"),
                           str(tmp_path / "out")], capture_output=True, text=True,
                          env=os.environ | {"PYTHONPATH": str(PROJECT_ROOT / "src")}, timeout=120)
    assert done.returncode == 2 and "not a results table, it lacks the columns" in done.stderr

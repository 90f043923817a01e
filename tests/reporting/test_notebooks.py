"""notebooks/ executed top to bottom on a tiny CPU run (a real Kedro project and MLflow store), and
the study figure and run comparison they draw (``bench_pipeline.reporting.study``)."""

from __future__ import annotations

import mlflow
import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from bench_pipeline.reporting.study import (
    compare_runs,
    load_results,
    records_beside,
    speedup_bars,
    study_speedups,
)
from conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow  # executes notebooks/ in a Jupyter kernel

NOTEBOOK = PROJECT_ROOT / "notebooks/compare_backends.ipynb"
GPU_RESULTS = PROJECT_ROOT / "benchmarks/results/2026-11-26-h200-bert-base/results.csv"


def execute(notebook, cwd) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel whose working directory is ``cwd`` (a Kedro project)."""
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs(nb, mime: str) -> list[str]:
    return [o["data"][mime] for c in nb.cells if c.cell_type == "code" for o in c.outputs if mime in o.get("data", {})]


def test_committed_notebook_has_no_outputs():
    cells = [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    assert cells and all(c.outputs == [] and c.execution_count is None for c in cells)


def test_notebook_draws_the_latest_run_and_compares_its_last_two_mlflow_runs(two_eager_ort_runs, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # an earlier test's store must not be the kernel's
    png = tmp_path / "speedup.png"
    monkeypatch.setenv("BENCH_FIGURE_PNG", str(png))
    nb = execute(NOTEBOOK, two_eager_ort_runs)
    assert len(outputs(nb, "image/png")) == 1 and png.stat().st_size > 10_000
    html = "\n".join(outputs(nb, "text/html"))
    mlflow.set_tracking_uri(f"sqlite:///{two_eager_ort_runs / 'mlflow.db'}")
    run_ids = list(mlflow.search_runs(experiment_names=["bench_pipeline"]).run_id)
    assert len(run_ids) == 2 and all(run_id in html for run_id in run_ids)
    for configuration, cell in [("eager.default fp32", "b1_s16"), ("onnxruntime.cpu fp32", "b2_s16")]:
        assert configuration in html and cell in html
    assert "newer / older" in html


def test_notebook_draws_a_results_file_named_at_its_top(two_eager_ort_runs, tmp_path, monkeypatch):
    png = tmp_path / "gpu.png"
    monkeypatch.setenv("BENCH_RESULTS", str(GPU_RESULTS))
    monkeypatch.setenv("BENCH_FIGURE_PNG", str(png))
    nb = execute(NOTEBOOK, two_eager_ort_runs)
    assert len(outputs(nb, "image/png")) == 1 and png.stat().st_size > 10_000
    assert "tensorrt" in "\n".join(outputs(nb, "text/html"))  # the GPU table, not the tiny run's


def test_older_results_get_the_p50_ratio_and_only_ok_cells():
    older = load_results(GPU_RESULTS).drop(columns=["speedup"])
    speedups = study_speedups(older)
    assert set(speedups.status) == {"ok"} and len(speedups) == (older.status == "ok").sum()
    eager = older[(older.backend == "eager") & (older.precision == "fp32")].set_index(["batch", "seq"]).p50_ms
    for row in speedups.itertuples():
        assert row.speedup == pytest.approx(eager[(row.batch, row.seq)] / row.p50_ms)
    assert speedups.speedup_ci_low.isna().all()


def test_intervals_are_error_bars_where_present_and_the_runs_speedup_wins():
    results = load_results(GPU_RESULTS)
    fp16 = (results.backend == "onnxruntime") & (results.variant == "cuda") & (results.precision == "fp16")
    results.loc[fp16, ["speedup", "speedup_ci_low", "speedup_ci_high"]] = [5.0, 4.0, 7.0]
    results.loc[fp16 & (results.batch == 1) & (results.seq == 128), ["speedup_ci_low", "speedup_ci_high"]] = np.nan
    env, model_info = records_beside(GPU_RESULTS)
    figure, note = speedup_bars(results, env, model_info, "before the isolation fix")
    assert note is None and "before the isolation fix" in figure._suptitle.get_text()
    ax = figure.axes[0]
    bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}
    assert len(bars) == results[results.status == "ok"][["backend", "variant", "precision"]].drop_duplicates().shape[0]
    ort = bars["onnxruntime:cuda fp16"]
    assert [p.get_height() for p in ort.patches] == [5.0] * 6
    whiskers = ort.errorbar.lines[2][0].get_segments()  # one vertical segment per bar, bottom to top
    spans = sorted((round(s[0][1], 6), round(s[1][1], 6)) for s in whiskers)
    assert spans == [(4.0, 7.0)] * 5 + [(5.0, 5.0)]  # 1×128 has no interval: no whisker
    assert bars["eager fp32"].errorbar is None  # no row of it has an interval
    assert "whiskers: bootstrap 95 % interval" in ax.get_legend().get_title().get_text()
    assert "°" not in ax.get_legend().get_title().get_text()  # every speedup here is paired (or a plain ratio)


def test_a_speedup_not_paired_round_by_round_is_marked_on_its_bar():
    results = load_results(GPU_RESULTS)
    unpaired = ((results.backend == "onnxruntime") & (results.variant == "cuda") & (results.precision == "fp16")
                & (results.batch == 1) & (results.seq == 128))
    results["extra"] = results["extra"].astype(object)
    results.loc[unpaired, "extra"] = '{"speedup_paired": false}'
    env, model_info = records_beside(GPU_RESULTS)
    ax = speedup_bars(results, env, model_info, None)[0].axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert sum(text.endswith("°") for text in labels) == 1
    assert "° not paired round by round" in ax.get_legend().get_title().get_text()


def test_comparing_runs_needs_two_and_keeps_cells_only_one_measured():
    runs = pd.DataFrame({
        "run_id": ["a", "b"],
        "start_time": pd.to_datetime(["2026-11-26T10:00", "2026-11-27T10:00"]),
        "metrics.p50_ms/eager.default/fp32/b1_s128": [4.0, 2.0],
        "metrics.p50_ms/onnxruntime.cuda/fp16/b8_s512": [np.nan, 1.0],
        "metrics.speedup/eager.default/fp32/b1_s128": [1.0, 1.0],
    })
    table = compare_runs(runs.iloc[::-1])  # search_runs lists newest first
    assert table.fillna(-1).to_dict("list") == {  # -1: NaN, the older run did not measure that cell
        "configuration": ["eager.default fp32", "onnxruntime.cuda fp16"], "cell": ["b1_s128", "b8_s512"],
        "older": [4.0, -1], "newer": [2.0, 1.0], "newer / older": [0.5, -1],
    }
    with pytest.raises(ValueError, match="needs two runs of the experiment; it has 1"):
        compare_runs(runs.iloc[:1])


def test_results_file_of_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown format '\.xlsx'; allowed: \['\.csv', '\.parquet'\]"):
        load_results(tmp_path / "results.xlsx")

"""Report stage: thin wiring over ``bench_pipeline.reporting`` — one table for all backends,
MLflow metrics, figures, and the HTML report with its Markdown twin."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from bench_pipeline.harness.results import COLUMNS, KEY_COLUMNS, TRUSTED, cell_name
from bench_pipeline.reporting import draw_all, draw_generation, html_report, markdown_summary, results_table

# Metrics logged per trustworthy cell; the names are stable so runs can be compared cell by cell.
CELL_METRICS = (
    "p50_ms", "p50_ci_low_ms", "p50_ci_high_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_seq_s",
    "speedup", "speedup_ci_low", "speedup_ci_high", "round_spread", "dispatch_share", "roofline_pct", "cosine",
    "peak_mem_mb", "setup_s", "export_s", "build_s", "compile_s", "compile_warm_s", "quantize_s", "recompiles",
    "graph_breaks", "rounds_set_aside",
    # generation scenario (empty in forward rows, so not logged there)
    "ttft_ms", "ttft_ci_low_ms", "ttft_ci_high_ms", "tpot_mean_ms", "tpot_p50_ms", "tpot_p90_ms", "tpot_p99_ms",
    "throughput_tok_s", "first_divergent_step",
)
BY_BATCH = ("p50_ms", "speedup", "throughput_seq_s", "throughput_tok_s", "tpot_p50_ms")
FIGURES_DIR = "figures"  # relative to the Markdown report


def publish_results(
    environment: dict[str, Any], model_info: dict[str, Any], *frames: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All backends' rows as one tidy table (speedup, roofline, break-even added), twice:
    Parquet for tools, CSV for people."""
    non_empty = [f for f in frames if not f.empty]
    rows = pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame(columns=COLUMNS)
    table = results_table(rows.sort_values(KEY_COLUMNS, ignore_index=True), environment, model_info)
    return table, table


def mlflow_metrics(results: pd.DataFrame) -> dict[str, Any]:
    """Metrics for kedro-mlflow's MlflowMetricsHistoryDataset.

    ``<metric>/<backend>.<variant>/<precision>/bB_sS``: one value per cell, for comparing runs
    (two GPUs, two library versions) cell by cell. ``<metric>_by_batch/<backend>.<variant>/
    <precision>/sS`` with step = batch size: the MLflow UI draws latency against batch size,
    one line per backend.
    """
    metrics: dict[str, Any] = {}
    # only trustworthy cells: a fast wrong answer (fail_accuracy) or a measurement whose rounds
    # disagreed (unstable) must not sit beside the results in the UI; both keep their numbers in
    # the results table and the report
    for row in results[results.status.isin(TRUSTED)].itertuples(index=False):
        engine = f"{row.backend}.{row.variant}/{row.precision}"
        for name in CELL_METRICS:
            value = getattr(row, name, None)  # older results lack the interval columns
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            metrics[f"{name}/{engine}/{cell_name(row.batch, row.seq)}"] = {"value": float(value), "step": 0}
            if name in BY_BATCH:
                metrics.setdefault(f"{name}_by_batch/{engine}/s{row.seq}", []).append(
                    {"value": float(value), "step": int(row.batch)}
                )
    for status, count in results.status.value_counts().items():
        metrics[f"cells/{status}"] = {"value": float(count), "step": 0}
    return metrics


def render_report(
    results: pd.DataFrame, environment: dict[str, Any], model_info: dict[str, Any]
) -> tuple[dict[str, Figure], str, str]:
    """The figures (one file each; a generation run's own beside the common ones), the self-contained HTML
    report and its Markdown twin."""
    figures, notes = draw_all(results, environment, model_info)
    generation_figures, generation_notes = draw_generation(results, environment, model_info)
    figures, notes = figures | generation_figures, notes | generation_notes
    html = html_report(results, environment, model_info, figures, notes)
    paths = {name: f"{FIGURES_DIR}/{name}" for name in figures}
    markdown = markdown_summary(results, environment, model_info, paths, notes)
    return figures, html, markdown

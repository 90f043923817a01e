"""Report stage: every backend's rows into one table, MLflow metrics and the summary."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench_pipeline.results import COLUMNS, KEY_COLUMNS, cell_name

# Metrics logged per measured cell; the names are stable so runs can be compared cell by cell.
CELL_METRICS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_seq_s", "speedup", "cosine", "peak_mem_mb")


def aggregate_results(*frames: pd.DataFrame) -> pd.DataFrame:
    """One tidy table for all backends, with the speedup over FP32 eager on the same cell."""
    non_empty = [f for f in frames if not f.empty]
    results = pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame(columns=COLUMNS)
    results = results.sort_values(KEY_COLUMNS, ignore_index=True)
    baseline = results[
        (results.backend == "eager") & (results.variant == "default") & (results.precision == "fp32")
        & (results.status == "ok")
    ].set_index(["batch", "seq"])["p50_ms"]
    measured = results.status.isin(["ok", "fail_accuracy"])
    base = pd.Series([baseline.get((b, s)) for b, s in zip(results.batch, results.seq)], dtype="float64")
    results["speedup"] = (base / results.p50_ms.astype("float64")).where(measured)
    return results


def publish_results(*frames: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The aggregated table twice: Parquet for tools, CSV for people (two catalog entries)."""
    results = aggregate_results(*frames)
    return results, results


def mlflow_metrics(results: pd.DataFrame) -> dict[str, Any]:
    """Metrics for kedro-mlflow's MlflowMetricsHistoryDataset.

    ``<metric>/<backend>.<variant>/<precision>/bB_sS``: one value per cell, for comparing runs
    (two GPUs, two library versions) cell by cell. ``<metric>_by_batch/<backend>.<variant>/
    <precision>/sS`` with step = batch size: the MLflow UI draws latency against batch size,
    one line per backend.
    """
    metrics: dict[str, Any] = {}
    measured = results[results.status.isin(["ok", "fail_accuracy"])]
    for row in measured.itertuples(index=False):
        engine = f"{row.backend}.{row.variant}/{row.precision}"
        for name in CELL_METRICS:
            value = getattr(row, name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            metrics[f"{name}/{engine}/{cell_name(row.batch, row.seq)}"] = {"value": float(value), "step": 0}
            if name in ("p50_ms", "speedup", "throughput_seq_s"):
                metrics.setdefault(f"{name}_by_batch/{engine}/s{row.seq}", []).append(
                    {"value": float(value), "step": int(row.batch)}
                )
    for status, count in results.status.value_counts().items():
        metrics[f"cells/{status}"] = {"value": float(count), "step": 0}
    return metrics

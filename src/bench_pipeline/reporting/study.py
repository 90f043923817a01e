"""The study's own figure and a comparison of two MLflow runs, for ``notebooks/compare_backends.ipynb``.

The study this project grew from showed one figure: speedup over the Hugging Face baseline
(PyTorch eager, FP32), grouped by batch size × sequence length, one bar per backend and precision.
It is drawn here, not in the notebook, so the notebook stays a few cells and this is tested like
the rest of the reports. Any results table works: a run's own, or an older one kept under
``benchmarks/results`` that predates the paired-speedup columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from bench_pipeline.harness.status import Status
from bench_pipeline.reporting.figures import Drawn, figure_title
from bench_pipeline.reporting.formatting import cell_label, config_label
from bench_pipeline.reporting.tables import (
    CELL,
    UNPAIRED_MARK,
    _numeric,
    add_speedup,
    check_frame,
    ordered_configs,
    rows_of,
    unpaired_mark,
)

_READERS = {".parquet": pd.read_parquet, ".csv": pd.read_csv}
STUDY_TITLE = "Speedup over the Hugging Face baseline (PyTorch eager FP32), p50 latency"


def load_results(path: str | Path) -> pd.DataFrame:
    """A results table from a ``.parquet`` or ``.csv`` file."""
    path = Path(path)
    if path.suffix not in _READERS:
        raise ValueError(f"results file {path}: unknown format {path.suffix!r}; allowed: {sorted(_READERS)}")
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} does not exist")
    return _READERS[path.suffix](path)


def records_beside(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``environment.json`` and ``model_info.json`` from the results file's folder (``{}`` where
    absent): a results folder kept under ``benchmarks/results`` has them, and the figure's title
    names the model and GPU from them."""
    folder = Path(path).parent

    def read(name: str) -> dict[str, Any]:
        file = folder / name
        return json.loads(file.read_text()) if file.is_file() else {}

    return read("environment.json"), read("model_info.json")


def study_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """The ``ok`` rows with ``speedup`` and its interval (``speedup_ci_low``/``_high``, NaN where none).

    ``speedup`` is the run's own (paired round by round, where it measured rounds); where a row has
    none (older runs) it is the ratio of the FP32 eager p50 to this p50 at the same cell.
    """
    check_frame(df, ["p50_ms"])
    ratio = add_speedup(df)["speedup"]
    out = df.copy()
    out["speedup"] = _numeric(df, "speedup").fillna(ratio)
    for column in ("speedup_ci_low", "speedup_ci_high"):
        out[column] = _numeric(df, column)
    return out[(out["status"] == Status.OK) & out["speedup"].notna()]


def speedup_bars(
    df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any], note: str = ""
) -> Drawn:
    """Grouped bars: one group per batch × sequence length, one bar per backend/variant/precision,
    the bootstrap 95 % interval as error bars where the results have one. Only ``ok`` cells."""
    frame = study_speedups(df)
    if frame.empty:
        return None, "Speedup bars left out: no ok cell has a speedup (no FP32 eager baseline ran ok?)."
    cells = sorted({(int(b), int(s)) for b, s in frame[CELL].itertuples(index=False)})
    all_configs = ordered_configs(df)  # every configuration keeps its colour, as in the report's figures
    configs = [c for c in all_configs if not rows_of(frame, c).empty]
    colors = colormaps["tab10" if len(all_configs) <= 10 else "tab20"]
    width = 0.8 / len(configs)
    fig = Figure(figsize=(max(7.5, 0.22 * len(cells) * len(configs) + 3.5), 5.2), layout="constrained")
    ax = fig.subplots()
    unpaired = False
    for k, config in enumerate(configs):
        rows = rows_of(frame, config).set_index(CELL).reindex(cells)
        x = np.arange(len(cells)) + (k - (len(configs) - 1) / 2) * width
        heights = rows["speedup"].to_numpy(dtype=float)
        low = (heights - rows["speedup_ci_low"].to_numpy(dtype=float)).clip(min=0)
        high = (rows["speedup_ci_high"].to_numpy(dtype=float) - heights).clip(min=0)
        errors = None if np.isnan(low).all() else np.nan_to_num(np.vstack([low, high]))  # no interval: no whisker
        color = colors(all_configs.index(config) % colors.N)
        bars = ax.bar(x, heights, width, yerr=errors, capsize=2, color=color, label=config_label(*config),
                      error_kw={"elinewidth": 1, "ecolor": "0.2"})
        marks = [unpaired_mark(r) for r in rows.itertuples()]
        unpaired = unpaired or any(marks)
        ax.bar_label(bars, labels=["" if np.isnan(h) else f"{h:.1f}{mark}" for h, mark in zip(heights, marks)],
                     fontsize=6, padding=2)
    ax.axhline(1.0, color="0.2", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(cells)), [cell_label(b, s) for b, s in cells])
    ax.set_xlabel("batch size × sequence length (tokens)")
    ax.set_ylabel("speedup over PyTorch eager FP32 (×)")
    ax.grid(True, axis="y", alpha=0.3)
    dropped = int((df["status"] != Status.OK).sum())
    whiskers = "whiskers: bootstrap 95 % interval" if frame["speedup_ci_low"].notna().any() else (
        "no intervals in these results")
    legend_title = f"{whiskers}; {dropped} cell(s) not ok not drawn" if dropped else whiskers
    if unpaired:
        legend_title += f"\n{UNPAIRED_MARK} not paired round by round"
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title=legend_title, title_fontsize=7)
    title = figure_title(STUDY_TITLE, env, model_info, df)
    fig.suptitle(f"{title}\n{note}" if note else title, fontsize=12)
    return fig, None


def last_two_runs(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(older, newer) of the two latest runs in a ``mlflow.search_runs`` frame."""
    if len(runs) < 2:
        raise ValueError(f"comparing runs needs two runs of the experiment; it has {len(runs)}")
    ordered = runs.sort_values("start_time")
    return ordered.iloc[-2], ordered.iloc[-1]


def compare_runs(runs: pd.DataFrame, metric: str = "p50_ms") -> pd.DataFrame:
    """One row per cell metric (``<metric>/<backend>.<variant>/<precision>/bB_sS``) of the last two
    runs: the older and newer value and their ratio, newer / older (below 1: the newer run is faster
    for a latency). A cell that only one run measured keeps its row with NaN on the other side."""
    older, newer = last_two_runs(runs)
    prefix = f"metrics.{metric}/"
    keys = sorted(k for k in runs.columns if k.startswith(prefix) and not (pd.isna(older[k]) and pd.isna(newer[k])))
    rows = []
    for key in keys:
        engine, precision, cell = key.removeprefix(prefix).rsplit("/", 2)
        rows.append({"configuration": f"{engine} {precision}", "cell": cell, "older": older[key], "newer": newer[key]})
    table = pd.DataFrame(rows, columns=["configuration", "cell", "older", "newer"])
    table["newer / older"] = table["newer"] / table["older"]
    return table


def run_differences(runs: pd.DataFrame) -> pd.DataFrame:
    """What differs between the last two runs: run id and start, then every parameter and ``env.*``
    tag (GPU, driver, library versions, threads…) whose value is not the same in both."""
    older, newer = last_two_runs(runs)
    keys = ["run_id", "start_time"] + sorted(
        k for k in runs.columns
        if (k.startswith("params.") or k.startswith("tags.env.")) and str(older[k]) != str(newer[k])
    )
    return pd.DataFrame({"older": [older[k] for k in keys], "newer": [newer[k] for k in keys]}, index=keys)

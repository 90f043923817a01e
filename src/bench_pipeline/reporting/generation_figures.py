"""The generation scenario's figures: tokens/s and per-token latency against batch size, time to first token
against prompt length, and the end-to-end speedup over FP32 eager with its interval, per configuration.

Drawn as ``figures.py`` draws the forward ones: plain ``Figure`` objects saved by the same Kedro
``MatplotlibDataset`` (the ``report_figures`` folder), one colour per configuration in ``ordered_configs``
order, log axes for sizes, the model and device in the title. Only numbers that mean something are drawn:
ok cells are the lines, with their bootstrap 95 % intervals as error bars; unstable cells (the rounds
disagreed, or something competed for the machine) are hollow markers ringed amber off the lines, as the
forward heatmap hatches them amber; every other status is left out and counted under the legend (the
report's failure list says why).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

from bench_pipeline.harness.status import Status
from bench_pipeline.reporting.figures import UNSTABLE_EDGE, Drawn, draw_each, figure_title, missing_note
from bench_pipeline.reporting.formatting import config_label
from bench_pipeline.reporting.generation import is_generation
from bench_pipeline.reporting.tables import (
    BASELINE,
    CONFIG,
    UNPAIRED_LEGEND,
    add_speedup,
    check_frame,
    has_values,
    ordered_configs,
    rows_of,
    unpaired_mark,
)

# File names double as keys of the report_figures dict, beside figures.FIGURE_TITLES'.
GENERATION_FIGURE_TITLES = {
    "generation_vs_batch.png": "Generated tokens/s and per-token latency (p50) against batch size",
    "generation_ttft.png": "Time to first token (prefill) against prompt length",
    "generation_speedup.png": "End-to-end speedup over FP32 eager with 95 % intervals",
}
_DRAWN = (Status.OK, Status.UNSTABLE)
_UNSTABLE_NOTE = "hollow, ringed amber: unstable (never trusted)"
_UNSTABLE_RING = {"marker": "o", "markersize": 12, "markerfacecolor": "none", "markeredgecolor": UNSTABLE_EDGE,
                  "markeredgewidth": 2.0}


def _numeric(rows: pd.DataFrame, column: str) -> np.ndarray:
    if column not in rows.columns:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)


def _error_bars(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Matplotlib's (2, n) distances below and above each value; none where the interval is unknown."""
    below = np.nan_to_num(values - low, nan=0.0).clip(min=0.0)
    above = np.nan_to_num(high - values, nan=0.0).clip(min=0.0)
    return np.vstack([below, above])


def _draw_series(ax: Axes, rows: pd.DataFrame, x: str, y: str, bounds: tuple[str, str], color: Any,
                 label: str, shift: float) -> bool:
    """One configuration's points: ok cells joined by a line, unstable ones hollow and ringed amber, each
    with its interval as an error bar. Returns whether an unstable point was drawn."""
    rows = rows.sort_values(x)
    values = _numeric(rows, y)
    xs = rows[x].to_numpy(dtype=float) * shift
    errors = _error_bars(values, _numeric(rows, bounds[0]), _numeric(rows, bounds[1]))
    ok = (rows["status"] == Status.OK).to_numpy() & np.isfinite(values)
    unstable = (rows["status"] == Status.UNSTABLE).to_numpy() & np.isfinite(values)
    if ok.any():
        ax.errorbar(xs[ok], values[ok], yerr=errors[:, ok], marker="o", color=color, label=label, linewidth=1.5,
                    capsize=3, elinewidth=1.2)
    if unstable.any():  # hollow in the configuration's colour, ringed amber
        ax.plot(xs[unstable], values[unstable], linestyle="none", **_UNSTABLE_RING)
        ax.errorbar(xs[unstable], values[unstable], yerr=errors[:, unstable], marker="o", linestyle="none",
                    color=color, markerfacecolor="none", markeredgewidth=1.5, capsize=3, elinewidth=1.0,
                    label=None if ok.any() else label)
    return bool(unstable.any())


def _draw_panels(axes: np.ndarray, frame: pd.DataFrame, configs: list[tuple[str, str, str]], panel: str,
                 x: str, y: str, bounds: tuple[str, str], log_y: bool = True) -> bool:
    """Per panel value of ``panel`` (ascending, one axis each): the series of ``y`` over ``x`` of every
    configuration in ``configs`` (the whole run's, in order: each keeps its colour across figures) that
    ``frame`` holds rows of, on a log-2 x axis. Returns whether an unstable point was drawn."""
    colors = colormaps["tab10" if len(configs) <= 10 else "tab20"]
    unstable = False
    ticks = sorted(int(v) for v in frame[x].unique())
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for ax, value in zip(axes, sorted(int(v) for v in frame[panel].unique())):
        at = frame[frame[panel] == value]
        for k, config in enumerate(configs):
            shift = math.exp((k - (len(configs) - 1) / 2) * 0.035)  # keep overlapping error bars apart
            unstable |= _draw_series(ax, rows_of(at, config), x, y, bounds, colors(k % colors.N),
                                     config_label(*config), shift)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        if log_y:  # plain numbers on the major and minor ticks: a run spans a decade or two, not ten
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain if _decades(ax) < 1.5 else NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
    return unstable


def _decades(ax: Axes) -> float:
    low, high = ax.get_ylim()
    return math.log10(high / low) if low > 0 else math.inf


def _legend(fig: Figure, df: pd.DataFrame, unstable: bool, extra: tuple[str, ...] = ()) -> None:
    """One legend under the panels: every configuration drawn once, the unstable marker where one was drawn,
    the count of cells left out as its title."""
    handles, labels = [], []
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if unstable:
        handles.append(Line2D([], [], linestyle="none", **_UNSTABLE_RING))
        labels.append(_UNSTABLE_NOTE)
    left_out = int((~df["status"].isin(_DRAWN)).sum())
    notes = list(extra)
    if left_out:
        notes.insert(0, f"{left_out} cell(s) neither ok nor unstable are not drawn; see the report's failure list")
    title = "\n".join(textwrap.fill(note, 110) for note in notes) or None
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=9, title=title,
               title_fontsize=8)


def _figure(columns: int, rows: int = 1, sharey: bool | str = True) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(max(4.5 * columns, 6), 4.2 * rows + 1.0), layout="constrained")
    axes = fig.subplots(rows, columns, sharey=sharey, squeeze=False)
    return fig, axes


def generation_vs_batch(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> Drawn:
    """Top: generated tokens/s of the whole batch; bottom: per-token decode latency p50; both against batch size,
    one column per prompt length. The tokens/s interval is the end-to-end p50's, turned over."""
    check_frame(df)
    missing = has_values(df, ["throughput_tok_s", "tpot_p50_ms", "p50_ms"])
    if missing:
        return None, missing_note("Generation tokens/s figure", missing)
    frame = df[df["status"].isin(_DRAWN)].copy()
    if frame.empty:
        return None, "Generation tokens/s figure left out: no cell ran ok or unstable."
    tokens_s, p50 = _numeric(frame, "throughput_tok_s"), _numeric(frame, "p50_ms")
    frame["tok_s_low"] = tokens_s * p50 / _numeric(frame, "p50_ci_high_ms")
    frame["tok_s_high"] = tokens_s * p50 / _numeric(frame, "p50_ci_low_ms")
    prompts = sorted(int(s) for s in frame["seq"].unique())
    fig, axes = _figure(len(prompts), rows=2, sharey="row")
    configs = ordered_configs(df)
    shaky_top = _draw_panels(axes[0], frame, configs, "seq", "batch", "throughput_tok_s",
                             ("tok_s_low", "tok_s_high"))
    shaky_bottom = _draw_panels(axes[1], frame, configs, "seq", "batch", "tpot_p50_ms",
                                ("tpot_p50_ci_low_ms", "tpot_p50_ci_high_ms"))
    for top, bottom, prompt in zip(axes[0], axes[1], prompts):
        top.set_title(f"prompt {prompt} tokens")
        bottom.set_xlabel("batch size")
    axes[0][0].set_ylabel("generated tokens/s (log)")
    axes[1][0].set_ylabel("per-token p50 ms (log)")
    _legend(fig, df, shaky_top or shaky_bottom)
    fig.suptitle(figure_title("Generated tokens/s (top) and per-token decode latency p50 (bottom)", env,
                              model_info, df), fontsize=13)
    return fig, None


def generation_ttft(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> Drawn:
    """Time to first token (the prefill) against prompt length, one panel per batch size."""
    check_frame(df)
    missing = has_values(df, ["ttft_ms"])
    if missing:
        return None, missing_note("TTFT figure", missing)
    frame = df[df["status"].isin(_DRAWN)]
    if frame.empty:
        return None, "TTFT figure left out: no cell ran ok or unstable."
    batches = sorted(int(b) for b in frame["batch"].unique())
    fig, axes = _figure(len(batches))
    unstable = _draw_panels(axes[0], frame, ordered_configs(df), "batch", "seq", "ttft_ms",
                            ("ttft_ci_low_ms", "ttft_ci_high_ms"))
    for ax, batch in zip(axes[0], batches):
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("prompt length (tokens)")
    axes[0][0].set_ylabel("time to first token ms (log)")
    _legend(fig, df, unstable)
    fig.suptitle(figure_title("Time to first token (prefill)", env, model_info, df), fontsize=13)
    return fig, None


def generation_speedup(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> Drawn:
    """End-to-end speedup of a whole generation over FP32 eager (dynamic cache) against batch size, one panel
    per prompt length, with its paired bootstrap interval; a speedup not paired round by round carries °."""
    check_frame(df)
    missing = has_values(df, ["p50_ms"])
    if missing:
        return None, missing_note("Generation speedup figure", missing)
    frame = add_speedup(df)
    baseline = tuple(BASELINE[c] for c in CONFIG)
    frame = frame[frame["status"].isin(_DRAWN) & frame["speedup"].notna()]
    frame = frame[~(frame[CONFIG].astype(str) == pd.Series(baseline, index=CONFIG)).all(axis=1)]
    if frame.empty:
        return None, ("Generation speedup figure left out: no configuration other than FP32 eager has a speedup "
                      "(it needs an ok FP32 eager cell beside it).")
    prompts = sorted(int(s) for s in frame["seq"].unique())
    fig, axes = _figure(len(prompts))
    unstable = _draw_panels(axes[0], frame, ordered_configs(df), "seq", "batch", "speedup",
                            ("speedup_ci_low", "speedup_ci_high"), log_y=False)
    unpaired = False
    for ax, prompt in zip(axes[0], prompts):
        ax.axhline(1.0, color="0.45", linestyle="--", linewidth=1)
        ax.set_title(f"prompt {prompt} tokens")
        ax.set_xlabel("batch size")
        for row in frame[frame["seq"] == prompt].itertuples(index=False):
            if mark := unpaired_mark(row):
                unpaired = True
                ax.annotate(mark, (row.batch, row.speedup), xytext=(4, 4), textcoords="offset points")
    axes[0][0].set_ylabel("speedup over FP32 eager (×)")
    axes[0][0].set_ylim(bottom=0)
    _legend(fig, df, unstable, ("dashed: FP32 eager (1×)", *([f"{UNPAIRED_LEGEND}."] if unpaired else [])))
    fig.suptitle(figure_title("End-to-end speedup over FP32 eager (dynamic cache)", env, model_info, df),
                 fontsize=13)
    return fig, None


def draw_generation(df: pd.DataFrame, env: Mapping[str, Any],
                    model_info: Mapping[str, Any]) -> tuple[dict[str, Figure], dict[str, str]]:
    """The generation figures that can be drawn, keyed by file name, and a note for each one left out; nothing
    at all for a forward run (its rows have no time to first token)."""
    if not is_generation(df):
        return {}, {}
    drawers = {"generation_vs_batch.png": generation_vs_batch, "generation_ttft.png": generation_ttft,
               "generation_speedup.png": generation_speedup}
    return draw_each(drawers, df, env, model_info)

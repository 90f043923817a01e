"""The report's figures, drawn on plain ``matplotlib.figure.Figure`` objects.

No pyplot: figures made this way hold no global state, so a long Kedro run does not pile up
open figures, and Kedro's ``matplotlib.MatplotlibDataset`` saves them as they are. Each
function returns ``(figure, None)`` or, when the frame lacks what the figure needs,
``(None, note)`` with a sentence the report prints in the figure's place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from bench_pipeline.harness.status import Status
from bench_pipeline.reporting.formatting import cell_label, config_label, fmt_ms
from bench_pipeline.reporting.tables import (
    BASELINE,
    CONFIG,
    COST_COLUMNS,
    MARK_LEGENDS,
    UNPAIRED_LEGEND,
    UNPAIRED_MARK,
    add_speedup,
    break_even,
    check_frame,
    has_values,
    marks_of,
    not_run_configs,
    ordered_configs,
    rows_of,
    unpaired_mark,
    without_configs,
)

Drawn = tuple[Figure | None, str | None]

# File names double as keys for Kedro's MatplotlibDataset (a dict saves one file per key).
FIGURE_TITLES = {
    "speedup_heatmap.png": "Speedup over FP32 eager per batch × sequence length",
    "latency_vs_batch.png": "Latency (p50, whiskers p90–p99) against batch size",
    "cost_break_even.png": "Cost to get there: one-off time and break-even",
}

_FAILED_FACE = "0.88"
_FAILED_HATCH = "///"
UNSTABLE_EDGE = "#c98a00"  # unstable cells, in every figure
_UNSTABLE_HATCH = "xx"


def device_name(env: Mapping[str, Any], df: pd.DataFrame | None = None) -> str:
    """The GPU's name when the rows ran on CUDA (or no rows say), else the CPU model."""
    if df is None or df.empty or "device" not in df.columns:
        on_gpu = True
    else:
        on_gpu = df["device"].astype(str).str.startswith("cuda").any()
    gpu, cpu = env.get("gpu.name"), env.get("cpu.model")
    if on_gpu and gpu:
        return str(gpu)
    return str(cpu or gpu or "unknown device")


def figure_title(what: str, env: Mapping[str, Any], model_info: Mapping[str, Any], df: pd.DataFrame) -> str:
    return f"{what}\n{model_info.get('name') or 'unknown model'} on {device_name(env, df)}"


def missing_note(figure: str, missing: list[str]) -> str:
    return f"{figure} left out: the results have no values in column(s) {missing}."


def speedup_heatmap(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> Drawn:
    """One heatmap panel per backend/variant/precision that ran here: speedup over FP32 eager
    per batch × seq, with its 95 % interval where known, numbers in the cells; failed and skipped
    cells hatched grey with their status, unstable cells hatched amber. Configurations that ran
    at no cell get no panel: the footnote names them (the report says why)."""
    check_frame(df)
    missing = has_values(df, ["p50_ms"])
    if missing:
        return None, missing_note("Speedup heatmap", missing)
    frame = add_speedup(df)
    if not frame["speedup"].notna().any():
        note = "Speedup heatmap left out: no FP32 eager (eager/default/fp32) cell ran ok, so there is no baseline."
        return None, note
    not_run = not_run_configs(frame)
    frame = without_configs(frame, not_run)
    batches = sorted(int(b) for b in frame["batch"].unique())
    seqs = sorted(int(s) for s in frame["seq"].unique())
    configs = ordered_configs(frame)
    speedups = frame.loc[frame["status"] == Status.OK, "speedup"].dropna()
    lo, hi = (speedups.min(), speedups.max()) if not speedups.empty else (1.0, 1.0)
    # Fixed floor and ceiling so a 0.9× cell reads as "about the same", not as alarm red.
    norm = TwoSlopeNorm(vmin=min(lo, 0.5), vcenter=1.0, vmax=max(hi, 2.0))
    cmap = colormaps["RdYlGn"].with_extremes(bad="white")

    ncols = min(len(configs), 3)
    nrows = math.ceil(len(configs) / ncols)
    panel_w, panel_h = max(3.2, 1.35 * len(seqs) + 1.2), max(2.4, 0.95 * len(batches) + 1.0)
    fig = Figure(figsize=(max(panel_w * ncols + 1.2, 7.5), panel_h * nrows + 1.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    marks = ""
    image = None
    for ax, config in zip(axes, configs):
        rows = rows_of(frame, config)
        grid = np.full((len(batches), len(seqs)), np.nan)
        for row in rows.itertuples(index=False):
            i, j = batches.index(int(row.batch)), seqs.index(int(row.seq))
            if row.status == Status.OK and not pd.isna(row.speedup):
                grid[i, j] = row.speedup
        image = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto", origin="lower")
        for row in rows.itertuples(index=False):
            i, j = batches.index(int(row.batch)), seqs.index(int(row.seq))
            marks += _annotate_cell(ax, i, j, row, cmap, norm)
        ax.set_title(config_label(*config), fontsize=11, fontweight="bold")
        ax.set_xticks(range(len(seqs)), [str(s) for s in seqs])
        ax.set_yticks(range(len(batches)), [str(b) for b in batches])
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("batch size")
    for ax in axes[len(configs) :]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes[: len(configs)].tolist(), label="speedup vs FP32 eager (×)", shrink=0.9)
    fig.suptitle(figure_title("Speedup over FP32 eager (p50 latency ratio)", env, model_info, df), fontsize=13)
    footnote = _heatmap_footnote(marks, frame["speedup_ci_low"].notna().any(), not_run)
    fig.text(0.01, 0.005, footnote, fontsize=8, ha="left", va="bottom")
    reserved = (0.16 * (footnote.count("\n") + 1) + 0.08) / fig.get_figheight()  # inches to figure fraction
    fig.get_layout_engine().set(rect=(0, reserved, 1, 1 - reserved))
    return fig, None


def _heatmap_footnote(marks: str, intervals: bool, not_run: pd.DataFrame) -> str:
    lines = [("[low–high]: bootstrap 95 % interval. " if intervals else "")
             + "Grey hatched: no valid result (status shown; fail_accuracy: its speedup in brackets). "
             "Amber hatched: unstable, never a winner (its speedup in brackets)."]
    lines += [f"{legend}." for mark, legend in MARK_LEGENDS.items() if mark in marks]
    lines += [f"{UNPAIRED_LEGEND}."] if UNPAIRED_MARK in marks else []
    if not not_run.empty:
        names = ", ".join(config_label(*key) for key in not_run[CONFIG].itertuples(index=False))
        lines.append(f"Not run here (the report says why): {names}.")
    return "\n".join(lines)


def _annotate_cell(ax, i: int, j: int, row: Any, cmap, norm) -> str:
    """Write one cell's text; returns the marks it carried (``tables.marks_of``)."""
    if row.status == Status.OK:
        if pd.isna(row.speedup):
            ax.text(j, i, f"{fmt_ms(row.p50_ms)} ms\nno baseline", ha="center", va="center", fontsize=8)
            return ""
        red, green, blue, _ = cmap(norm(row.speedup))
        ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
        marks = marks_of(row) + unpaired_mark(row)
        text = f"{row.speedup:.2f}×{marks}"
        if not (pd.isna(row.speedup_ci_low) or pd.isna(row.speedup_ci_high)):
            text += f"\n[{row.speedup_ci_low:.2f}–{row.speedup_ci_high:.2f}]"
        ax.text(j, i, f"{text}\n{fmt_ms(row.p50_ms)} ms", ha="center", va="center", fontsize=9, color=ink,
                fontweight="bold")
        return marks
    unstable = row.status == Status.UNSTABLE
    ax.add_patch(Rectangle(
        (j - 0.5, i - 0.5), 1, 1, linewidth=0,
        facecolor="none" if unstable else _FAILED_FACE, hatch=_UNSTABLE_HATCH if unstable else _FAILED_HATCH,
        edgecolor=UNSTABLE_EDGE if unstable else "0.6",
    ))
    text = str(row.status)
    if row.status in (Status.FAIL_ACCURACY, Status.UNSTABLE) and not pd.isna(row.speedup):
        text += f"\n({row.speedup:.2f}×)"
    ax.text(j, i, text, ha="center", va="center", fontsize=8, color="0.15",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.5})
    return ""


def latency_vs_batch(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> Drawn:
    """p50 latency (markers, lines) with a p90–p99 whisker against batch size, one subplot per
    sequence length, every ok configuration on the same log axis."""
    check_frame(df)
    missing = has_values(df, ["p50_ms", "p90_ms", "p99_ms"])
    if missing:
        return None, missing_note("Latency figure", missing)
    ok = df[df["status"] == "ok"].copy()
    if ok.empty:
        return None, "Latency figure left out: no cell ran ok."
    for column in ("p50_ms", "p90_ms", "p99_ms"):
        ok[column] = pd.to_numeric(ok[column], errors="coerce")
    seqs = sorted(int(s) for s in ok["seq"].unique())
    batches = sorted(int(b) for b in df["batch"].unique())
    configs = ordered_configs(df)  # all of them, so each keeps its colour across figures
    colors = colormaps["tab10" if len(configs) <= 10 else "tab20"]
    fig = Figure(figsize=(max(4.5 * len(seqs), 6), 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(seqs), sharey=True, squeeze=False)).ravel()
    for ax, seq in zip(axes, seqs):
        for k, config in enumerate(configs):
            rows = rows_of(ok, config)
            rows = rows[rows["seq"] == seq].sort_values("batch")
            if rows.empty:
                continue
            shift = math.exp((k - (len(configs) - 1) / 2) * 0.035)  # keep overlapping whiskers apart
            x = rows["batch"].astype(float) * shift
            color = colors(k % colors.N)
            ax.plot(x, rows["p50_ms"], marker="o", color=color, label=config_label(*config), linewidth=1.5)
            ax.vlines(x, rows["p90_ms"], rows["p99_ms"], color=color, linewidth=2.5, alpha=0.55)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_title(f"sequence length {seq}")
        ax.set_xlabel("batch size")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("latency per call (ms, log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    excluded = int((df["status"] != Status.OK).sum())
    note = f"{excluded} cell(s) not ok are not drawn; see the report's failure list" if excluded else None
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=9,
               title=note, title_fontsize=8)
    fig.suptitle(figure_title("Latency per call: p50 (line), p90–p99 (whisker)", env, model_info, df), fontsize=13)
    return fig, None


def cost_break_even(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> Drawn:
    """Left: one-off seconds per configuration (setup, export, build, compile stacked).
    Right: inferences needed before the per-call saving over FP32 eager repays that cost."""
    check_frame(df)
    missing = has_values(df, ["p50_ms"])
    costs_present = [c for c in COST_COLUMNS if c not in has_values(df, [c])]
    if missing or not costs_present:
        return None, missing_note("Cost figure", missing or COST_COLUMNS)
    configs = ordered_configs(df)
    fig = Figure(figsize=(13, max(4.0, 0.45 * len(configs) + 2.0)), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.3])

    labels = [config_label(*c) for c in configs]
    per_config = _largest_cost_per_config(df, costs_present)
    starts = np.zeros(len(configs))
    palette = {"setup_s": "#4c72b0", "export_s": "#dd8452", "build_s": "#c44e52", "compile_s": "#8172b3",
               "quantize_s": "#55a868"}
    for column in costs_present:
        values = np.array([per_config.get((c, column), 0.0) for c in configs])
        left.barh(labels, values, left=starts, color=palette[column], label=column.removesuffix("_s"))
        starts += values
    left.invert_yaxis()
    left.set_xlabel("one-off seconds (largest over cells)")
    left.set_title("One-off cost per configuration")
    left.legend(fontsize=9)
    left.grid(True, axis="x", alpha=0.3)

    _draw_break_even(right, df, configs)
    fig.suptitle(figure_title("Cost to get there", env, model_info, df), fontsize=13)
    return fig, None


def _largest_cost_per_config(df: pd.DataFrame, columns: list[str]) -> dict[tuple, float]:
    """{(config, column): seconds}: the largest value over the config's cells, as the worst
    one-off a user pays (export/build repeat per row; compile is paid once, by the first shape
    that compiles, which is also what break-even charges every cell)."""
    out = {}
    for config in ordered_configs(df):
        rows = rows_of(df, config)
        for column in columns:
            values = pd.to_numeric(rows[column], errors="coerce")
            if values.notna().any():
                out[(config, column)] = float(values.max())
    return out


def _draw_break_even(ax, df: pd.DataFrame, configs: list[tuple[str, str, str]]) -> None:
    table = break_even(df)
    baseline = tuple(BASELINE[c] for c in CONFIG)
    cells = sorted({(int(b), int(s)) for b, s in zip(df["batch"], df["seq"])})
    ax.set_title("Break-even against FP32 eager")
    ax.set_xticks(range(len(cells)), [cell_label(*c) for c in cells], rotation=30 if len(cells) > 6 else 0)
    ax.set_xlabel("batch × sequence length")
    if not table["break_even_calls"].notna().any():
        ax.text(0.5, 0.5, "break-even unknown: no configuration other than FP32 eager\n"
                "ran ok with one-off costs recorded at a cell where the baseline ran ok",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    colors = colormaps["tab10" if len(configs) <= 10 else "tab20"]
    finite = table["break_even_calls"].replace([np.inf], np.nan)
    positive = finite[finite > 0]
    top = positive.max() * 10 if not positive.empty else 10.0
    shown_never = shown_free = False
    for k, config in enumerate(configs):
        if config == baseline:
            continue
        rows = rows_of(table, config)
        if rows.empty:
            continue
        xs = [cells.index((int(b), int(s))) for b, s in zip(rows["batch"], rows["seq"])]
        calls = rows["break_even_calls"].to_numpy(dtype=float)
        color = colors(k % colors.N)
        keep = np.isfinite(calls) & (calls > 0)
        ax.plot(np.array(xs)[keep], calls[keep], marker="o", linestyle="-", linewidth=1, alpha=0.9, color=color,
                label=config_label(*config))
        free = np.isfinite(calls) & (calls == 0)
        shown_free |= bool(free.any())
        ax.plot(np.array(xs)[free], np.ones(free.sum()), marker="o", fillstyle="none", linestyle="none", color=color)
        never = np.isinf(calls)
        if never.any():
            shown_never = True
            ax.plot(np.array(xs)[never], np.full(never.sum(), top), marker="v", linestyle="none", color=color)
    ax.set_yscale("log")
    ax.set_ylim(0.5, top * 2)
    ax.set_ylabel("inferences to repay the one-off cost (log)")
    ax.grid(True, which="major", alpha=0.3)
    notes = ["hollow at 1: no extra one-off cost"] if shown_free else []
    if shown_never:
        ax.axhline(top, color="0.6", linestyle=":", linewidth=1)
        notes.append("▼ on dotted line: never (not faster than FP32 eager)")
    if notes:
        ax.set_xlabel("batch × sequence length\n(" + "  ·  ".join(notes) + ")", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="backend precision")


def draw_all(
    df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]
) -> tuple[dict[str, Figure], dict[str, str]]:
    """The figures every run has that can be drawn, keyed by file name, and a note for each one left out
    (the generation scenario adds its own: ``generation_figures.draw_generation``)."""
    drawers = {
        "speedup_heatmap.png": speedup_heatmap,
        "latency_vs_batch.png": latency_vs_batch,
        "cost_break_even.png": cost_break_even,
    }
    return draw_each(drawers, df, env, model_info)


def draw_each(
    drawers: Mapping[str, Any], df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]
) -> tuple[dict[str, Figure], dict[str, str]]:
    """Each drawer's figure by file name, or its note where it drew nothing."""
    figures, notes = {}, {}
    for name, draw in drawers.items():
        figure, note = draw(df, env, model_info)
        if figure is not None:
            figures[name] = figure
        else:
            notes[name] = note
    return figures, notes

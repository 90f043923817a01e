"""What the report says, once, for both of its forms.

The Markdown summary and the HTML report render the same list of sections, so the twins
cannot drift apart: here the numbers become short strings; ``markdown.py`` and ``html.py``
only lay them out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench_pipeline.harness.results import KEY_COLUMNS, TRUSTED
from bench_pipeline.harness.status import Status
from bench_pipeline.reporting.figures import FIGURE_TITLES, device_name
from bench_pipeline.reporting.formatting import cell_label, config_label, fmt, fmt_calls, fmt_ci, fmt_ms
from bench_pipeline.reporting.generation import (
    GENERATION_TEXT,
    generation_table,
    is_generation,
    new_tokens_of,
    ttft_by_prompt,
)
from bench_pipeline.reporting.generation_figures import GENERATION_FIGURE_TITLES
from bench_pipeline.reporting.roofline import roofline_basis
from bench_pipeline.reporting.tables import (
    BASELINE,
    CONFIG,
    COST_COLUMNS,
    DISPATCH_MARK,
    MARK_LEGENDS,
    MEASURED,
    NONE,
    TIE,
    UNKNOWN,
    UNPAIRED_LEGEND,
    UNPAIRED_MARK,
    add_speedup,
    break_even,
    extra_of,
    failures,
    is_dispatch_bound,
    marks_of,
    not_run_configs,
    ordered_configs,
    results_table,
    rows_of,
    speedup_text,
    unstable_cells,
    winners,
    without_configs,
)

HEATMAP = "speedup_heatmap.png"
OTHER_FIGURES = ("latency_vs_batch.png", "cost_break_even.png")
GENERATION_FIGURES = tuple(GENERATION_FIGURE_TITLES)
#: every figure's caption, by file name, for both renderers
FIGURE_CAPTIONS = FIGURE_TITLES | GENERATION_FIGURE_TITLES
LEGEND = "; ".join([
    *MARK_LEGENDS.values(),
    UNPAIRED_LEGEND,
    "unstable: the rounds disagreed or something competed for the machine (see 'Unstable cells')",
]) + "."


@dataclass(frozen=True)
class Section:
    """A heading, paragraphs (split by a blank line) and an optional table of ready-to-print strings.

    ``figures`` names the figures (``figures.FIGURE_TITLES`` keys) a renderer puts here, or the
    note saying why each was left out; ``collapsed`` sections are folded away until opened.
    """

    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figures: tuple[str, ...] = ()
    collapsed: bool = False


def title(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> str:
    return f"Benchmark report: {model_info.get('name') or 'unknown model'} on {device_name(env, df)}"


def headline(df: pd.DataFrame) -> str:
    """The first sentence a reader sees, which says plainly when nothing worked; the speedup it
    names is the best trustworthy one (status in ``TRUSTED``), never an unstable cell's."""
    if df.empty:
        return "No cells were run: the results table is empty."
    counts = Counter(df["status"])
    statuses = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    if not any(counts.get(status, 0) for status in TRUSTED):
        return (
            f"No cell succeeded: all {len(df)} cells failed, were skipped or were unstable ({statuses}). "
            "The reasons are listed under 'Not run here, and why', 'Unstable cells' and 'Skipped and failed cells'."
        )
    table = add_speedup(df)
    ok = table[table["status"].isin(TRUSTED) & table["speedup"].notna()]
    text = f"{len(df)} cells ({statuses})."
    if ok.empty:
        return text + " No FP32 eager baseline cell ran ok, so there are no speedups."
    best = ok.loc[ok["speedup"].idxmax()]
    config = config_label(best["backend"], best["variant"], best["precision"])
    where = f"{config} at {cell_label(best['batch'], best['seq'])}"
    speedup = speedup_text(best)
    text += f" Best trustworthy speedup over FP32 eager: {speedup} ({where})."
    if counts.get(Status.UNSTABLE):
        text += f" {counts['unstable']} unstable cell(s) are left out of it and of the winners."
    return text


def dispatch_line(env: Mapping[str, Any], table: pd.DataFrame) -> str:
    """One line on how fast this host dispatches work (the environment's calibration, so runs on
    two machines can be told apart) and how many cells that dominated; '' when neither is known."""
    speeds = [f"{float(env[key]):.1f} µs per {what}" for key, what in
              (("host.launch_us", "kernel launch"), ("host.op_us", "tiny CPU torch op")) if env.get(key) is not None]
    measured = table[table["status"].isin(MEASURED)] if not table.empty else table
    bound = sum(is_dispatch_bound(v) for v in measured.get("dispatch_share", []))
    if not speeds and not bound:
        return ""
    text = "host dispatch: " + (", ".join(speeds) if speeds else "not calibrated in this run")
    if bound:
        text += f"; {bound} of {len(measured)} measured cells are dominated by it (marked {DISPATCH_MARK})"
    return text + "."


def _key_value(mapping: Mapping[str, Any], first: list[str]) -> pd.DataFrame:
    """Two columns, the keys a reader looks for first; empty facts (None) are left out, since
    the environment capture records why they are missing under its own ``*.reason`` keys."""
    first = [k for k in first if k in mapping]
    rows = []
    for key in first + sorted(k for k in mapping if k not in first):
        value = mapping[key]
        if value is None or (isinstance(value, (list, tuple, dict)) and not value):
            continue
        if key == "num_parameters" and isinstance(value, (int, float)):
            value = f"{value / 1e6:.1f} M ({int(value):,})"
        elif isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        rows.append({"key": key, "value": str(value)})
    return pd.DataFrame(rows, columns=["key", "value"])


def _pivot(df: pd.DataFrame, text_of: Callable[[Any], str]) -> pd.DataFrame:
    """Configurations down, cells (batch×seq) across, ``text_of(row)`` in each place."""
    cells = sorted({(int(b), int(s)) for b, s in zip(df["batch"], df["seq"])})
    columns = [cell_label(*c) for c in cells]
    rows = {}
    for config in ordered_configs(df):
        line = dict.fromkeys(columns, "")
        for row in rows_of(df, config).itertuples(index=False):
            line[cell_label(row.batch, row.seq)] = text_of(row)
        rows[config_label(*config)] = line
    out = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    out.index.name = "backend precision"
    return out.reset_index()


def _measured_on(row: Any) -> str:
    """Where a fanned-out cell was measured (``fanout`` stamps host, GPU id and NVML UUID into
    ``extra``); empty for a cell of a plain run."""
    extra = extra_of(row)
    if "shard" not in extra:
        return ""
    if not extra.get("gpu_id"):
        return f"{extra.get('host', '?')} CPU worker"
    return f"{extra.get('host', '?')} GPU {extra['gpu_id']} ({extra.get('gpu_uuid') or 'no NVML UUID: simulated'})"


def _latency_text(row: Any) -> str:
    if row.status in (Status.OK, Status.UNSTABLE):
        marks = marks_of(row)
        latency = fmt_ci(row.p50_ms, getattr(row, "p50_ci_low_ms", None), getattr(row, "p50_ci_high_ms", None),
                         fmt_ms, " ms")
        speedup = speedup_text(row)
        text = latency + marks + (f" · {speedup}" if speedup else "")
        return f"unstable: {text}" if row.status == Status.UNSTABLE else text
    if row.status == Status.FAIL_ACCURACY and not pd.isna(row.p50_ms):
        return f"fail_accuracy ({fmt_ms(row.p50_ms)} ms)"
    return str(row.status)


def _parity_text(row: Any) -> str:
    if row.status not in MEASURED:
        return str(row.status)
    text = f"cos {fmt(row.cosine, '.6f')} · maxΔ {fmt(row.max_abs, '.1e')}"
    if not pd.isna(getattr(row, "pooled_cosine", None)):
        text += f"\npooled cos {fmt(row.pooled_cosine, '.6f')} · maxΔ {fmt(row.pooled_max_abs, '.1e')}"
    return f"fail_accuracy: {text}" if row.status == Status.FAIL_ACCURACY else text


def _gain_and_cost_text(row: Any) -> str:
    """Speed gained and accuracy paid in one place: the speedup over FP32 eager beside cosine and max abs."""
    if row.status not in MEASURED:
        return str(row.status)
    speedup = speedup_text(row) or "no speedup"
    text = f"{speedup} · cos {fmt(row.cosine, '.4f')} · maxΔ {fmt(row.max_abs, '.1e')}"
    return f"{row.status}: {text}" if row.status != Status.OK else text


def _winner_text(row: Any) -> str:
    if row.verdict == NONE:
        return row.note
    if row.verdict == TIE:
        return f"tie: {row.tied}"
    return f"{row.config} (interval unknown)" if row.verdict == UNKNOWN else row.config


def _winner_table(table: pd.DataFrame) -> pd.DataFrame:
    best = winners(table)
    with_roofline = "roofline_pct" in best.columns and best["roofline_pct"].notna().any()
    rows = []
    for row in best.itertuples(index=False):
        line = {
            "batch × seq": cell_label(row.batch, row.seq),
            "winner": _winner_text(row),
            "p50 (ms)": fmt_ci(row.p50_ms, row.p50_ci_low_ms, row.p50_ci_high_ms, fmt_ms),
            "speedup over FP32 eager": speedup_text(row),
        }
        if with_roofline:
            line["% of roofline"] = fmt(row.roofline_pct, ".1f")
        rows.append(line)
    return pd.DataFrame(rows)


def _cost_table(table: pd.DataFrame, present: list[str]) -> pd.DataFrame:
    rows = []
    for config in ordered_configs(table):
        config_rows = rows_of(table, config)
        line = {"backend precision": config_label(*config)}
        for column in present:
            largest = pd.to_numeric(config_rows[column], errors="coerce").max()
            line[f"{column.removesuffix('_s')} (s, max)"] = fmt(largest, ".2f")
        rows.append(line)
    return pd.DataFrame(rows)


def _break_even_table(table: pd.DataFrame) -> pd.DataFrame | None:
    even = break_even(table)
    others = even[~(even[CONFIG] == pd.Series(BASELINE)).all(axis=1)]
    return _pivot(others, lambda row: fmt_calls(row.break_even_calls)) if not others.empty else None


def _cell_listing(cells: pd.DataFrame, more: dict[str, list[str]]) -> pd.DataFrame:
    """A printed list of cells: configuration, batch × seq, status, then the ``more`` columns."""
    return pd.DataFrame({
        "backend precision": [config_label(*key) for key in cells[CONFIG].itertuples(index=False)],
        "batch × seq": [cell_label(b, s) for b, s in zip(cells["batch"], cells["seq"])],
        "status": cells["status"].astype(str),
        **more,
    })


def _text(value: Any) -> str:
    return "" if value is None or pd.isna(value) else str(value)


def _failure_listing(table: pd.DataFrame) -> pd.DataFrame:
    failed = failures(table)
    return _cell_listing(failed, {"reason": [_text(r) for r in failed["reason"]]})


def _unstable_listing(table: pd.DataFrame) -> pd.DataFrame:
    unstable = unstable_cells(table)
    return _cell_listing(unstable, {
        "round spread": [fmt(100 * v, ".1f", " %") for v in unstable["round_spread"]],
        "contamination": [_text(c) for c in unstable["contamination"]],
        "reason": [_text(r) for r in unstable["reason"]],
    })


def _not_run_listing(not_run: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "backend precision": [config_label(*key) for key in not_run[CONFIG].itertuples(index=False)],
        "cells": not_run["statuses"].astype(str),
        "why": not_run["reason"].astype(str),
    })


def _flagged_cells(table: pd.DataFrame) -> pd.DataFrame | None:
    if "gpu_warnings" not in table.columns or not table["gpu_warnings"].notna().any():
        return None
    flagged = table[table["gpu_warnings"].notna()]
    return flagged[[*KEY_COLUMNS, "gpu_warnings"]].astype(str).reset_index(drop=True)


def _facts(env: Mapping[str, Any], model_info: Mapping[str, Any]) -> list[Section]:
    """The model, and the environment folded away: the facts a reader checks last."""
    facts = _key_value(env, ["gpu.name", "gpu.compute_capability", "cpu.model", "host.launch_us", "host.op_us"])
    return [
        Section("Model", "", _key_value(model_info, ["name", "model_type", "num_parameters"])),
        Section("Environment", f"{len(facts)} facts recorded with the run: GPU, driver, clocks, CPU, library "
                "versions and, where measured, the host dispatch calibration (host.*).", facts, collapsed=True),
    ]


def report_sections(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> list[Section]:
    """The report, answer first: summary with the host dispatch line, winners, the speedup figure,
    latency and speedup, what did not run here and why, unstable cells, roofline, the other
    figures, cost, parity, every other cell that did not run ok, and last the model and the
    (collapsed) environment."""
    table = results_table(df, env, model_info)
    summary = Section("Summary", "\n\n".join(t for t in (headline(df), dispatch_line(env, table)) if t))
    if table.empty:
        return [summary, Section("Skipped and failed cells", "No cells at all: nothing ran."), *_facts(env, model_info)]

    not_run = not_run_configs(table)
    shown = without_configs(table, not_run)  # configurations that ran somewhere
    sections = [summary, Section(
        "Winner per cell",
        "The fastest configuration with status ok per batch × sequence length, by p50 latency, is named the winner "
        "only when the upper end of its 95 % interval lies below the lower end of the runner-up's; otherwise the "
        "cell lists the configurations that tie with it. Unstable cells and cells outside parity tolerance "
        "(fail_accuracy) never win. Brackets: bootstrap 95 % intervals.",
        _winner_table(table),
    )]
    if is_generation(table):
        sections += [
            Section("Generation: TTFT, per-token latency, tokens/s",
                    GENERATION_TEXT.format(new_tokens=new_tokens_of(table)), generation_table(table)),
            Section("Generation: TTFT against prompt length", "Time to first token in ms (status ok cells).",
                    ttft_by_prompt(table)),
            Section("Generation figures",
                    "Tokens/s and per-token latency against batch size, time to first token against prompt length, "
                    "and the end-to-end speedup over FP32 eager, per configuration; error bars: bootstrap 95 % "
                    "intervals. Lines join ok cells; unstable cells are hollow markers ringed amber; other cells "
                    "are not drawn.", figures=GENERATION_FIGURES),
        ]
    sections += [Section(
        "Speedup over FP32 eager",
        "One panel per configuration that ran here; configurations that ran nowhere are listed under "
        "'Not run here, and why'.",
        figures=(HEATMAP,),
    )]
    if not shown.empty:
        sections.append(Section(
            "Latency (p50) and speedup over FP32 eager",
            "p50 latency per call in ms and its speedup over FP32 eager (eager/default/fp32) at the same cell, paired "
            f"round by round unless marked {UNPAIRED_MARK}, with bootstrap 95 % intervals in brackets; a number "
            "without brackets has no recorded "
            "interval (older results: the speedup is the ratio of p50s). " + LEGEND
            + " Other entries give the status.",
            _pivot(shown, _latency_text),
        ))
    placed = _pivot(shown, _measured_on)
    if (placed.drop(columns=placed.columns[0]) != "").any().any():
        sections.append(Section(
            "Which GPU measured which cell",
            "The sweep was fanned out over GPUs: each candidate's speedup pairs it with the FP32 eager baseline "
            "measured on the same GPU in the same rounds; the baseline's own row is from one of them.",
            placed,
        ))
    if not not_run.empty:
        sections.append(Section(
            "Not run here, and why",
            f"{len(not_run)} configuration(s) did not run at any cell on this machine.",
            _not_run_listing(not_run),
        ))
    unstable = _unstable_listing(table)
    if len(unstable):
        sections.append(Section(
            "Unstable cells",
            f"{len(unstable)} cell(s) were measured while their rounds disagreed or something competed for the "
            "machine: their numbers are in the tables, and those marked unstable are never a winner, the headline "
            "or an MLflow metric.",
            unstable,
        ))
    has_roofline = shown["roofline_pct"].notna().any()
    sections.append(Section(
        "Share of roofline",
        roofline_basis(env, model_info),
        _pivot(shown, lambda row: fmt(row.roofline_pct, ".1f", " %")) if has_roofline else None,
    ))
    sections.append(Section("Latency and cost figures", figures=OTHER_FIGURES))

    costs = [c for c in COST_COLUMNS if c in table.columns and pd.to_numeric(table[c], errors="coerce").notna().any()]
    if not costs:
        sections.append(Section("Cost to get there", "No setup, export, build or compile times were recorded."))
    else:
        sections.append(Section(
            "Cost to get there",
            "One-off seconds per configuration (largest over its cells).",
            _cost_table(table, costs),
        ))
        sections.append(Section(
            "Break-even",
            "Inferences after which the per-call saving over FP32 eager repays the one-off cost "
            "beyond eager's own (setup + export + build + compile; compile is paid once per configuration, so every "
            "cell is charged its largest, as later shapes may reuse the first shape's compile).",
            _break_even_table(table),
        ))

    measured = shown["status"].isin(MEASURED).any()
    lowered = shown[~shown["precision"].isin(["fp32"])]
    if measured and lowered["status"].isin(MEASURED).any():
        sections.append(Section(
            "Speed gained and accuracy paid",
            "Per configuration below FP32 (TF32, FP16, BF16, INT8, FP8): the speedup over FP32 eager beside the "
            "cosine similarity and largest absolute difference of the last hidden state against it. Each precision "
            "passes or fails its own tolerance (benchmark.tolerances: INT8/FP8 far looser than FP16).",
            _pivot(lowered, _gain_and_cost_text),
        ))
    sections.append(Section(
        "Parity against FP32 eager",
        "Cosine similarity and largest absolute difference of the last hidden state (and the pooled output where "
        "present) against the FP32 eager reference with TF32 off; the results table holds every number."
        if measured else "No cell was measured, so there is no parity to show.",
        _pivot(shown, _parity_text) if measured else None,
    ))
    flagged = _flagged_cells(table)
    if flagged is not None:
        sections.append(Section(
            "Cells measured on a throttled or shared GPU",
            f"{len(flagged)} cell(s) were measured while the GPU throttled its clocks or ran other processes: "
            "their numbers may be slower than this GPU can do.",
            flagged,
        ))
    listing = _failure_listing(shown)
    elsewhere = " Configurations that ran nowhere are listed under 'Not run here, and why'." if len(not_run) else ""
    sections.append(Section(
        "Skipped and failed cells",
        (f"{len(listing)} cell(s) did not run ok." if len(listing) else "No other cell failed or was skipped.")
        + elsewhere if len(listing) or elsewhere or len(unstable) else "Every cell ran ok.",
        listing if len(listing) else None,
    ))
    return [*sections, *_facts(env, model_info)]

"""What the report says, once, for both of its forms.

The Markdown summary and the HTML report render the same list of sections, so the twins
cannot drift apart: here the numbers become short strings; ``markdown.py`` and ``html.py``
only lay them out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pandas as pd

from bench_pipeline.reporting.figures import device_name
from bench_pipeline.reporting.formatting import cell_label, config_label, fmt, fmt_calls, fmt_ms
from bench_pipeline.reporting.roofline import roofline_basis
from bench_pipeline.results import KEY_COLUMNS
from bench_pipeline.reporting.tables import (
    BASELINE,
    CONFIG,
    COST_COLUMNS,
    MEASURED,
    add_speedup,
    break_even,
    failures,
    is_true,
    ordered_configs,
    results_table,
    rows_of,
    winners,
)

FIGURES_PLACEHOLDER = "figures"


@dataclass(frozen=True)
class Section:
    """A heading, a paragraph and an optional table of ready-to-print strings.

    ``kind`` = ``FIGURES_PLACEHOLDER`` marks where a renderer puts the figures.
    """

    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    kind: str = ""


def title(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> str:
    return f"Benchmark report: {model_info.get('name') or 'unknown model'} on {device_name(env, df)}"


def headline(df: pd.DataFrame) -> str:
    """The first sentence a reader sees, which says plainly when nothing worked."""
    if df.empty:
        return "No cells were run: the results table is empty."
    counts = Counter(df["status"])
    statuses = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    if counts.get("ok", 0) == 0:
        return (
            f"No cell succeeded: all {len(df)} cells failed or were skipped ({statuses}). "
            "The reasons are listed under 'Skipped and failed cells'."
        )
    table = add_speedup(df)
    ok = table[(table["status"] == "ok") & table["speedup"].notna()]
    text = f"{len(df)} cells ({statuses})."
    if ok.empty:
        return text + " No FP32 eager baseline cell ran ok, so there are no speedups."
    best = ok.loc[ok["speedup"].idxmax()]
    config = config_label(best["backend"], best["variant"], best["precision"])
    where = f"{config} at {cell_label(best['batch'], best['seq'])}"
    return text + f" Best speedup over FP32 eager: {best['speedup']:.2f}× ({where})."


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


def _latency_text(row: Any) -> str:
    if row.status == "ok":
        star = "*" if is_true(getattr(row, "cov_flag", None)) else ""
        speedup = fmt(row.speedup, ".2f", "×")
        return f"{fmt_ms(row.p50_ms)} ms{star}" + (f" · {speedup}" if speedup else "")
    if row.status == "fail_accuracy" and not pd.isna(row.p50_ms):
        return f"fail_accuracy ({fmt_ms(row.p50_ms)} ms)"
    return str(row.status)


def _parity_text(row: Any) -> str:
    if row.status not in MEASURED:
        return str(row.status)
    text = f"cos {fmt(row.cosine, '.6f')} · maxΔ {fmt(row.max_abs, '.1e')}"
    if not pd.isna(getattr(row, "pooled_cosine", None)):
        text += f"\npooled cos {fmt(row.pooled_cosine, '.6f')} · maxΔ {fmt(row.pooled_max_abs, '.1e')}"
    return f"fail_accuracy: {text}" if row.status == "fail_accuracy" else text


def _winner_table(table: pd.DataFrame) -> pd.DataFrame:
    best = winners(table)
    with_roofline = "roofline_pct" in best.columns and best["roofline_pct"].notna().any()
    rows = []
    for row in best.itertuples(index=False):
        line = {
            "batch × seq": cell_label(row.batch, row.seq),
            "winner": row.config if row.note == "" else row.note,
            "p50 (ms)": fmt_ms(row.p50_ms),
            "speedup over FP32 eager": fmt(row.speedup, ".2f", "×"),
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


def _failure_listing(table: pd.DataFrame) -> pd.DataFrame:
    failed = failures(table)
    return pd.DataFrame({
        "backend precision": [config_label(*key) for key in failed[CONFIG].itertuples(index=False)],
        "batch × seq": [cell_label(b, s) for b, s in zip(failed["batch"], failed["seq"])],
        "status": failed["status"].astype(str),
        "reason": ["" if r is None or pd.isna(r) else str(r) for r in failed["reason"]],
    })


def _flagged_cells(table: pd.DataFrame) -> pd.DataFrame | None:
    if "gpu_warnings" not in table.columns or not table["gpu_warnings"].notna().any():
        return None
    flagged = table[table["gpu_warnings"].notna()]
    return flagged[[*KEY_COLUMNS, "gpu_warnings"]].astype(str).reset_index(drop=True)


def report_sections(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> list[Section]:
    """The report, top to bottom: summary, environment, model, winners, latency and speedup,
    roofline, figures, cost, parity, and every cell that did not run ok with its reason."""
    table = results_table(df, env, model_info)
    sections = [
        Section("Summary", headline(df)),
        Section("Environment", "", _key_value(env, ["gpu.name", "gpu.compute_capability", "cpu.model"])),
        Section("Model", "", _key_value(model_info, ["name", "model_type", "num_parameters"])),
    ]
    if table.empty:
        return [*sections, Section("Skipped and failed cells", "No cells at all: nothing ran.")]

    sections.append(Section(
        "Winner per cell",
        "Fastest configuration with status ok per batch × sequence length, by p50 latency. "
        "A cell outside parity tolerance (fail_accuracy) never wins.",
        _winner_table(table),
    ))
    sections.append(Section(
        "Latency (p50) and speedup over FP32 eager",
        "p50 latency per call in ms and its speedup over eager FP32 (eager/default/fp32) at the same cell; "
        "* marks a noisy measurement (coefficient of variation above 2.5 %). Other entries give the status.",
        _pivot(table, _latency_text),
    ))
    has_roofline = table["roofline_pct"].notna().any()
    sections.append(Section(
        "Share of roofline",
        roofline_basis(env, model_info),
        _pivot(table, lambda row: fmt(row.roofline_pct, ".1f", " %")) if has_roofline else None,
    ))
    sections.append(Section("Figures", kind=FIGURES_PLACEHOLDER))

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

    measured = table["status"].isin(MEASURED).any()
    sections.append(Section(
        "Parity against FP32 eager",
        "Cosine similarity and largest absolute difference of the last hidden state (and the pooled output where "
        "present) against the FP32 eager reference with TF32 off; the results table holds every number."
        if measured else "No cell was measured, so there is no parity to show.",
        _pivot(table, _parity_text) if measured else None,
    ))
    flagged = _flagged_cells(table)
    if flagged is not None:
        sections.append(Section(
            "Cells measured on a throttled or shared GPU",
            f"{len(flagged)} cell(s) were measured while the GPU throttled its clocks or ran other processes: "
            "their numbers may be slower than this GPU can do.",
            flagged,
        ))
    listing = _failure_listing(table)
    sections.append(Section(
        "Skipped and failed cells",
        f"{len(listing)} cell(s) did not run ok." if len(listing) else "Every cell ran ok.",
        listing if len(listing) else None,
    ))
    return sections

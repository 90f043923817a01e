"""The report as one self-contained HTML file: inline CSS, figures as base64 PNG, so it can be
mailed, attached to an MLflow run or opened from disk with nothing beside it."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from html import escape
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from bench_pipeline.harness.results import STATUSES
from bench_pipeline.harness.status import Status
from bench_pipeline.reporting.sections import FIGURE_CAPTIONS, Section, report_sections, title

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #d0d0d0; padding: .3rem .6rem; text-align: left; vertical-align: top;
         white-space: pre-line; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
table td.bad { background: repeating-linear-gradient(45deg, #eee, #eee 4px, #e2e2e2 4px, #e2e2e2 8px); color: #8a1c1c; }
table td.unstable { background: repeating-linear-gradient(45deg, #fff3d6, #fff3d6 4px, #ffe6a8 4px, #ffe6a8 8px); }
td.reason { font-family: ui-monospace, monospace; font-size: .82rem; white-space: pre-wrap; max-width: 60ch; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; border: 1px solid #e5e5e5; }
figcaption { color: #555; font-size: .9rem; }
.note { background: #fff6e0; border-left: 4px solid #e0a800; padding: .4rem .8rem; }
.summary { font-size: 1.05rem; }
details > summary { cursor: pointer; }
details > summary h2 { display: inline; }
"""

_BAD_STATUSES = tuple(s for s in STATUSES if s not in (Status.OK, Status.UNSTABLE))


def figure_png_base64(figure: Figure, dpi: int = 110) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def html_table(table: pd.DataFrame) -> str:
    """A table with every cell escaped; a cell that states a failed status is hatched grey, an
    unstable one amber."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in table.columns)
    rows = []
    for row in table.itertuples(index=False):
        cells = []
        for column, value in zip(table.columns, row):
            text = str(value)
            classes = []
            if text.startswith(_BAD_STATUSES):
                classes.append("bad")
            elif text.startswith(Status.UNSTABLE):
                classes.append("unstable")  # the CSS class
            if column == "reason":
                classes.append("reason")
            attribute = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attribute}>{escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_report(
    df: pd.DataFrame,
    env: Mapping[str, Any],
    model_info: Mapping[str, Any],
    figures: Mapping[str, Figure],
    figure_notes: Mapping[str, str] | None = None,
) -> str:
    """The whole report as one HTML document (figures embedded, nothing linked)."""
    heading = escape(title(df, env, model_info))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{heading}</title><style>{_CSS}</style></head><body>",
        f"<h1>{heading}</h1>",
    ]
    for section in report_sections(df, env, model_info):
        parts += _section(section, figures, figure_notes or {})
    parts.append("</body></html>")
    return "\n".join(parts)


def _section(section: Section, figures: Mapping[str, Figure], notes: Mapping[str, str]) -> list[str]:
    """One section; a collapsed one is a closed ``<details>`` whose summary is the heading."""
    heading = f"<h2>{escape(section.title)}</h2>"
    parts = ["<section>", f"<details><summary>{heading}</summary>" if section.collapsed else heading]
    css = ' class="summary"' if section.title == "Summary" else ""
    parts += [f"<p{css}>{escape(paragraph)}</p>" for paragraph in section.text.split("\n\n") if paragraph]
    if section.table is not None and not section.table.empty:
        parts.append(html_table(section.table))
    if section.figures:
        parts += _figures(section.figures, figures, notes)
    parts.append("</details></section>" if section.collapsed else "</section>")
    return parts


def _figures(names: tuple[str, ...], figures: Mapping[str, Figure], notes: Mapping[str, str]) -> list[str]:
    """The named figures that were drawn, and the note of each one left out."""
    parts = []
    for name in (n for n in names if n in figures):
        caption = escape(FIGURE_CAPTIONS.get(name, name))
        parts.append(
            f'<figure><img alt="{caption}" src="data:image/png;base64,{figure_png_base64(figures[name])}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    parts += [f'<p class="note">{escape(notes[name])}</p>' for name in names if name in notes]
    if not parts:
        parts.append("<p>No figures were drawn.</p>")
    return parts

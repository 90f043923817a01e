"""The report as Markdown: the twin of the HTML report, with figures as relative links."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from bench_pipeline.reporting.sections import FIGURE_CAPTIONS, report_sections, title


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured pipe table; written here because pandas' ``to_markdown`` needs the
    extra ``tabulate`` package for what is a dozen lines."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", "<br>")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join(" --- " for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def markdown_summary(
    df: pd.DataFrame,
    env: Mapping[str, Any],
    model_info: Mapping[str, Any],
    figure_paths: Mapping[str, str] | None = None,
    figure_notes: Mapping[str, str] | None = None,
) -> str:
    """The whole report in Markdown.

    ``figure_paths`` maps figure names (``sections.FIGURE_CAPTIONS`` keys) to paths relative to
    where the Markdown file is saved; ``figure_notes`` says why a figure was left out.
    """
    lines = [f"# {title(df, env, model_info)}", ""]
    for section in report_sections(df, env, model_info):
        lines += [f"## {section.title}", ""]
        if section.collapsed:  # GitHub renders the Markdown inside <details> when blank lines surround it
            lines += ["<details><summary>show</summary>", ""]
        if section.text:
            lines += [section.text, ""]
        if section.table is not None and not section.table.empty:
            lines += [markdown_table(section.table), ""]
        if section.figures:
            lines += _figures(section.figures, figure_paths or {}, figure_notes or {})
        if section.collapsed:
            lines += ["</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def _figures(names: tuple[str, ...], paths: Mapping[str, str], notes: Mapping[str, str]) -> list[str]:
    """Links to the named figures that were drawn, and the note of each one left out."""
    lines = []
    for name in (n for n in names if n in paths):
        caption = FIGURE_CAPTIONS.get(name, name)
        lines += [f"![{caption}]({paths[name]})", "", f"*{caption}*", ""]
    for name in (n for n in names if n in notes):
        lines += [f"> {notes[name]}", ""]
    if not lines:
        lines = ["No figures were drawn.", ""]
    return lines

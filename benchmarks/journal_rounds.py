"""Why is a cell unstable? Every round of every cell, from a sweep's journal.

    python benchmarks/journal_rounds.py [--journal data/07_model_output/journal] [--out rounds.md]

Per cell and unit: its status, the median of each round in the order the rounds ran, and, for
every candidate, the paired speedup over the FP32 eager baseline round by round with their
spread. Launch-bound cells on a drifting host show round medians far apart (``unstable``);
GPU-bound cells show them within a percent. Reads the journal only: nothing is measured.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench_pipeline.harness.results import cell_name
from bench_pipeline.harness.sweep import BASELINE


def read_journal(directory: Path) -> tuple[dict[str, dict], dict[str, dict[int, float]]]:
    """Finished rows by key, and each key's round medians by round index."""
    rows: dict[str, dict] = {}
    medians: dict[str, dict[int, float]] = defaultdict(dict)
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if "row" in entry:
                rows[entry["key"]] = entry["row"]
            elif entry["record"].get("times_ms"):
                medians[entry["key"]][entry["round"]] = float(np.median(entry["record"]["times_ms"]))
    return rows, medians


def table(rows: dict[str, dict], medians: dict[str, dict[int, float]]) -> str:
    cells: dict[tuple[int, int], dict[tuple[str, str, str], str]] = defaultdict(dict)
    for key, row in rows.items():
        cells[(row["batch"], row["seq"])][(row["backend"], row["variant"], row["precision"])] = key
    lines = ["| cell | unit | status | round p50 ms (in order) | paired speedups per round | their spread |",
             "|---|---|---|---|---|---|"]
    for cell in sorted(cells):
        baseline = medians.get(cells[cell].get(BASELINE, ""), {})
        for unit, key in sorted(cells[cell].items()):
            own = medians.get(key, {})
            if not own:
                continue
            ratios = [baseline[r] / own[r] for r in sorted(own) if r in baseline] if unit != BASELINE else []
            spread = f"{(max(ratios) - min(ratios)) / np.median(ratios):.0%}" if ratios else ""
            lines.append(f"| {cell_name(*cell)} | {'/'.join(unit)} | {rows[key]['status']} | "
                         f"{', '.join(f'{own[r]:.3f}' for r in sorted(own))} | "
                         f"{', '.join(f'{x:.2f}' for x in ratios)} | {spread} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journal", type=Path, default=Path("data/07_model_output/journal"))
    parser.add_argument("--out", type=Path, help="write the table here as markdown")
    args = parser.parse_args()
    text = table(*read_journal(args.journal))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Why is a cell unstable? Every round of every cell, from a sweep's journal.

    python benchmarks/journal_rounds.py [--journal data/07_model_output/journal] [--sweep ID ...] [--out rounds.md]

Per cell and unit: its status, the median of each round in the order the rounds ran, and, for
every candidate, the paired speedup over the FP32 eager baseline round by round with their
spread. Launch-bound cells on a drifting host show round medians far apart (``unstable``);
GPU-bound cells show them within a percent. One block per sweep (the same config run twice keeps
both). Reads the journal only: nothing is measured.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench_pipeline.harness.results import cell_name
from bench_pipeline.harness.sweep import BASELINE
from journal_results import read_sweeps


def read_journal(directory: Path) -> tuple[dict[tuple[str, str], dict], dict[tuple[str, str], dict[int, float]]]:
    """Finished rows and each one's round medians by round index, both by (sweep, key), as
    ``journal_results.read_sweeps`` attributes them."""
    cells = read_sweeps(directory)
    return ({at: cell["row"] for at, cell in cells.items()},
            {at: {r: float(np.median(t)) for r, t in cell["rounds"].items()} for at, cell in cells.items()})


def table(rows: dict[tuple[str, str], dict], medians: dict[tuple[str, str], dict[int, float]],
          sweeps: list[str] | None = None) -> str:
    cells: dict[tuple[str, int, int], dict[tuple[str, str, str], tuple[str, str]]] = defaultdict(dict)
    for (sweep, key), row in rows.items():
        if not sweeps or sweep in sweeps:
            cells[(sweep, row["batch"], row["seq"])][(row["backend"], row["variant"], row["precision"])] = (sweep, key)
    lines = ["| sweep | cell | unit | status | round p50 ms (in order) | paired speedups per round | their spread |",
             "|---|---|---|---|---|---|---|"]
    for sweep, batch, seq in sorted(cells):
        units = cells[(sweep, batch, seq)]
        baseline = medians.get(units.get(BASELINE, ("", "")), {})
        for unit, at in sorted(units.items()):
            own = medians.get(at, {})
            if not own:
                continue
            ratios = [baseline[r] / own[r] for r in sorted(own) if r in baseline] if unit != BASELINE else []
            spread = f"{(max(ratios) - min(ratios)) / np.median(ratios):.0%}" if ratios else ""
            lines.append(f"| {sweep} | {cell_name(batch, seq)} | {'/'.join(unit)} | {rows[at]['status']} | "
                         f"{', '.join(f'{own[r]:.3f}' for r in sorted(own))} | "
                         f"{', '.join(f'{x:.2f}' for x in ratios)} | {spread} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journal", type=Path, default=Path("data/07_model_output/journal"))
    parser.add_argument("--sweep", action="append", default=[], help="only this sweep id (repeatable)")
    parser.add_argument("--out", type=Path, help="write the table here as markdown")
    args = parser.parse_args()
    text = table(*read_journal(args.journal), args.sweep)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

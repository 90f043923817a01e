"""A sweep's results table from its journal alone, for a run that was stopped before its report.

    python benchmarks/journal_results.py [--journal data/07_model_output/journal]            list the sweeps
    python benchmarks/journal_results.py --sweep ID [--sweep ID ...] --out results.csv      one sweep's rows

The sweep journals every cell as it finishes (row and rounds), so a run killed by a timeout keeps every cell
it measured; ``resume`` reuses them, and this script writes them out without a GPU: the rows exactly as the
sweep wrote them (status, intervals, speedups, parity), nothing recomputed. Each row names its sweep
(``extra.sweep_id``); in a journal written before skipped rows carried it, such a row belongs to the sweep of the
row before it in the same file (journals are append-only, a sweep writes cell after cell), and one before any
labelled row to the sweep ``unlabelled``. Reads only.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import pandas as pd

UNLABELLED = "unlabelled"  # rows before the first row that names its sweep, in a journal older than the labels


def read_sweeps(directory: Path) -> dict[tuple[str, str], dict]:
    """Every finished cell of the journal by (sweep, key), in the order written: its ``row`` and the ``rounds``
    (round index -> times) journaled before it. Within one sweep the last line of a key wins (as on resume);
    two sweeps of the same config keep a cell each. A round index that comes again before its row starts a new
    attempt (a killed sweep's rounds never join the next sweep's row)."""
    cells: dict[tuple[str, str], dict] = {}
    for path in sorted(directory.glob("*.jsonl")):
        pending: dict[str, dict[int, list[float]]] = {}
        sweep = UNLABELLED
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a torn line: the journal's own load quarantines it
                continue
            key = entry["key"]
            if "row" in entry:
                sweep = json.loads(entry["row"].get("extra") or "{}").get("sweep_id") or sweep
                cells.pop((sweep, key), None)
                cells[(sweep, key)] = {"row": entry["row"], "rounds": pending.pop(key, {})}
            elif entry["record"].get("times_ms"):
                rounds = pending.setdefault(key, {})
                if entry["round"] in rounds:
                    rounds.clear()
                rounds[entry["round"]] = entry["record"]["times_ms"]
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journal", type=Path, default=Path("data/07_model_output/journal"))
    parser.add_argument("--sweep", action="append", default=[], help="a sweep id (see the listing); repeatable")
    parser.add_argument("--out", type=Path, help="the results CSV to write")
    args = parser.parse_args()
    if not args.journal.is_dir():
        parser.error(f"--journal {args.journal}: no such folder")
    rows = [(sweep, cell["row"]) for (sweep, _), cell in read_sweeps(args.journal).items()]
    if not args.sweep:
        counts = Counter((sweep, row["model"], row["status"]) for sweep, row in rows)
        for (sweep, model, status), n in sorted(counts.items(), key=str):
            print(f"{sweep}  {model}  {status}: {n}")
        return
    known = {sweep for sweep, _ in rows}
    unknown = [s for s in args.sweep if s not in known]
    if unknown:
        parser.error(f"--sweep {unknown}: not in {args.journal}; there: {sorted(known)}")
    if not args.out:
        parser.error("--out is needed with --sweep")
    table = pd.DataFrame([row for sweep, row in rows if sweep in args.sweep])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"{len(table)} rows of sweep(s) {', '.join(args.sweep)} -> {args.out}")
    print(table.status.value_counts().to_string())


if __name__ == "__main__":
    main()

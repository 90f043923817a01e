"""A sweep's results table from its journal alone, for a run that was stopped before its report.

    python benchmarks/journal_results.py [--journal data/07_model_output/journal]            list the sweeps
    python benchmarks/journal_results.py --sweep ID [--sweep ID ...] --out results.csv      one sweep's rows

The sweep journals every cell as it finishes (row and rounds), so a run killed by a timeout keeps every cell
it measured; ``resume`` reuses them, and this script writes them out without a GPU: the rows exactly as the
sweep wrote them (status, intervals, speedups, parity), nothing recomputed. Each row names its sweep
(``extra.sweep_id``); a row from a journal written before skipped rows carried it belongs to the sweep of the
row before it in the same file (journals are append-only, a sweep writes cell after cell). Reads only.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import pandas as pd


def journal_rows(directory: Path) -> list[tuple[str | None, dict]]:
    """(sweep id, row) of every finished cell in the journal, in the order written; within one sweep the last
    line of a key wins (as on resume); two sweeps of the same config keep a row each."""
    rows: list[tuple[str | None, dict]] = []
    for path in sorted(directory.glob("*.jsonl")):
        by_key: dict[tuple[str | None, str], tuple[str | None, dict]] = {}
        sweep = None
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a torn line: the journal's own load quarantines it
                continue
            if "row" not in entry:
                continue
            sweep = json.loads(entry["row"].get("extra") or "{}").get("sweep_id") or sweep
            by_key.pop((sweep, entry["key"]), None)
            by_key[(sweep, entry["key"])] = (sweep, entry["row"])
        rows += by_key.values()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journal", type=Path, default=Path("data/07_model_output/journal"))
    parser.add_argument("--sweep", action="append", default=[], help="a sweep id (see the listing); repeatable")
    parser.add_argument("--out", type=Path, help="the results CSV to write")
    args = parser.parse_args()
    if not args.journal.is_dir():
        parser.error(f"--journal {args.journal}: no such folder")
    rows = journal_rows(args.journal)
    if not args.sweep:
        counts = Counter((sweep, row["model"], row["status"]) for sweep, row in rows)
        for (sweep, model, status), n in sorted(counts.items(), key=str):
            print(f"{sweep or 'unlabelled'}  {model}  {status}: {n}")
        return
    known = {sweep for sweep, _ in rows}
    unknown = [s for s in args.sweep if s not in known]
    if unknown:
        parser.error(f"--sweep {unknown}: not in {args.journal}; there: {sorted(s for s in known if s)}")
    if not args.out:
        parser.error("--out is needed with --sweep")
    table = pd.DataFrame([row for sweep, row in rows if sweep in args.sweep])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"{len(table)} rows of sweep(s) {', '.join(args.sweep)} -> {args.out}")
    print(table.status.value_counts().to_string())


if __name__ == "__main__":
    main()

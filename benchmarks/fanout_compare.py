"""Does the fan-out measure what the plain run measures? Two results tables, cell by cell.

    python benchmarks/fanout_compare.py PLAIN FANOUT OUT_DIR

``PLAIN`` and ``FANOUT`` are results tables (``data/08_reporting/results.csv`` or ``.parquet``) of
the same sweep, run once plainly and once with ``--params benchmark.scale.gpus=1`` (issue 13's
GPU check: one GPU worker must give the same cells and numbers). Writes ``OUT_DIR/fanout_compare.md``:
whether both have the same cell set, and per cell both statuses and p50s with their 95 %
intervals, and whether each p50 lies inside the other run's interval. Two runs of one machine
still differ by their noise: a p50 outside the other's interval says so, it is not hidden.

Also per cell: the fan-out p50's difference from the plain one, and whether the two intervals overlap
(a weaker check, reported beside the strict one, never instead of it).

Exit status: 0 when the cell sets are equal and every cell measured in both agrees both ways (the strict
check), 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bench_pipeline.harness.results import KEY_COLUMNS

MEASURED = ("ok", "unstable")  # statuses with numbers (unstable: kept, marked)


def read_results(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SystemExit(f"no results table at {path}")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = sorted({*KEY_COLUMNS, "status", "p50_ms", "p50_ci_low_ms", "p50_ci_high_ms"} - set(table.columns))
    if missing:
        raise SystemExit(f"{path}: not a results table, it lacks the columns {missing}")
    return table.set_index(KEY_COLUMNS)


def inside(value: float, low: float, high: float) -> bool:
    return bool(pd.notna(value) and pd.notna(low) and pd.notna(high) and low <= value <= high)


def compare(plain: pd.DataFrame, fanout: pd.DataFrame) -> pd.DataFrame:
    """One row per cell of either table: statuses, p50s and intervals, and the two inclusion checks."""
    both = plain.merge(fanout, how="outer", left_index=True, right_index=True,
                       suffixes=("_plain", "_fanout"))  # join() takes suffixes only from pandas 3.1
    rows = []
    for key, r in both.iterrows():
        measured = r.status_plain in MEASURED and r.status_fanout in MEASURED
        fan_in_plain = measured and inside(r.p50_ms_fanout, r.p50_ci_low_ms_plain, r.p50_ci_high_ms_plain)
        plain_in_fan = measured and inside(r.p50_ms_plain, r.p50_ci_low_ms_fanout, r.p50_ci_high_ms_fanout)
        rows.append({
            "cell": "/".join(map(str, key)), "status plain": r.status_plain, "status fan-out": r.status_fanout,
            "p50 plain ms [95 %]": _p50(r, "plain"), "p50 fan-out ms [95 %]": _p50(r, "fanout"),
            "fan-out p50 in plain interval": _yes_no(measured, fan_in_plain),
            "plain p50 in fan-out interval": _yes_no(measured, plain_in_fan),
            "fan-out vs plain": f"{r.p50_ms_fanout / r.p50_ms_plain - 1:+.1%}" if measured else "–",
            "intervals overlap": _yes_no(measured, measured and _overlap(r)),
            "agrees": measured and fan_in_plain and plain_in_fan,
            "measured in both": measured,
        })
    return pd.DataFrame(rows)


def _overlap(row: pd.Series) -> bool:
    """The weaker check, beside the two above: two runs minutes apart drift by more than one run's interval of
    its median, so a reader also sees whether the two intervals share any value."""
    return bool(row.p50_ci_low_ms_plain <= row.p50_ci_high_ms_fanout
                and row.p50_ci_low_ms_fanout <= row.p50_ci_high_ms_plain)


def _p50(row: pd.Series, side: str) -> str:
    p50 = row[f"p50_ms_{side}"]
    if pd.isna(p50):
        return "–"
    return f"{p50:.4g} [{row[f'p50_ci_low_ms_{side}']:.4g}, {row[f'p50_ci_high_ms_{side}']:.4g}]"


def _yes_no(measured: bool, value: bool) -> str:
    return ("yes" if value else "NO") if measured else "–"


def markdown(table: pd.DataFrame, plain: Path, fanout: Path) -> str:
    columns = [c for c in table.columns if c not in ("agrees", "measured in both")]
    only = table[table["status plain"].isna() | table["status fan-out"].isna()]
    measured = table[table["measured in both"]]
    lines = [
        "# Fan-out (one GPU worker) vs plain run", "",
        f"plain: `{plain}`  ", f"fan-out: `{fanout}`", "",
        f"- same cell set: {'yes' if only.empty else 'NO: ' + ', '.join(only['cell'])}",
        f"- measured in both: {len(measured)} of {len(table)} cells; "
        f"each p50 inside the other run's 95 % interval: {int(measured['agrees'].sum())} of {len(measured)}; "
        f"intervals overlap: {int((measured['intervals overlap'] == 'yes').sum())} of {len(measured)}", "",
        "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join("–" if pd.isna(v) else str(v) for v in row) + " |" for row in table[columns].values]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plain", type=Path)
    parser.add_argument("fanout", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        plain, fanout = read_results(args.plain), read_results(args.fanout)
    except SystemExit as error:
        print(error, file=sys.stderr)
        return 2
    table = compare(plain, fanout)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = markdown(table, args.plain, args.fanout)
    (args.out_dir / "fanout_compare.md").write_text(report)
    print(report)
    same_cells = not (table["status plain"].isna() | table["status fan-out"].isna()).any()
    return 0 if same_cells and table.loc[table["measured in both"], "agrees"].all() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Print the generation table of one or more results files, as the report shows it: TTFT, per-token p50/p90/p99,
end-to-end p50, tokens/s, speedup over FP32 eager (° where not paired round by round), KV cache, parity, status.

    python benchmarks/generation_table.py data/08_reporting/results.csv [more.csv ...] > table.md

One Markdown table per file (headed by its model): cells with numbers (ok, unstable: measured while something
competed for the machine or with rounds that disagree, shown but never trusted; fail_accuracy), then what did
not run and why. The table is the report's own (``reporting/generation.py``), so the two never differ.
"""

from __future__ import annotations

import sys

import pandas as pd

from bench_pipeline.reporting.generation import generation_table, new_tokens_of
from bench_pipeline.reporting.markdown import markdown_table
from bench_pipeline.reporting.tables import UNPAIRED_LEGEND


def table(path: str) -> str:
    df = pd.read_csv(path)
    lines = [f"### {df.model.iloc[0]} · {df.device.dropna().iloc[0]} · {new_tokens_of(df)} new tokens", "",
             markdown_table(generation_table(df)), "", f"{UNPAIRED_LEGEND}."]
    other = df[~df.status.isin(["ok", "unstable", "fail_accuracy"])]
    other = other.drop_duplicates(["backend", "variant", "precision", "status", "reason"])
    if len(other):
        lines += ["", "Not ok:"] + [
            f"- {r.backend}/{r.variant}/{r.precision} (batch {r.batch}, prompt {r.seq}): {r.status}: {r.reason}"
            for r in other.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n\n".join(table(path) for path in sys.argv[1:]))

"""Print the generation table of one or more results files: TTFT, per-token p50, tokens/s, speedup over FP32 eager.

    python benchmarks/generation_table.py data/08_reporting/results.csv [more.csv ...] > table.md

One Markdown table per file (headed by its model): cells with numbers (status ok, or unstable: measured while
something competed for the machine, shown but never trusted), then what did not run and why.
"""

from __future__ import annotations

import sys

import pandas as pd


def _ci(value, low, high, spec: str) -> str:
    if pd.isna(value):
        return ""
    text = format(value, spec)
    return text if pd.isna(low) or pd.isna(high) else f"{text} [{format(low, spec)}–{format(high, spec)}]"


def table(path: str) -> str:
    df = pd.read_csv(path)
    ok = df[df.status.isin(["ok", "unstable"])].sort_values(["batch", "seq", "backend", "variant", "precision"])
    new_tokens = int(df.new_tokens.dropna().iloc[0]) if df.new_tokens.notna().any() else "?"
    lines = [f"### {df.model.iloc[0]} · {df.device.iloc[0]} · {new_tokens} new tokens", "",
             "| backend/variant/precision | batch | prompt | TTFT ms | per-token p50 ms | tokens/s "
             "| speedup over FP32 eager | status |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in ok.itertuples(index=False):
        lines.append(
            f"| {r.backend}/{r.variant}/{r.precision} | {r.batch} | {r.seq} | "
            f"{_ci(r.ttft_ms, r.ttft_ci_low_ms, r.ttft_ci_high_ms, '.2f')} | "
            f"{_ci(r.tpot_p50_ms, r.tpot_p50_ci_low_ms, r.tpot_p50_ci_high_ms, '.3f')} | "
            f"{r.throughput_tok_s:,.0f} | "
            f"{_ci(r.speedup, r.speedup_ci_low, r.speedup_ci_high, '.2f')} | {r.status} |")
    other = df[~df.status.isin(["ok", "unstable"])]
    other = other.drop_duplicates(["backend", "variant", "precision", "status", "reason"])
    if len(other):
        lines += ["", "Not ok:"] + [
            f"- {r.backend}/{r.variant}/{r.precision} (batch {r.batch}, prompt {r.seq}): {r.status}: {r.reason}"
            for r in other.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n\n".join(table(path) for path in sys.argv[1:]))

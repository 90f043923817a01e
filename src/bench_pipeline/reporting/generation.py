"""The generation scenario's part of the report: per-token numbers a forward pass does not have.

Rows of a generation run carry ``ttft_ms`` (time to first token); the forward sections still show their
end-to-end latency and speedup over FP32 eager (one call is one whole generation). These tables add
tokens/s and per-token latency against batch size per backend, TTFT against prompt length, and the
end-to-end speedup with its interval, as plain strings ready for ``markdown.py`` and ``html.py``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench_pipeline.harness.status import Status
from bench_pipeline.reporting.formatting import config_label, fmt, fmt_ci, fmt_ms
from bench_pipeline.reporting.tables import UNPAIRED_MARK, speedup_text

GENERATION_TEXT = (
    "One call is one greedy generation of {new_tokens} new tokens (EOS ignored, so every backend does the same "
    "work) after a prompt of the cell's length. TTFT: time to first token (prefill); per token: the decode steps "
    "after it; tokens/s: generated tokens of the whole batch per second of a generation; speedup: end-to-end over "
    f"FP32 eager with the dynamic cache, paired round by round unless marked {UNPAIRED_MARK}. Brackets: bootstrap "
    "95 % intervals. Parity: "
    "'ids match' or the first step where the greedy ids part from FP32 eager's."
)


def is_generation(table: pd.DataFrame) -> bool:
    return "ttft_ms" in table.columns and pd.to_numeric(table["ttft_ms"], errors="coerce").notna().any()


def generation_table(table: pd.DataFrame) -> pd.DataFrame:
    """One line per measured cell: config, batch, prompt, TTFT, per-token p50/p90/p99, tokens/s, speedup."""
    shown = table[table["status"].isin([Status.OK, Status.UNSTABLE, Status.FAIL_ACCURACY])]
    shown = shown.sort_values(["batch", "seq", "backend", "variant", "precision"])
    lines = [{
        "backend precision": config_label(row.backend, row.variant, row.precision),
        "batch": int(row.batch),
        "prompt": int(row.seq),
        "TTFT ms": fmt_ci(row.ttft_ms, row.ttft_ci_low_ms, row.ttft_ci_high_ms, fmt_ms),
        "per token p50 ms": fmt_ci(row.tpot_p50_ms, row.tpot_p50_ci_low_ms, row.tpot_p50_ci_high_ms, fmt_ms),
        "p90 / p99 ms": f"{fmt(row.tpot_p90_ms, '.3g')} / {fmt(row.tpot_p99_ms, '.3g')}",
        "end-to-end p50 ms": fmt_ci(row.p50_ms, row.p50_ci_low_ms, row.p50_ci_high_ms, fmt_ms),
        "tokens/s": fmt(row.throughput_tok_s, ",.0f"),
        "speedup": speedup_text(row),
        "KV cache": row.kv_cache or "",
        "parity": _parity(row),
        "status": str(row.status),
    } for row in shown.itertuples(index=False)]
    return pd.DataFrame(lines)


def ttft_by_prompt(table: pd.DataFrame) -> pd.DataFrame:
    """TTFT (ms) per configuration and batch (rows) against prompt length (columns)."""
    ok = table[table["status"] == Status.OK]
    rows: dict[str, dict[str, Any]] = {}
    for row in ok.sort_values(["backend", "variant", "precision", "batch", "seq"]).itertuples(index=False):
        label = f"{config_label(row.backend, row.variant, row.precision)} · batch {int(row.batch)}"
        rows.setdefault(label, {})[f"prompt {int(row.seq)}"] = fmt_ms(row.ttft_ms)
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "configuration"
    return out.reset_index()


def new_tokens_of(table: pd.DataFrame) -> str:
    values = sorted({int(v) for v in pd.to_numeric(table["new_tokens"], errors="coerce").dropna()})
    return ", ".join(map(str, values)) or "?"


def _parity(row: Any) -> str:
    if row.tokens_match is True or row.tokens_match == 1.0:
        return "ids match"
    if pd.isna(row.first_divergent_step):
        return ""
    cosine = "" if pd.isna(row.cosine) else f"; step-1 logits cosine {row.cosine:.5f}"
    return f"ids part at step {int(row.first_divergent_step)}{cosine}"

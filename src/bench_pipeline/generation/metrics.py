"""A generation cell's own numbers, from the step stamps of its counted rounds' timed calls.

Each timed call is one generation of ``n`` tokens; its stamps are the ms from its start at which
token 1..n was ready. Token 1 is the time to first token (prefill); the gaps after it are the
per-token decode latencies. TTFT and the per-token p50 get the harness's two-level bootstrap
interval (rounds resampled, then calls or steps within them), like every latency.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench_pipeline.harness.stats import latency_interval


def generation_fields(rounds: list[list[list[float]]], batch: int, e2e_p50_ms: float, seed: int) -> dict[str, Any]:
    """Result columns from ``rounds`` (per counted round: per timed call: its step offsets in ms)."""
    calls = [np.asarray(c, dtype=float) for r in rounds for c in r]
    if not calls:
        return {}
    new_tokens = len(calls[0])
    ttft = latency_interval([np.array([c[0] for c in r]) for r in rounds if r], seed=seed)
    fields: dict[str, Any] = {
        "new_tokens": new_tokens,
        "ttft_ms": ttft.value, "ttft_ci_low_ms": ttft.low, "ttft_ci_high_ms": ttft.high,
        # generated tokens per second of a whole generation (the forward scenario's prompt tokens/s is meaningless here)
        "throughput_tok_s": batch * new_tokens * 1000.0 / e2e_p50_ms,
    }
    if new_tokens > 1:
        decode = [np.concatenate([np.diff(np.asarray(c, dtype=float)) for c in r]) for r in rounds if r]
        pooled = np.concatenate(decode)
        tpot = latency_interval(decode, seed=seed)
        fields |= {
            "tpot_mean_ms": float(pooled.mean()), "tpot_p50_ms": tpot.value,
            "tpot_p50_ci_low_ms": tpot.low, "tpot_p50_ci_high_ms": tpot.high,
            "tpot_p90_ms": float(np.percentile(pooled, 90)), "tpot_p99_ms": float(np.percentile(pooled, 99)),
        }
    return fields

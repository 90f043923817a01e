"""The one row format every backend produces, so reports never guess at columns.

A row is one (backend, variant, precision, batch, seq) cell. Every cell gets a row, also
when it could not run: ``status`` says what happened and ``reason`` says why, so a report
never silently drops a backend.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench_pipeline.harness.status import Status

# What a cell's status may be (``status.Status``; the plain strings rows carry). Only "ok" has
# timing numbers that count.
STATUSES = tuple(status.value for status in Status)

# Statuses whose numbers are trustworthy enough to compare, rank and publish as metrics.
TRUSTED = (Status.OK,)

KEY_COLUMNS = ["backend", "variant", "precision", "batch", "seq"]

COLUMNS = [
    "model",
    *KEY_COLUMNS,
    "status",
    "reason",
    "device",
    "threads",
    # latency of one call, milliseconds. On GPU: CUDA events; host_* is the synchronized host clock.
    "mean_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "std_ms",
    "cov",
    "cov_flag",  # True when the calls of a round scatter more than the device's noise bound (timing.py)
    # rounds: each cell is measured in several interleaved rounds, each in the unit's own worker process
    "rounds",  # rounds that count (p50_ms is the median of their medians)
    "rounds_set_aside",  # rounds measured but not counted: outliers or contaminated (extra.round_p50_ms has them)
    "round_spread",  # (slowest - fastest round median) / p50: how much the rounds disagree
    "p50_ci_low_ms",  # bootstrap 95 % interval of p50_ms (rounds and calls resampled)
    "p50_ci_high_ms",
    "host_p50_ms",
    "iterations",
    "first_call_ms",
    "throughput_seq_s",
    "throughput_tok_s",
    "speedup",  # FP32 eager p50 / this p50 at the same cell, paired round by round
    "speedup_ci_low",  # bootstrap 95 % interval of the speedup
    "speedup_ci_high",
    "dispatch_share",  # GPU: share of a call in which the GPU waited for the host to launch work
    "contamination",  # what competed for the machine while the cell was timed (None: nothing)
    "peak_mem_mb",  # torch allocator peak (torch backends); ONNX Runtime / TensorRT: see extra.device_memory_used_mb
    # one-off costs of getting the backend ready, seconds
    "setup_s",  # load / session creation / engine deserialization for this variant+precision
    "export_s",
    "build_s",
    "compile_s",  # torch.compile: first call of this cell's shape on a cold cache
    "compile_warm_s",  # the same on a warm inductor cache
    "quantize_s",  # INT8 / FP8: quantizing the model (ONNX Runtime: with its calibration), once
    "recompiles",  # dynamo recompilations across the grid for this variant
    "graph_breaks",  # dynamo graph breaks in one trace of the model
    # parity against the FP32 eager reference (last hidden state; pooled output where present)
    "max_abs",
    "mean_abs",
    "cosine",
    "pooled_max_abs",
    "pooled_mean_abs",
    "pooled_cosine",
    # generation scenario (scenario: generate): one call is one greedy generation of new_tokens tokens, so
    # the latency columns above are end-to-end and throughput_tok_s is generated tokens/s
    "new_tokens",
    "ttft_ms",  # time to first token (prefill), median of round medians, with its bootstrap 95 % interval
    "ttft_ci_low_ms",
    "ttft_ci_high_ms",
    "tpot_mean_ms",  # per-token decode latency (steps 2..n) over every timed step
    "tpot_p50_ms",
    "tpot_p50_ci_low_ms",
    "tpot_p50_ci_high_ms",
    "tpot_p90_ms",
    "tpot_p99_ms",
    "kv_cache",  # which KV cache the backend generates with (dynamic, static, graph I/O, none)
    "first_divergent_step",  # first step whose greedy ids differ from FP32 eager (None: none does)
    "tokens_match",
    "gpu_warnings",  # the GPU throttled or shared with other processes right after this cell (None: neither)
    "extra",  # JSON text with backend-specific facts (fusion counts, engine size, graph breaks…)
]


def make_row(**fields: Any) -> dict[str, Any]:
    """A result row with every column present; unknown column names are a programming error."""
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown result columns {sorted(unknown)}; allowed: {COLUMNS}")
    status = fields.get("status")
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; allowed: {list(STATUSES)}")
    return {column: fields.get(column) for column in COLUMNS} | {"status": Status(status).value}


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows to a frame with the fixed column order (an empty sweep still has the columns)."""
    return pd.DataFrame(rows, columns=COLUMNS)


def status_record(status: Status, reason: str) -> dict[str, Any]:
    """An earlier stage's record for an artifact it could not make; backends turn it into rows."""
    return {"status": status, "reason": reason}


def cell_name(batch: int, seq: int) -> str:
    """The stable short name of a grid cell, used in MLflow metric keys and file names."""
    return f"b{batch}_s{seq}"

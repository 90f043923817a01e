"""Run one backend over its variants x precisions x grid cells, one result row per cell.

The loop is the same for every backend: open a session (the one-off cost), then per cell
bind inputs, time, compare with the reference. Whatever goes wrong in a cell becomes that
cell's row (status + reason) and the sweep goes on; nothing measured is dropped.
"""

from __future__ import annotations

import gc
import json
import logging
import pickle
import sys
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from bench_pipeline.backends import BACKENDS, instantiate
from bench_pipeline.backends.base import BackendContext, Cell, CellFailure, Session, is_out_of_memory
from bench_pipeline.config import BackendSpec, BenchmarkConfig
from bench_pipeline.environment import gpu_state_snapshot, state_warnings
from bench_pipeline.isolation import run_isolated
from bench_pipeline.journal import REUSABLE, Journal, cell_key
from bench_pipeline.models import make_inputs
from bench_pipeline.parity import compare, violation
from bench_pipeline.results import cell_name, make_row
from bench_pipeline.timing import StopRule, measure

log = logging.getLogger(__name__)

Reference = dict[str, np.ndarray]  # "b8_s128/last_hidden_state" -> FP32 eager output


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def configure_torch(threads: int | None) -> int:
    """FP32 means FP32: TF32 off for the reference and every FP32 cell. Threads fixed and returned."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def reference_for(reference: Reference, cell: Cell) -> dict[str, np.ndarray]:
    prefix = f"{cell_name(cell.batch, cell.seq)}/"
    return {key.removeprefix(prefix): value for key, value in reference.items() if key.startswith(prefix)}


def run_backend(
    name: str,
    spec: BackendSpec,
    config: BenchmarkConfig,
    ctx: BackendContext,
    reference: Reference,
    journal: Journal | None = None,
    key_context: dict[str, Any] | None = None,
    reuse: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Rows for every planned cell, and the raw per-call times of the cells that were timed
    (keyed ``backend/variant/precision/bB_sS``).

    With a ``journal``, each finished cell is appended to it at once, and a cell whose key
    (``journal.cell_key`` over ``key_context`` and the cell) is already there with a
    reusable status is taken from it instead of being measured again (unless ``reuse`` is off).
    """
    rows: list[dict[str, Any]] = []
    raw_times: dict[str, np.ndarray] = {}
    done = journal.load() if journal and reuse else {}
    reused = 0
    plan = [(v, p) for v in spec.variants for p in config.precisions_for(v)]
    with Progress(disable=not sys.stderr.isatty(), transient=True) as progress:
        task = progress.add_task(name, total=len(plan) * len(ctx.cells))
        for variant, precision in plan:
            base = {
                "model": ctx.model_info["name"],
                "backend": name,
                "variant": variant.name,
                "precision": precision,
                "device": str(ctx.device),
                "threads": ctx.threads,
            }
            keys = {
                c: cell_key(key_context or {}, name, variant.name, variant.options, precision, c.batch, c.seq)
                for c in ctx.cells
            }
            kept = {c: done[k] for c, k in keys.items() if k in done and done[k]["row"]["status"] in REUSABLE}
            todo = [c for c in ctx.cells if c not in kept]
            fresh = _run_variant(name, variant.options, precision, config, ctx, reference, base, todo) if todo else iter(())
            for cell in ctx.cells:
                if cell in kept:
                    row, times = _reused(kept[cell])
                    reused += 1
                else:
                    row, times = next(fresh)
                    if journal:
                        journal.append(keys[cell], row, times)
                rows.append(row)
                if times is not None:
                    raw_times[f"{name}/{variant.name}/{precision}/{cell_name(cell.batch, cell.seq)}"] = times
                progress.advance(task)
            if todo:
                fresh.close()  # ends the session (its finally) now, not at garbage collection
            log.info("%s/%s/%s: %d cells done", name, variant.name, precision, len(ctx.cells))
    if journal:
        log.info("%s: reused %d of %d cells from %s", name, reused, len(rows), journal.path)
    return rows, raw_times


def _reused(entry: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray | None]:
    """A journaled cell as a row again, marked in ``extra`` as reused rather than measured now."""
    row = dict(entry["row"])
    extra = json.loads(row.get("extra") or "{}") | {"reused_from_journal": True}
    row["extra"] = _json(extra)
    times = entry.get("raw_times_ms")
    return row, None if times is None else np.asarray(times)


def _run_variant(name, options, precision, config, ctx, reference, base, cells):
    """Yield (row, raw times or None) for each of ``cells``, in this process or a worker."""
    payload = {
        "target": BACKENDS[name],
        "options": options,
        "precision": precision,
        "config": config,
        "ctx": ctx,
        "reference": {f"{cell_name(c.batch, c.seq)}/{k}": v for c in cells for k, v in reference_for(reference, c).items()},
        "base": base,
    }
    if config.isolation == "process":
        try:
            pickle.dumps(payload)
        except Exception as error:  # noqa: BLE001 - e.g. compiled modules that live in this process
            log.warning("%s runs in this process: its artifacts cannot move to a worker (%s)", name, error)
        else:
            yield from run_isolated(payload, cells, config.cell_timeout_s)
            return
    yield from run_variant_here(payload, cells)


def run_variant_here(payload: dict[str, Any], cells: list[Cell]):
    """Open the backend for one (variant, precision) and run ``cells``; every failure is a row."""
    base, ctx, config, precision = payload["base"], payload["ctx"], payload["config"], payload["precision"]
    try:
        session = instantiate(payload["target"]).open(ctx, base["variant"], precision, payload["options"])
    except Exception as error:  # noqa: BLE001 - every failure becomes rows, the sweep goes on
        status, reason = _classify(error)
        costs, extra = getattr(error, "costs", {}), _json(getattr(error, "extra", {}))
        for cell in cells:
            yield make_row(**base, **costs, batch=cell.batch, seq=cell.seq, status=status, reason=reason, extra=extra), None
        _release(ctx.device)
        return
    try:
        for cell in cells:
            yield _run_cell(session, cell, config, ctx, payload["reference"], base, precision)
    finally:
        session.close()
        del session
        _release(ctx.device)


def _run_cell(session: Session, cell: Cell, config: BenchmarkConfig, ctx, reference, base, precision):
    device = session.device  # an ORT CPU variant in a CUDA run is timed and labelled as CPU
    fields = base | {"batch": cell.batch, "seq": cell.seq, "device": str(device), "setup_s": session.setup_s}
    fields |= session.costs | _cell_costs(session, cell)
    extra = dict(session.extra)
    try:
        inputs = make_inputs(ctx.model_dir, cell.batch, cell.seq, config.seed)
        runner = session.prepare(inputs, cell)
        allocated_before = _reset_peak_memory(device)
        rule = StopRule(**config.timing.model_dump())
        measurement = measure(runner.run, rule, device=device, stream=runner.cuda_stream)
        parity = compare(runner.outputs(), reference_for(reference, cell), inputs["attention_mask"].numpy())
    except Exception as error:  # noqa: BLE001
        status, reason = _classify(error)
        del error
        _release(device)
        return make_row(**fields, status=status, reason=reason, extra=_json(extra)), None

    stats = measurement.stats()
    snapshot = gpu_state_snapshot(device) if device.type == "cuda" else {}
    peak_mem_mb = None
    if device.type == "cuda" and session.uses_torch_allocator:
        # this cell's peak above what was resident before it, plus this session's own weights:
        # models of other sessions still in memory (compiled variants) are not counted
        peak_mem_mb = (torch.cuda.max_memory_allocated(device) - allocated_before + session.resident_bytes) / 2**20
    elif snapshot.get("gpu.memory_used_mb") is not None:
        extra["device_memory_used_mb"] = snapshot["gpu.memory_used_mb"]  # whole GPU, all processes
    extra["warmup_calls"] = measurement.warmup_calls
    if measurement.notes:
        extra["measurement_notes"] = measurement.notes
    failed = violation(parity, config.tolerances[precision])
    per_second = 1000.0 / stats["p50_ms"]
    row = make_row(
        **fields,
        **stats,
        **parity,
        status="fail_accuracy" if failed else "ok",
        reason=failed,
        first_call_ms=measurement.first_call_ms,
        throughput_seq_s=cell.batch * per_second,
        throughput_tok_s=cell.batch * cell.seq * per_second,
        peak_mem_mb=peak_mem_mb,
        gpu_warnings="; ".join(state_warnings(snapshot)) or None,
        extra=_json(extra),
    )
    return row, measurement.times_ms


def _cell_costs(session: Session, cell: Cell) -> dict[str, float]:
    """Costs that differ per cell (e.g. a compile per static shape), where the session has them."""
    cell_costs = getattr(session, "cell_costs", None)
    return cell_costs(cell) if cell_costs else {}


def _reset_peak_memory(device: torch.device) -> int:
    """Start this cell's peak-memory window; the bytes already allocated (0 off CUDA)."""
    if device.type != "cuda":
        return 0
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def _classify(error: BaseException) -> tuple[str, str]:
    if isinstance(error, CellFailure):
        return error.status, error.reason
    message = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    if isinstance(error, ImportError):
        return "skipped", f"a library this backend needs is not installed: {message}"
    if is_out_of_memory(error):
        return "oom", message
    return "error", message


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _json(extra: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in extra.items() if v is not None}, default=str, sort_keys=True)

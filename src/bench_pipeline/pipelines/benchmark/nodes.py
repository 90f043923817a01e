"""Benchmark stage: each backend plans its units (one template, one namespace per backend), then
one node measures all units together, in interleaved rounds, so every backend meets the same
machine and every speedup is paired with the baseline measured beside it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench_pipeline.backends.base import BackendContext, grid_cells
from bench_pipeline.config import BenchmarkConfig, PathsConfig
from bench_pipeline.fanout.driver import fan_out_here
from bench_pipeline.harness.journal import Journal, key_context
from bench_pipeline.harness.machine_load import effective_threads, load_check
from bench_pipeline.harness.results import to_frame
from bench_pipeline.harness.sweep import Unit, plan_units, run_units
from bench_pipeline.system.device import configure_torch, resolve_device
from bench_pipeline.system.environment import compare_snapshots, gpu_state_snapshot

log = logging.getLogger(__name__)

def make_plan_node(backend: str, stages: list[str]) -> Callable[..., list[Unit]]:
    """The plan node for ``backend``; ``stages`` name the earlier stages whose artifacts it reads,
    passed positionally after the five common inputs, in that order."""

    def plan(
        model_info: dict[str, Any],
        environment: dict[str, Any],
        reference: dict[str, np.ndarray],
        config: BenchmarkConfig,
        paths: PathsConfig,
        *artifacts: Any,
    ) -> list[Unit]:
        spec = config.backends.get(backend)
        if spec is None or not spec.enabled:
            return []
        ctx = BackendContext(
            model_dir=Path(model_info["path"]),
            model_info=model_info,
            device=resolve_device(config.device),
            threads=configure_torch(effective_threads(config.threads)),
            cells=grid_cells(config),
            workdir=paths.work_dir / backend,
            artifacts=dict(zip(stages, artifacts)),
        )
        context = key_context(model_info, environment, config, ctx.artifacts)
        journal = Journal(paths.journal_dir / f"{backend}.jsonl")
        return plan_units(backend, spec, config, ctx, reference, journal, context, reuse=config.resume)

    plan.__name__ = f"plan_{backend}"
    plan.__qualname__ = plan.__name__
    plan.__doc__ = f"The {backend} units (variant x precision) and the cells the journal already holds."
    return plan


def make_measure_node(backends: list[str]) -> Callable[..., tuple[pd.DataFrame, ...]]:
    """One node over every backend's plan: results and raw times per backend, in ``backends`` order."""

    def measure(config: BenchmarkConfig, paths: PathsConfig, *plans: list[Unit]) -> tuple[pd.DataFrame, ...]:
        for warning in filter(None, [load_check()]):
            log.warning("%s: the noise gate will mark the cells it contaminates unstable", warning)
        device = resolve_device(config.device)
        start = gpu_state_snapshot(device)
        units = [unit for plan in plans for unit in plan]
        rows, raw = fan_out_here(units, config, paths.fanout_dir) if config.scale.enabled else run_units(units, config)
        for warning in compare_snapshots(start, gpu_state_snapshot(device)):
            log.warning("benchmark: %s", warning)
        results = [to_frame([r for r in rows if r["backend"] == b]) for b in backends]
        times = [raw_times_frame({k: v for k, v in raw.items() if k.split("/")[0] == b}) for b in backends]
        return (*results, *times)

    measure.__doc__ = "Time every planned cell in interleaved rounds, each unit in its own worker process."
    return measure


def raw_times_frame(raw: dict[str, dict[int, np.ndarray]]) -> pd.DataFrame:
    """Per-call times in long form: one row per timed call, keyed like the result rows, with its round."""
    frames = []
    for key, rounds in raw.items():
        backend, variant, precision, cell = key.split("/")
        batch, seq = (int(part[1:]) for part in cell.split("_"))
        for round_index, times in sorted(rounds.items()):
            frames.append(
                pd.DataFrame(
                    {
                        "backend": backend,
                        "variant": variant,
                        "precision": precision,
                        "batch": batch,
                        "seq": seq,
                        "round": round_index,
                        "call": np.arange(len(times)),
                        "time_ms": times,
                    }
                )
            )
    columns = ["backend", "variant", "precision", "batch", "seq", "round", "call", "time_ms"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

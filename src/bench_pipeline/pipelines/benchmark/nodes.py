"""Benchmark stage: one node per backend, all made from the same template."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from bench_pipeline.backends.base import BackendContext
from bench_pipeline.config import BenchmarkConfig
from bench_pipeline.environment import compare_snapshots, gpu_state_snapshot
from bench_pipeline.journal import Journal, artifact_hashes, environment_fingerprint
from bench_pipeline.pipelines.model.nodes import grid_cells
from bench_pipeline.results import to_frame
from bench_pipeline.sweep import configure_torch, resolve_device, run_backend

log = logging.getLogger(__name__)

WORK_DIR = Path("data/02_intermediate")
JOURNAL_DIR = Path("data/07_model_output/journal")  # one file per backend, appended cell by cell


def make_benchmark_node(backend: str, stages: list[str]) -> Callable[..., tuple[pd.DataFrame, pd.DataFrame]]:
    """The node for ``backend``; ``stages`` name the earlier stages whose artifacts it reads,
    passed positionally after the four common inputs, in that order. Every finished cell is
    journaled at once; a rerun reuses the cells it finds for the same config and environment."""

    def benchmark(
        model_info: dict[str, Any],
        environment: dict[str, Any],
        reference: dict[str, np.ndarray],
        config: BenchmarkConfig,
        *artifacts: Any,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        spec = config.backends.get(backend)
        if spec is None or not spec.enabled:
            return to_frame([]), raw_times_frame({})
        device = resolve_device(config.device)
        ctx = BackendContext(
            model_dir=Path(model_info["path"]),
            model_info=model_info,
            device=device,
            threads=configure_torch(config.threads),
            cells=grid_cells(config),
            workdir=WORK_DIR / backend,
            artifacts=dict(zip(stages, artifacts)),
        )
        key_context = {
            "model": {k: model_info[k] for k in ("path", "name", "weights_sha256")},
            "settings": config.model_dump(include={"timing", "tolerances", "seed", "threads", "device"}),
            "environment": environment_fingerprint(environment),
            "artifacts": artifact_hashes(ctx.artifacts),
        }
        journal = Journal(JOURNAL_DIR / f"{backend}.jsonl")
        start = gpu_state_snapshot(device)
        rows, raw = run_backend(backend, spec, config, ctx, reference, journal, key_context, reuse=config.resume)
        for warning in compare_snapshots(start, gpu_state_snapshot(device)):
            log.warning("%s: %s", backend, warning)
        return to_frame(rows), raw_times_frame(raw)

    benchmark.__name__ = f"benchmark_{backend}"
    benchmark.__qualname__ = benchmark.__name__
    benchmark.__doc__ = f"Time every {backend} variant x precision x grid cell; one result row per cell."
    return benchmark


def raw_times_frame(raw: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-call times in long form: one row per timed call, keyed like the result rows."""
    frames = []
    for key, times in raw.items():
        backend, variant, precision, cell = key.split("/")
        batch, seq = (int(part[1:]) for part in cell.split("_"))
        frames.append(
            pd.DataFrame(
                {
                    "backend": backend,
                    "variant": variant,
                    "precision": precision,
                    "batch": batch,
                    "seq": seq,
                    "call": np.arange(len(times)),
                    "time_ms": times,
                }
            )
        )
    columns = ["backend", "variant", "precision", "batch", "seq", "call", "time_ms"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

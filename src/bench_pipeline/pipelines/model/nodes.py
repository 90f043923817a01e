"""Model stage: resolve the model, capture the environment, compute the FP32 reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench_pipeline.backends.base import Cell
from bench_pipeline.config import BenchmarkConfig
from bench_pipeline.environment import capture_environment
from bench_pipeline.models import resolve_model
from bench_pipeline.reference import compute_reference
from bench_pipeline.sweep import configure_torch, resolve_device

MODELS_DIR = Path("data/06_models")


def grid_cells(config: BenchmarkConfig) -> list[Cell]:
    return [Cell(b, s) for b in config.grid.batch_sizes for s in config.grid.sequence_lengths]


def resolve_model_node(config: BenchmarkConfig) -> dict[str, Any]:
    info = resolve_model(config.model, MODELS_DIR, config.seed)
    limit = info["max_position_embeddings"]
    too_long = [s for s in config.grid.sequence_lengths if limit is not None and s > limit]
    if too_long:  # hub models are only checked here, once their config is local
        raise ValueError(f"sequence length(s) {too_long} exceed the model's max_position_embeddings ({limit})")
    return info


def environment_node(config: BenchmarkConfig) -> dict[str, Any]:
    """GPU, driver, CUDA, clocks, library versions, CPU and threads: recorded with every run."""
    device = resolve_device(config.device)
    return capture_environment(device, configure_torch(config.threads))


def reference_node(model_info: dict[str, Any], config: BenchmarkConfig) -> dict[str, np.ndarray]:
    configure_torch(config.threads)
    return compute_reference(model_info, grid_cells(config), resolve_device(config.device), config.seed)

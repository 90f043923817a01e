"""Model stage: resolve the model, capture the environment, compute the FP32 reference."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from bench_pipeline.backends.base import grid_cells
from bench_pipeline.config import BenchmarkConfig, PathsConfig
from bench_pipeline.harness.dispatch import host_dispatch
from bench_pipeline.harness.machine_load import effective_threads, load_check
from bench_pipeline.model.limits import check_sequence_lengths
from bench_pipeline.model.reference import compute_reference
from bench_pipeline.model.source import resolve_model
from bench_pipeline.system.device import configure_torch, resolve_device
from bench_pipeline.system.environment import capture_environment

log = logging.getLogger(__name__)


def resolve_model_node(config: BenchmarkConfig, paths: PathsConfig) -> dict[str, Any]:
    if config.scenario != "forward":  # the first node of the forward pipelines: nothing built for the wrong one
        raise ValueError(f"this pipeline measures the forward scenario, and benchmark.scenario is {config.scenario!r}: "
                         "run `kedro run --pipelines=generate` for it, or set scenario: forward")
    info = resolve_model(config.model, paths.models_dir, config.seed)
    # hub models are only checked here, once their config is local
    check_sequence_lengths(config.grid.sequence_lengths, info["max_position_embeddings"], info["model_type"])
    return info


def environment_node(config: BenchmarkConfig) -> dict[str, Any]:
    """GPU, driver, CUDA, clocks, library versions, CPU and threads: recorded with every run, with
    how fast this host dispatches work (``dispatch.host_dispatch``) and whether it was busy."""
    device = resolve_device(config.device)
    environment = capture_environment(device, configure_torch(effective_threads(config.threads)))
    return environment | host_dispatch(device) | {"host.load_at_start": load_check()}


def reference_node(model_info: dict[str, Any], config: BenchmarkConfig) -> dict[str, np.ndarray]:
    configure_torch(config.threads)
    device = resolve_device(config.device)
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        warn_if_grid_may_not_fit(model_info, config, free_bytes)
    return compute_reference(model_info, grid_cells(config), device, config.seed)


def warn_if_grid_may_not_fit(model_info: dict[str, Any], config: BenchmarkConfig, free_bytes: int) -> str | None:
    """A rough FP32 estimate for the largest cell (weights plus one layer's activations and
    attention scores); a warning, not an error: such cells become `oom` rows, the sweep goes on."""
    batch, seq = max(config.grid.batch_sizes), max(config.grid.sequence_lengths)
    hidden = model_info.get("hidden_size") or 0
    heads = model_info.get("num_attention_heads") or 0
    ffn = model_info.get("intermediate_size") or 4 * hidden
    activations = batch * seq * (6 * hidden + ffn) + batch * heads * seq * seq
    estimate = 4 * (model_info["num_parameters"] + activations)
    if estimate <= 0.8 * free_bytes:
        return None
    message = (
        f"the largest cell (batch {batch}, seq {seq}) may need ~{estimate / 2**30:.1f} GiB in FP32, "
        f"near or above the {free_bytes / 2**30:.1f} GiB free on the GPU: expect `oom` cells"
    )
    log.warning(message)
    return message

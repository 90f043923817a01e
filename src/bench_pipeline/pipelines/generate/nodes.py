"""Generation stage: resolve the decoder, its FP32 eager greedy reference, then every backend's generations
measured together in interleaved rounds (one node: interleaving needs all units in one place)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench_pipeline.backends.base import grid_cells
from bench_pipeline.backends.tensorrt.build import TensorRTBuildSpec
from bench_pipeline.config import BenchmarkConfig, PathsConfig
from bench_pipeline.generation import GENERATION_BACKENDS
from bench_pipeline.generation.model import (
    check_generation_config,
    load_causal_lm,
    prompt_ids,
    resolve_generation_model,
)
from bench_pipeline.generation.plan import plan_generation
from bench_pipeline.generation.torch_backend import TorchGenerateRunner
from bench_pipeline.harness.machine_load import load_check
from bench_pipeline.harness.results import cell_name, to_frame
from bench_pipeline.harness.sweep import run_units
from bench_pipeline.pipelines.benchmark.nodes import raw_times_frame
from bench_pipeline.system.device import configure_torch, resolve_device

log = logging.getLogger(__name__)


def _require_generate(config: BenchmarkConfig) -> None:
    if config.scenario != "generate":
        raise ValueError(f"the generate pipeline needs benchmark.scenario: generate (it is {config.scenario!r}); "
                         "run it with --env generate, or set the scenario")


def resolve_generation_model_node(config: BenchmarkConfig, paths: PathsConfig) -> dict[str, Any]:
    _require_generate(config)
    info = resolve_generation_model(config.model, paths.models_dir, config.seed)
    # a hub model's config is only local now: check it again
    check_generation_config(json.loads((Path(info["path"]) / "config.json").read_text()),
                            config.grid.sequence_lengths, config.generate.new_tokens, info["name"])
    return info


def generation_reference_node(model_info: dict[str, Any], config: BenchmarkConfig) -> dict[str, np.ndarray]:
    """FP32 eager greedy ids (dynamic cache) and step 1's logits per cell: what every backend must match."""
    configure_torch(config.threads)
    device = resolve_device(config.device)
    model = load_causal_lm(model_info["path"], "fp32", device,
                           trust_remote_code=model_info.get("trust_remote_code", False))
    reference: dict[str, np.ndarray] = {}
    for cell in grid_cells(config):
        inputs = prompt_ids(model_info["vocab_size"], cell.batch, cell.seq, config.seed)
        runner = TorchGenerateRunner(model, {k: v.to(device) for k, v in inputs.items()},
                                     config.generate.new_tokens, static=False, device=device)
        for name, value in runner.outputs().items():
            reference[f"{cell_name(cell.batch, cell.seq)}/{name}"] = value
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return reference


def generate_node(model_info: dict[str, Any], environment: dict[str, Any], reference: dict[str, np.ndarray],
                  config: BenchmarkConfig, paths: PathsConfig,
                  tensorrt_build: TensorRTBuildSpec) -> tuple[pd.DataFrame, ...]:
    """Results and raw per-generation times per backend (``GENERATION_BACKENDS`` order)."""
    _require_generate(config)
    for warning in filter(None, [load_check()]):
        log.warning("%s: the noise gate will mark the cells it contaminates unstable", warning)
    rows, raw = run_units(plan_generation(model_info, environment, reference, config, paths, tensorrt_build), config)
    backends = list(GENERATION_BACKENDS)
    results = [to_frame([r for r in rows if r["backend"] == b]) for b in backends]
    times = [raw_times_frame({k: v for k, v in raw.items() if k.split("/")[0] == b}) for b in backends]
    return (*results, *times)

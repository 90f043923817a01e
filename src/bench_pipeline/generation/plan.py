"""The generation scenario's units, for the harness's sweep: same rounds, isolation, journal and rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_pipeline.backends.base import BackendContext, grid_cells
from bench_pipeline.backends.tensorrt.build import TensorRTBuildSpec
from bench_pipeline.config import BenchmarkConfig, PathsConfig
from bench_pipeline.generation import GENERATION_BACKENDS
from bench_pipeline.harness.journal import Journal, key_context
from bench_pipeline.harness.machine_load import effective_threads
from bench_pipeline.harness.sweep import Unit, plan_units
from bench_pipeline.system.device import configure_torch, resolve_device


@dataclass
class GenerationContext(BackendContext):
    """A backend context that also knows how many tokens each generation makes, and how TensorRT builds."""

    new_tokens: int = 0
    tensorrt_build: TensorRTBuildSpec | None = None  # the ``tensorrt_build:`` parameters, as the forward stage's


def plan_generation(model_info: dict[str, Any], environment: dict[str, Any], reference: dict[str, Any],
                    config: BenchmarkConfig, paths: PathsConfig, tensorrt_build: TensorRTBuildSpec) -> list[Unit]:
    """Every enabled generation backend's units (variant x precision), journaled apart from the forward ones.
    One work folder for all of them: ONNX Runtime and TensorRT read the same decoder graphs."""
    units: list[Unit] = []
    device = resolve_device(config.device)
    threads = configure_torch(effective_threads(config.threads))
    for name, spec in config.enabled_backends().items():
        ctx = GenerationContext(
            model_dir=Path(model_info["path"]), model_info=model_info, device=device, threads=threads,
            cells=grid_cells(config), workdir=paths.work_dir / "generate",  # a cell's seq: the prompt length
            new_tokens=config.generate.new_tokens, tensorrt_build=tensorrt_build,
        )
        # the scenario and its one setting outside the grid and the variant: a cell of 64 tokens is not one of 8
        context = key_context(model_info, environment, config) | {
            "scenario": "generate", "new_tokens": config.generate.new_tokens}
        journal = Journal(paths.journal_dir / f"generate_{name}.jsonl")
        units += plan_units(name, spec, config, ctx, reference, journal, context, reuse=config.resume,
                            target=GENERATION_BACKENDS[name])
    return units

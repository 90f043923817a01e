"""The FP32 eager reference outputs every cell of every backend is compared with."""

from __future__ import annotations

import numpy as np
import torch

from bench_pipeline.backends.base import Cell
from bench_pipeline.backends.eager.runtime import TorchRunner
from bench_pipeline.harness.results import cell_name
from bench_pipeline.model.source import load_model, make_inputs


def compute_reference(model_info: dict, cells: list[Cell], device: torch.device, seed: int) -> dict[str, np.ndarray]:
    """FP32, TF32 off (``devices.configure_torch``), on the benchmark device; keys ``bB_sS/<output>``."""
    module = load_model(model_info["path"], "fp32", device,
                        trust_remote_code=model_info.get("trust_remote_code", False))
    reference: dict[str, np.ndarray] = {}
    for cell in cells:
        inputs = {k: v.to(device) for k, v in make_inputs(model_info["path"], cell.batch, cell.seq, seed).items()}
        runner = TorchRunner(module, inputs)
        runner.run()
        for name, value in runner.outputs().items():
            if name == "pooler_output" and not model_info.get("has_pooler"):
                continue  # a pooler with no trained weights is noise, nothing to compare
            reference[f"{cell_name(cell.batch, cell.seq)}/{name}"] = value
    del module
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return reference

"""Hugging Face PyTorch in eager mode: the baseline every speedup is measured against."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from bench_pipeline.backends.base import Backend, BackendContext, Cell, CellFailure, CellRunner, Session
from bench_pipeline.harness.status import Status
from bench_pipeline.model.source import load_model, precision_unsupported


class TorchRunner(CellRunner):
    """Calls a torch module with keyword inputs already on its device; no host copies timed."""

    def __init__(self, module: torch.nn.Module, inputs: dict[str, torch.Tensor]):
        self.module = module
        self.inputs = inputs
        self._outputs: Any = None

    def run(self) -> None:
        with torch.inference_mode():
            self._outputs = self.module(**self.inputs)

    def outputs(self) -> dict[str, np.ndarray]:
        return {
            name: getattr(self._outputs, name).float().cpu().numpy()
            for name in ("last_hidden_state", "pooler_output")
            if getattr(self._outputs, name, None) is not None
        }


class TorchSession(Session):
    def __init__(self, module: torch.nn.Module, device: torch.device, setup_s: float, extra: dict[str, Any]):
        self.module = module
        self.device = device
        self.setup_s = setup_s
        self.costs = {}
        self.extra = extra
        self.resident_bytes = module_bytes(module)

    def prepare(self, inputs: dict[str, torch.Tensor], cell: Cell) -> CellRunner:
        return TorchRunner(self.module, {k: v.to(self.device) for k, v in inputs.items()})

    def close(self) -> None:
        self.module = None


def module_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def check_precision(ctx: BackendContext, precision: str) -> None:
    reason = precision_unsupported(ctx.device, precision)
    if reason:
        raise CellFailure(Status.UNSUPPORTED, reason)


def open_torch_model(ctx: BackendContext, precision: str, options: dict[str, Any]) -> tuple[torch.nn.Module, float]:
    """Load the model for a torch backend, or say why this precision cannot run on this device."""
    check_precision(ctx, precision)
    started = time.perf_counter()
    module = load_model(
        ctx.model_dir,
        precision,
        ctx.device,
        attn_implementation=options.get("attn_implementation"),
        trust_remote_code=ctx.model_info.get("trust_remote_code", False),
    )
    return module, time.perf_counter() - started


class EagerBackend(Backend):
    name = "eager"

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        check_precision(ctx, precision)

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        module, setup_s = open_torch_model(ctx, precision, options)
        attention = getattr(module.config, "_attn_implementation", None)
        return TorchSession(module, ctx.device, setup_s, {"attn_implementation": attention})

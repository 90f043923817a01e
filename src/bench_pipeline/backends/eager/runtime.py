"""Hugging Face PyTorch in eager mode: the baseline every speedup is measured against."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from bench_pipeline.backends.base import Backend, BackendContext, Cell, CellFailure, CellRunner, Session
from bench_pipeline.backends.eager.precision import INT8_CUDA, quantize, use_matmul_precision
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
    def __init__(
        self, module: torch.nn.Module, device: torch.device, setup_s: float, extra: dict[str, Any],
        costs: dict[str, float] | None = None,
    ):
        self.module = module
        self.device = device
        self.setup_s = setup_s
        self.costs = costs or {}
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


def open_torch_model(
    ctx: BackendContext, precision: str, options: dict[str, Any]
) -> tuple[torch.nn.Module, float, dict[str, Any]]:
    """Load the model for a torch backend in this unit's worker, with the precision's matmul mode (TF32 or
    strict) and quantization: (module, load seconds, quantization facts: ``quantize_s``, ``quantization``).
    Or say why this precision cannot run on this device."""
    check_precision(ctx, precision)
    use_matmul_precision(precision)
    started = time.perf_counter()
    module = load_model(
        ctx.model_dir,
        precision,
        ctx.device,
        attn_implementation=options.get("attn_implementation"),
        trust_remote_code=ctx.model_info.get("trust_remote_code", False),
    )
    load_s = time.perf_counter() - started
    module, quantized = quantize(module, precision, ctx.device)
    return module, load_s, quantized


class EagerBackend(Backend):
    name = "eager"

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        check_precision(ctx, precision)
        if precision == "int8" and ctx.device.type != "cpu":
            raise CellFailure(Status.UNSUPPORTED, INT8_CUDA)

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        module, setup_s, quantized = open_torch_model(ctx, precision, options)
        attention = getattr(module.config, "_attn_implementation", None)
        costs = {"quantize_s": quantized["quantize_s"]} if quantized else {}
        extra = {"attn_implementation": attention, "quantization": quantized.get("quantization"),
                 "tf32": precision == "tf32"}
        return TorchSession(module, ctx.device, setup_s, extra, costs)

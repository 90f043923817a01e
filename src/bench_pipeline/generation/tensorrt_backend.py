"""TensorRT for generation: not built here. A decoder with a KV cache needs TensorRT-LLM (its own model
definitions and engine builder) or a hand-built engine with cache I/O and two profiles (prefill, decode);
neither is part of this project yet, so every cell is ``skipped`` with that reason, never silently absent."""

from __future__ import annotations

from typing import Any

from bench_pipeline.backends.base import Backend, BackendContext, CellFailure, Session
from bench_pipeline.harness.status import Status

REASON = ("TensorRT generation is not built in this project: a KV-cache decoder needs TensorRT-LLM or an engine "
          "with cache inputs/outputs and prefill/decode profiles (not done yet)")


class TensorRTGenerateBackend(Backend):
    name = "tensorrt"

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        raise CellFailure(Status.SKIPPED, REASON)

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        raise CellFailure(Status.SKIPPED, REASON)

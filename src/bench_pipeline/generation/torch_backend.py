"""Greedy generation with Hugging Face ``generate`` in PyTorch: eager on the dynamic cache (the baseline),
eager on the static cache, and ``torch.compile`` on the static cache (Hugging Face's own recipe).

HF's ``generate`` is the loop a user runs; a logits processor that changes nothing stamps each step
(``steps.StepClock``). HF compiles the forward by itself on a GPU whenever the cache is static:
``disable_compile`` keeps the eager static-cache variant eager, and the compiled variant hands HF a
``CompileConfig``, so HF compiles the decode step and runs the prefill eagerly, as its users get it.
(Compiling ``model.forward`` ourselves also compiled the prefill and, under CUDA graphs, broke on the
H200: HF's wrapper read the prefill's output after a decode replay had overwritten it.) Dynamo's own
counters give the graph breaks and recompiles either way.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from bench_pipeline.backends.base import Backend, BackendContext, Cell, CellFailure, CellRunner, Session
from bench_pipeline.generation.model import load_causal_lm, prompt_ids
from bench_pipeline.generation.parity import token_parity
from bench_pipeline.generation.steps import GenerationLog, StepClock
from bench_pipeline.harness.status import Status
from bench_pipeline.model.source import precision_unsupported


class _Stamp:
    """A logits processor that leaves the scores alone: it stamps the step and can keep step 1's logits."""

    def __init__(self, clock: StepClock):
        self.clock = clock
        self.keep_logits = False
        self.first_logits: np.ndarray | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.keep_logits and self.first_logits is None:
            self.first_logits = scores.float().cpu().numpy()
        self.clock.stamp()
        return scores


class TorchGenerateRunner(CellRunner):
    #: the loop synchronizes each step (HF's stopping check), so the dispatch-share probe would not queue it
    syncs_inside = True

    def __init__(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], new_tokens: int, static: bool,
                 device: torch.device, compile_config: Any = None):
        from transformers import GenerationConfig, LogitsProcessorList

        self.model = model
        self.inputs = inputs
        self.prompt_length = inputs["input_ids"].shape[1]
        self.clock = StepClock(device, new_tokens)
        self.stamp = _Stamp(self.clock)
        self.processors = LogitsProcessorList([self.stamp])
        # EOS ignored (none set, min = max): every backend generates exactly new_tokens tokens
        self.config = GenerationConfig(
            max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=None,
            pad_token_id=0, cache_implementation="static" if static else None,
            disable_compile=compile_config is None, compile_config=compile_config,
        )
        self.log = GenerationLog()
        self.tokens: torch.Tensor | None = None

    def run(self) -> None:
        self.clock.start()
        with torch.inference_mode():
            out = self.model.generate(**self.inputs, generation_config=self.config, logits_processor=self.processors)
        self.tokens = out[:, self.prompt_length:]
        self.log.add(self.clock.offsets_ms())

    def round_steps(self, timed_calls: int) -> dict[str, Any]:
        return self.log.last(timed_calls)

    def outputs(self) -> dict[str, np.ndarray]:
        """The generated ids of one generation and step 1's logits (one extra, untimed generation)."""
        self.stamp.keep_logits, self.stamp.first_logits = True, None
        try:
            self.run()
        finally:
            self.stamp.keep_logits = False
        self.log.calls.pop()
        return {"token_ids": self.tokens.cpu().numpy(), "step1_logits": self.stamp.first_logits}

    def check_parity(self, reference: dict[str, np.ndarray], precision: str, tolerance: Any):
        return token_parity(self.outputs(), reference, precision, tolerance)


class TorchGenerateSession(Session):
    def __init__(self, model: torch.nn.Module, ctx: BackendContext, new_tokens: int, static: bool, setup_s: float,
                 extra: dict[str, Any], compile_config: Any = None):
        self.model = model
        self.device = ctx.device
        self.vocab_size = ctx.model_info["vocab_size"]
        self.new_tokens = new_tokens
        self.static = static
        self.compile_config = compile_config
        self.setup_s = setup_s
        self.costs = {}
        self.extra = extra
        self.resident_bytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
        self._cell_costs: dict[Cell, dict[str, float]] = {}

    def make_inputs(self, cell: Cell, seed: int) -> dict[str, torch.Tensor]:
        return prompt_ids(self.vocab_size, cell.batch, cell.seq, seed)

    def prepare(self, inputs: dict[str, torch.Tensor], cell: Cell) -> CellRunner:
        runner = TorchGenerateRunner(self.model, {k: v.to(self.device) for k, v in inputs.items()}, self.new_tokens,
                                     self.static, self.device, self.compile_config)
        if self.compile_config is not None:  # the first generation of a shape compiles: a cost, never timed
            from torch._dynamo.utils import counters

            before = _dynamo_counts(counters)
            started = time.perf_counter()
            runner.run()
            after = _dynamo_counts(counters)
            runner.log.calls.clear()
            self._cell_costs[cell] = {
                "compile_s": time.perf_counter() - started,
                "graph_breaks": after["graph_breaks"] - before["graph_breaks"],
                "recompiles": after["graphs"] - before["graphs"],
            }
        return runner

    def cell_costs(self, cell: Cell) -> dict[str, float]:
        return self._cell_costs.get(cell, {})

    def close(self) -> None:
        self.model = None


def _dynamo_counts(counters: Any) -> dict[str, int]:
    """Graph breaks and graphs compiled so far in this process (dynamo's own counters)."""
    return {"graph_breaks": sum(counters["graph_break"].values()),
            "graphs": counters["stats"].get("unique_graphs", 0)}


def _check_precision(ctx: BackendContext, precision: str) -> None:
    reason = precision_unsupported(ctx.device, precision)
    if reason:
        raise CellFailure(Status.UNSUPPORTED, reason)


def _load(ctx: BackendContext, precision: str) -> tuple[torch.nn.Module, float]:
    _check_precision(ctx, precision)
    started = time.perf_counter()
    model = load_causal_lm(ctx.model_dir, precision, ctx.device,
                           trust_remote_code=ctx.model_info.get("trust_remote_code", False))
    return model, time.perf_counter() - started


class EagerGenerateBackend(Backend):
    """Eager PyTorch: ``cache: dynamic`` (default, the baseline) or ``cache: static``."""

    name = "eager"

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        _check_precision(ctx, precision)

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        model, setup_s = _load(ctx, precision)
        cache = options.get("cache", "dynamic")
        return TorchGenerateSession(model, ctx, ctx.new_tokens, cache == "static", setup_s,
                                    {"kv_cache": f"{cache} (HF generate)"})


class CompiledGenerateBackend(Backend):
    """``torch.compile`` of the decode step on the static cache, by HF's ``generate`` (``CompileConfig``);
    ``mode: reduce-overhead`` is CUDA graphs, which only a GPU has: on CPU that variant runs in the
    default mode and its row says so."""

    name = "dynamo"

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        _check_precision(ctx, precision)

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        model, setup_s = _load(ctx, precision)
        mode = options.get("mode", "reduce-overhead" if ctx.device.type == "cuda" else "default")
        from transformers import CompileConfig

        extra = {"kv_cache": "static (HF generate)", "compile_backend": options.get("backend", "inductor"),
                 "compiled": "decode step (HF generate: the prefill runs eager)"}
        if mode == "reduce-overhead" and ctx.device.type != "cuda":
            extra["compile_note"] = "mode reduce-overhead (CUDA graphs) needs a GPU: compiled in the default mode"
            mode = "default"
        extra["compile_mode"] = mode
        compile_config = CompileConfig(backend=options.get("backend", "inductor"), mode=mode,
                                       fullgraph=options.get("fullgraph", False))
        if ctx.device.type != "cuda":  # HF auto-compiles on accelerators only; this flag is its switch for the rest
            compile_config._compile_all_devices = True
        return TorchGenerateSession(model, ctx, ctx.new_tokens, True, setup_s, extra, compile_config)

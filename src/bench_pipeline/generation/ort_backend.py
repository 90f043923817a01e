"""Greedy generation in ONNX Runtime: with the KV cache (past key/values in and out through IO binding,
so the cache stays where the provider keeps it between steps), or without one (the whole sequence every
step). Both loops are ours, step for step the same as HF's greedy loop: forward, argmax, append.

FP32 and FP16 graphs (``onnx_export``); the FP16 one has FP16 past/present/logits I/O, so the cache is FP16 from
the empty past of the prefill on and never cast between steps."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from bench_pipeline.backends.base import Backend, BackendContext, Cell, CellFailure, CellRunner, Session
from bench_pipeline.generation.model import eos_ids, prompt_ids
from bench_pipeline.generation.onnx_export import cache_names, exported_or_failed
from bench_pipeline.generation.parity import token_parity
from bench_pipeline.generation.steps import GenerationLog, StepClock
from bench_pipeline.harness.status import Status

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
BF16_REASON = ("bf16: no BF16 generation graph: ONNX Runtime's converter (onnxruntime.transformers.float16) writes "
               "FP16 only, and its CUDA EP has BF16 kernels for few of a decoder's ops; FP16 and FP32 run here")
#: ONNX Runtime's CPU EP has FP16 kernels for few ops: it runs the others in FP32 behind casts it inserts itself
CPU_FP16_NOTE = "CPU EP: nodes without an FP16 kernel run in FP32 behind casts ONNX Runtime inserts"


class _OrtRunner(CellRunner):
    syncs_inside = True  # every step reads the logits back to pick the next token

    def __init__(self, session: Any, inputs: dict[str, torch.Tensor], new_tokens: int, device: str,
                 eos: list[int]):
        self.session = session
        self.eos = eos
        self.ids = inputs["input_ids"].numpy()
        self.batch, self.prompt_length = self.ids.shape
        self.new_tokens = new_tokens
        self.device = device
        self.mask = np.ones((self.batch, self.prompt_length + new_tokens), dtype=np.int64)
        self.clock = StepClock(torch.device("cpu"), new_tokens)  # the host clock: each step ends on the host
        self.log = GenerationLog()
        self.tokens = np.zeros((self.batch, new_tokens), dtype=np.int64)
        self.keep_logits = False
        self.first_logits: np.ndarray | None = None

    def _picked(self, step: int, logits: np.ndarray) -> np.ndarray:
        logits[:, self.eos] = -np.inf  # EOS ignored, as HF's min_new_tokens does it
        if step == 0 and self.keep_logits:
            self.first_logits = logits.astype(np.float32)
        chosen = logits.argmax(axis=-1)
        self.tokens[:, step] = chosen
        self.clock.stamp()
        return chosen

    def round_steps(self, timed_calls: int) -> dict[str, Any]:
        return self.log.last(timed_calls)

    def outputs(self) -> dict[str, np.ndarray]:
        self.keep_logits, self.first_logits = True, None
        try:
            self.run()
        finally:
            self.keep_logits = False
        self.log.calls.pop()
        return {"token_ids": self.tokens.copy(), "step1_logits": self.first_logits}

    def check_parity(self, reference: dict[str, np.ndarray], precision: str, tolerance: Any):
        return token_parity(self.outputs(), reference, precision, tolerance)


class CachedOrtRunner(_OrtRunner):
    def __init__(self, session: Any, inputs: dict[str, torch.Tensor], new_tokens: int, device: str,
                 eos: list[int], layout: dict[str, Any]):
        import onnxruntime as ort

        super().__init__(session, inputs, new_tokens, device, eos)
        self.ort = ort
        self.past_names, self.present_names = cache_names(layout["layers"])
        # the graph's own cache type (FP16 for the FP16 graph): the prefill's empty past is bound as it is
        dtype = _NUMPY_TYPES[next(i.type for i in session.get_inputs() if i.name == self.past_names[0])]
        empty = np.zeros((self.batch, layout["kv_heads"], 0, layout["head_dim"]), dtype=dtype)
        self.empty_past = [ort.OrtValue.ortvalue_from_numpy(empty, device, 0) for _ in self.past_names]
        self.masks = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(self.mask[:, :n]), device, 0)
                      for n in range(self.prompt_length, self.prompt_length + new_tokens)]
        self.prompt = ort.OrtValue.ortvalue_from_numpy(self.ids, device, 0)

    def run(self) -> None:
        ortvalue = self.ort.OrtValue.ortvalue_from_numpy
        binding = self.session.io_binding()
        past, current = self.empty_past, self.prompt
        self.clock.start()
        for step in range(self.new_tokens):
            binding.bind_ortvalue_input("input_ids", current)
            binding.bind_ortvalue_input("attention_mask", self.masks[step])
            for name, value in zip(self.past_names, past):
                binding.bind_ortvalue_input(name, value)
            for name in ("logits", *self.present_names):
                binding.bind_output(name, self.device, 0)  # the provider allocates: presents stay on its device
            self.session.run_with_iobinding(binding)
            outputs = binding.get_outputs()
            chosen = self._picked(step, outputs[0].numpy())
            past = outputs[1:]
            current = ortvalue(chosen[:, None].astype(np.int64), self.device, 0)
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
        self.log.add(self.clock.offsets_ms())


class NoCacheOrtRunner(_OrtRunner):
    def run(self) -> None:
        sequence = np.concatenate([self.ids, np.zeros((self.batch, self.new_tokens), dtype=np.int64)], axis=1)
        self.clock.start()
        for step in range(self.new_tokens):
            total = self.prompt_length + step
            logits = self.session.run(["logits"], {"input_ids": sequence[:, :total],
                                                   "attention_mask": self.mask[:, :total]})[0]
            sequence[:, total] = self._picked(step, logits)
        self.log.add(self.clock.offsets_ms())


class OrtGenerateSession(Session):
    uses_torch_allocator = False

    def __init__(self, session: Any, ctx: BackendContext, record: dict[str, Any], with_cache: bool, device: str,
                 setup_s: float, precision: str):
        self.session = session
        self.record = record
        self.with_cache = with_cache
        self.ort_device = device
        self.device = ctx.device if device == "cuda" else torch.device("cpu")
        self.vocab_size = ctx.model_info["vocab_size"]
        self.new_tokens = ctx.new_tokens
        self.eos = eos_ids(ctx.model_dir)
        self.setup_s = setup_s
        self.costs = {"export_s": record["export_s"]}
        self.extra = {"kv_cache": "past key/values as graph I/O, IO binding" if with_cache else
                      "none: the whole sequence every step", "onnx_cached": record["cached"],
                      "onnx_size_bytes": record["size_bytes"], "providers": session.get_providers()}
        if precision == "fp16":
            self.extra["onnx_precision"] = ("fp16: ONNX Runtime's float16 conversion of the FP32 export; "
                                            "past/present and logits FP16 graph I/O")
            if device == "cpu":
                self.extra["precision_note"] = CPU_FP16_NOTE

    def make_inputs(self, cell: Cell, seed: int) -> dict[str, torch.Tensor]:
        return prompt_ids(self.vocab_size, cell.batch, cell.seq, seed)

    def prepare(self, inputs: dict[str, torch.Tensor], cell: Cell) -> CellRunner:
        if self.with_cache:
            return CachedOrtRunner(self.session, inputs, self.new_tokens, self.ort_device, self.eos, self.record)
        return NoCacheOrtRunner(self.session, inputs, self.new_tokens, self.ort_device, self.eos)

    def close(self) -> None:
        self.session = None


class OrtGenerateBackend(Backend):
    """``provider: cpu | cuda``, ``cache: true`` (default) or ``false``; FP32 and FP16 graphs."""

    name = "onnxruntime"

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        import onnxruntime as ort

        if precision == "bf16":
            raise CellFailure(Status.UNSUPPORTED, BF16_REASON)
        provider = _PROVIDERS[options.get("provider", "cpu")]
        if provider not in ort.get_available_providers():
            raise CellFailure(Status.SKIPPED, f"{provider} is not available in this onnxruntime "
                              f"({ort.__version__}: {ort.get_available_providers()})")

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        import onnxruntime as ort

        self.precheck(ctx, variant, precision, options)
        with_cache = options.get("cache", True)
        record = exported_or_failed(ctx, with_cache, precision)
        started = time.perf_counter()
        settings = ort.SessionOptions()
        settings.intra_op_num_threads = ctx.threads
        settings.inter_op_num_threads = 1
        device = options.get("provider", "cpu")
        session = ort.InferenceSession(record["path"], settings, providers=[_PROVIDERS[device]])
        return OrtGenerateSession(session, ctx, record, with_cache, device, time.perf_counter() - started, precision)

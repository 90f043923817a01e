"""TensorRT for generation: the decoder's KV-cache graph built into an engine wherever a TensorRT library is here;
every cell ``skipped`` with the reason and the build's real costs, never a made-up latency.

The engine is built from the with-cache ONNX graph that ONNX Runtime runs (``onnx_export``: ``input_ids``
[batch, new], ``attention_mask`` [batch, past + new], ``past.<layer>.key/value`` [batch, heads, past, head dim] in;
logits and presents out), FP32 or FP16, with one optimization profile that covers the grid's prefill (new = the
prompt, an empty past) and every decode step (one new token on a past of up to prompt + new tokens - 2). TensorRT-RTX
builds it on a machine without a GPU too, for a compute capability it can run on.

No engine is run. The machines this project is measured on cannot run one: CI has no GPU, the H200 is Hopper, which
TensorRT-RTX refuses, and full TensorRT is not on PyPI. A TensorRT decode loop could therefore never have been
tested, so there is none; where an engine could run, the row says that instead.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench_pipeline.backends.base import Backend, BackendContext, Cell, CellFailure, Session
from bench_pipeline.backends.tensorrt.build import (
    DEFAULT_CC,
    EngineError,
    Flavour,
    build_engine,
    detect_flavour,
    engine_mismatch,
    local_gpu,
    resolve_target,
)
from bench_pipeline.generation.onnx_export import GRAPH_PRECISIONS, cache_names, export_generation_onnx
from bench_pipeline.harness.status import Status

NO_DECODE_LOOP = ("the engine is built and this GPU could run it, but this project has no TensorRT decode loop: "
                  "none of the machines it is tested on can run a TensorRT engine, so one could not be checked")


def decoder_profile(cells: list[Cell], new_tokens: int, layout: dict[str, Any]) -> dict[str, Any]:
    """Shapes of every engine input over the grid (``cell.seq`` is the prompt length), tuned (``opt``) for one
    decode step halfway through the median prompt's generation, the call a generation makes most often."""
    batches = sorted({c.batch for c in cells})
    prompts = sorted({c.seq for c in cells})
    longest_past = max(0, prompts[-1] + new_tokens - 2)  # the last decode step's past
    typical_past = min(statistics.median_high(prompts) + new_tokens // 2, longest_past)
    low, typical, high = batches[0], statistics.median_high(batches), batches[-1]
    heads, head_dim = layout["kv_heads"], layout["head_dim"]
    cache = {"min": [low, heads, 0, head_dim], "opt": [typical, heads, typical_past, head_dim],
             "max": [high, heads, longest_past, head_dim]}
    past_names, _ = cache_names(layout["layers"])
    return {"inputs": {
        "input_ids": {"min": [low, 1], "opt": [typical, 1], "max": [high, prompts[-1]]},
        "attention_mask": {"min": [low, prompts[0]], "opt": [typical, typical_past + 1],
                           "max": [high, longest_past + 1]},
        **{name: cache for name in past_names},
    }}


def describe_decoder_profile(profile: dict[str, Any]) -> str:
    ids, cache = profile["inputs"]["input_ids"], profile["inputs"]["past.0.key"]
    return (f"batch {ids['min'][0]}..{ids['max'][0]} x new tokens {ids['min'][1]}..{ids['max'][1]} x past "
            f"{cache['min'][2]}..{cache['max'][2]}, tuned for batch {ids['opt'][0]}, one token on a past of "
            f"{cache['opt'][2]}")


class TensorRTGenerateBackend(Backend):
    """FP32 and FP16 engines of the with-cache decoder graph, built and recorded, not run (module docstring)."""

    name = "tensorrt"

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        self._flavour(precision)

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        flavour = self._flavour(precision)
        graph = export_generation_onnx(ctx.model_dir, ctx.model_info["weights_sha256"], ctx.workdir, True, precision)
        costs = {"export_s": graph["export_s"]}
        gpu = local_gpu(ctx.device) if ctx.device.type == "cuda" else None
        profile = decoder_profile(ctx.cells, ctx.new_tokens, graph)
        try:
            target, note = resolve_target(flavour, "auto", DEFAULT_CC, gpu)
            engine = build_engine(graph["path"], ctx.workdir / "engines", precision=precision, profile=profile,
                                  target_cc=target, flavour=flavour, device_name=gpu[1] if gpu else None)
        except EngineError as error:  # the export's cost is still a result
            raise CellFailure(error.status, error.reason, costs=costs) from error
        extra = {"flavour": flavour.label, "target_cc": target, "engine_bytes": engine["engine_bytes"],
                 "build_cache_hit": engine["cache_hit"], "profiles": [describe_decoder_profile(profile)],
                 "build_note": note, "kv_cache": "past key/values as engine inputs and outputs"}
        reason = engine_mismatch(engine, flavour, gpu) or NO_DECODE_LOOP
        raise CellFailure(Status.SKIPPED, reason, costs=costs | {"build_s": engine["build_s"]}, extra=extra)

    @staticmethod
    def _flavour(precision: str) -> Flavour:
        if precision not in GRAPH_PRECISIONS:
            raise CellFailure(Status.UNSUPPORTED, f"{precision}: no {precision} generation graph to build an engine "
                              f"from; allowed: {list(GRAPH_PRECISIONS)}")
        flavour, missing = detect_flavour()
        if flavour is None:
            raise CellFailure(Status.SKIPPED, missing)
        return flavour

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

from bench_pipeline.backends.base import Backend, BackendContext, Cell, CellFailure, Session, is_out_of_memory
from bench_pipeline.backends.tensorrt.build import (
    EngineError,
    Flavour,
    build_engine,
    building_on,
    detect_flavour,
    engine_mismatch,
    local_gpu,
    not_on_a_gpu,
    resolve_target,
)
from bench_pipeline.generation.onnx_export import GRAPH_PRECISIONS, cache_names, exported_or_failed
from bench_pipeline.harness.status import Status

NO_DECODE_LOOP = ("the engine is built and this GPU could run it, but this project has no TensorRT decode loop: "
                  "none of the machines it is tested on can run a TensorRT engine, so one could not be checked")


def decoder_profile(cells: list[Cell], new_tokens: int, layout: dict[str, Any]) -> dict[str, Any]:
    """Shapes of every engine input over the grid (``cell.seq`` is the prompt length), tuned (``opt``) for the
    call a generation makes most often: one decode step halfway through the median prompt's generation (the
    prefill where a generation is one token)."""
    batches = sorted({c.batch for c in cells})
    prompts = sorted({c.seq for c in cells})
    low, typical, high = batches[0], statistics.median_high(batches), batches[-1]
    longest_past = prompts[-1] + new_tokens - 2 if new_tokens > 1 else 0  # the last decode step's past
    if new_tokens > 1:
        typical_past, typical_new = statistics.median_high(prompts) + new_tokens // 2 - 1, 1
    else:
        typical_past, typical_new = 0, statistics.median_high(prompts)
    heads, head_dim = layout["kv_heads"], layout["head_dim"]
    cache = {"min": [low, heads, 0, head_dim], "opt": [typical, heads, typical_past, head_dim],
             "max": [high, heads, longest_past, head_dim]}
    past_names, _ = cache_names(layout["layers"])
    return {"inputs": {
        "input_ids": {"min": [low, 1], "opt": [typical, typical_new], "max": [high, prompts[-1]]},
        "attention_mask": {"min": [low, prompts[0]], "opt": [typical, typical_past + typical_new],
                           "max": [high, max(prompts[-1], longest_past + 1)]},
        **{name: cache for name in past_names},
    }}


def describe_decoder_profile(profile: dict[str, Any]) -> str:
    """The profile in a row's words: the ranges it covers and the call it is tuned for."""
    ids, cache = profile["inputs"]["input_ids"], profile["inputs"]["past.0.key"]
    return (f"batch {ids['min'][0]}..{ids['max'][0]} x new tokens {ids['min'][1]}..{ids['max'][1]} x past "
            f"{cache['min'][2]}..{cache['max'][2]}, tuned for batch {ids['opt'][0]}, {ids['opt'][1]} new token(s) "
            f"on a past of {cache['opt'][2]}")


class TensorRTGenerateBackend(Backend):
    """FP32 and FP16 engines of the with-cache decoder graph, built as ``tensorrt_build:`` says (flavour, target,
    workspace, engine folder; the forward stage's parameters) and recorded, not run (module docstring)."""

    name = "tensorrt"

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        self._flavour(ctx, precision)

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        flavour = self._flavour(ctx, precision)
        spec = ctx.tensorrt_build
        graph = exported_or_failed(ctx, True, precision)
        profile = decoder_profile(ctx.cells, ctx.new_tokens, graph)
        costs = {"export_s": graph["export_s"]}
        extra = {"flavour": flavour.label, "profiles": [describe_decoder_profile(profile)],
                 "onnx_cached": graph["cached"], "kv_cache": "past key/values as engine inputs and outputs"}
        gpu = local_gpu(ctx.device if ctx.device.type == "cuda" else None)  # as the forward stage builds
        try:
            target, note = resolve_target(flavour, spec.target_compute_capability, spec.default_compute_capability,
                                          gpu)
            extra |= {"target_cc": target, "build_note": note}
            with building_on(ctx.device):
                engine = build_engine(graph["path"], spec.engine_dir, precision=precision, profile=profile,
                                      target_cc=target, flavour=flavour, timing_cache_dir=spec.timing_cache_dir,
                                      workspace_mb=spec.workspace_mb, device_name=gpu[1] if gpu else None)
        except EngineError as error:  # what was measured before the failure stays in the rows
            raise CellFailure(error.status, error.reason, costs=costs, extra=extra) from error
        except Exception as error:  # noqa: BLE001 - a native library failing is the cell's fail_build (or oom)
            status = Status.OOM if is_out_of_memory(error) else Status.FAIL_BUILD
            raise CellFailure(status, f"{type(error).__name__}: {error}", costs, extra) from error
        extra |= {"engine_bytes": engine["engine_bytes"], "build_cache_hit": engine["cache_hit"]}
        if ctx.device.type != "cuda":
            reason = not_on_a_gpu(ctx.device, flavour.label, target)
        else:
            reason = engine_mismatch(engine, flavour, gpu) or NO_DECODE_LOOP
        raise CellFailure(Status.SKIPPED, reason, costs=costs | {"build_s": engine["build_s"]}, extra=extra)

    @staticmethod
    def _flavour(ctx: BackendContext, precision: str) -> Flavour:
        if getattr(ctx, "tensorrt_build", None) is None:
            raise CellFailure(Status.ERROR, "no tensorrt_build parameters reached this generation context "
                              "(generation.plan.plan_generation passes them)")
        if precision not in GRAPH_PRECISIONS:
            raise CellFailure(Status.UNSUPPORTED, f"{precision}: no {precision} generation graph to build an engine "
                              f"from; allowed: {list(GRAPH_PRECISIONS)}")
        flavour, missing = detect_flavour(ctx.tensorrt_build.flavour)
        if flavour is None:
            raise CellFailure(Status.SKIPPED, missing)
        return flavour

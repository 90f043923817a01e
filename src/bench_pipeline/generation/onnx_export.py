"""A causal LM to ONNX for generation, with its KV cache as graph inputs and outputs, or without one.

``with_cache``: inputs ``input_ids``, ``attention_mask`` and ``past.<layer>.key/value``; outputs the last
position's ``logits`` and ``present.<layer>.key/value``. One graph serves prefill (a past of length 0)
and every decode step (a past of the tokens so far). ``no_cache``: ``input_ids`` and ``attention_mask``
to ``logits`` only: the whole sequence again at every step, the way a traced, static graph without a
cache generates (the seed study's point).

The TorchScript exporter traces keyword calls under ``torch.no_grad``: with transformers 5 a positional
call binds the cache to the wrong parameter. FP16 is that FP32 graph through ONNX Runtime's float16
converter, as the forward scenario builds its FP16 graph (``backends/onnxruntime/optimize.py``), but with
FP16 graph I/O: ``past``/``present`` stay FP16 on the provider's device from one step to the next (IO binding
never casts a cache), and ``logits`` are FP16 as HF's FP16 eager model returns them, so both FP16 paths
pick from the same rounded numbers and each step copies half the bytes to the host. ``input_ids`` and
``attention_mask`` stay int64. Graphs are cached by the weights' digest, kind, precision, recipe and the
library versions every export key holds (``backends/onnx/export.library_versions``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from bench_pipeline.backends.base import CellFailure
from bench_pipeline.backends.onnx.export import cached_artifact, library_versions
from bench_pipeline.backends.onnxruntime.optimize import onnx_bytes, save_onnx_model
from bench_pipeline.generation.model import load_causal_lm
from bench_pipeline.harness.status import Status
from bench_pipeline.system.files import json_sha256

RECIPE = 1  # bump when the export changes, so cached graphs stop matching


class _WithCache(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, layers: int):
        super().__init__()
        self.model = model
        self.layers = layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for layer in range(self.layers):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=True)
        presents = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
        return (out.logits[:, -1, :], *presents)


class _NoCache(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, -1, :]


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    return past, [name.replace("past.", "present.") for name in past]


def kv_layout(model: torch.nn.Module) -> tuple[int, int, int]:
    """(layers, cache heads, head dim), read from a real forward's cache (GQA, MQA and GPT-2 alike)."""
    with torch.no_grad():
        ids = torch.ones(1, 2, dtype=torch.int64)
        cache = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True).past_key_values
    _, heads, _, head_dim = cache.layers[0].keys.shape
    return len(cache.layers), int(heads), int(head_dim)


#: the precisions a generation graph is built in; BF16 has no converter in ONNX Runtime (its float16 module
#: writes FP16 only) and few BF16 kernels in its CUDA EP
GRAPH_PRECISIONS = ("fp32", "fp16")


def export_generation_onnx(model_dir: str | Path, weights_sha256: str, out_dir: Path, with_cache: bool,
                           precision: str = "fp32", opset: int = 17) -> dict[str, Any]:
    """The graph's path and facts (``export_s``, ``cached``, layout); built once per weights, kind, precision
    and recipe, in the export stage's verified cache (a lock, files moved into place whole, hashes checked on
    reuse): the backends' workers open at the same time and share ``out_dir``. ``export_s`` of an FP16 graph is
    what it cost: the FP32 export and the conversion."""
    if precision not in GRAPH_PRECISIONS:
        raise ValueError(f"precision {precision!r} has no generation ONNX graph; allowed: {list(GRAPH_PRECISIONS)}")
    kind = "with-cache" if with_cache else "no-cache"
    key = json_sha256({"weights": weights_sha256, "kind": kind, "precision": precision, "opset": opset,
                       "recipe": RECIPE, "versions": library_versions()})[:16]
    path = Path(out_dir) / f"decoder-{kind}-{precision}-{key}.onnx"
    if precision == "fp16":
        fp32 = export_generation_onnx(model_dir, weights_sha256, out_dir, with_cache, "fp32", opset)
        record = cached_artifact(path, key, lambda tmp: _float16_graph(fp32, tmp), elapsed_as="float16_convert_s")
        record["export_s"] = fp32["export_s"] + record["float16_convert_s"]
        record["cached"] = record["cached"] and fp32["cached"]  # cached only if nothing was exported now
    else:
        record = cached_artifact(path, key, lambda tmp: _fp32_graph(model_dir, tmp, with_cache, opset),
                                 elapsed_as="export_s")
    return record | {"kind": kind, "precision": precision, "opset": opset}


def exported_or_failed(ctx: Any, with_cache: bool, precision: str) -> dict[str, Any]:
    """``export_generation_onnx`` for a backend's ``open``: a graph that cannot be made is the unit's
    ``fail_export`` (with the exporter's words), not an ``error``."""
    try:
        return export_generation_onnx(ctx.model_dir, ctx.model_info["weights_sha256"], ctx.workdir, with_cache,
                                      precision)
    except Exception as error:  # noqa: BLE001 - the exporter and the converter raise many kinds
        raise CellFailure(Status.FAIL_EXPORT, f"decoder ONNX export ({'with' if with_cache else 'no'} cache, "
                          f"{precision}): {type(error).__name__}: {error}") from error


def _float16_graph(fp32: dict[str, Any], path: Path) -> dict[str, Any]:
    """ONNX Runtime's FP16 conversion of the FP32 graph, every float graph input and output FP16 too."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    source = Path(fp32["path"])
    save_onnx_model(OnnxModel(onnx.load(str(source))), path, onnx_bytes(source), float16=True, keep_io_types=False)
    return {key: fp32[key] for key in ("layers", "kv_heads", "head_dim")} | {"source": str(source)}


def _fp32_graph(model_dir: str | Path, path: Path, with_cache: bool, opset: int) -> dict[str, Any]:
    model = load_causal_lm(model_dir, "fp32", torch.device("cpu"), attn_implementation="eager")
    layers, heads, head_dim = kv_layout(model)
    past_names, present_names = cache_names(layers)
    ids = torch.ones(2, 2, dtype=torch.int64)
    if with_cache:
        past = [torch.zeros(2, heads, 3, head_dim) for _ in past_names]
        module, args = _WithCache(model, layers), (ids, torch.ones(2, 5, dtype=torch.int64), *past)
        inputs, outputs = ["input_ids", "attention_mask", *past_names], ["logits", *present_names]
        axes = {"input_ids": {0: "batch", 1: "new"}, "attention_mask": {0: "batch", 1: "total"},
                **{n: {0: "batch", 2: "past"} for n in past_names},
                **{n: {0: "batch", 2: "total"} for n in present_names}, "logits": {0: "batch"}}
    else:
        module, args = _NoCache(model), (ids, torch.ones_like(ids))
        inputs, outputs = ["input_ids", "attention_mask"], ["logits"]
        axes = {"input_ids": {0: "batch", 1: "total"}, "attention_mask": {0: "batch", 1: "total"},
                "logits": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    return {"layers": layers, "kv_heads": heads, "head_dim": head_dim}

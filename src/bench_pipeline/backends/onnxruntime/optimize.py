"""ONNX Runtime's transformer optimizer: the shared FP32 export to ONNX Runtime's fused graphs (fused FP16, and
fused FP32 for variants with ``fused: true``). ONNX Runtime's own build step, so the export package stays
build-only and free of ONNX Runtime's optimizer; the files share the export's verified cache
(``onnx.export.cached_artifact``) and cache key recipe, so an existing cache is still a hit."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from bench_pipeline.backends.onnx.export import (
    MAX_MESSAGE,
    PROTOBUF_LIMIT,
    RECIPE_VERSION,
    artifact_sha256,
    cached_artifact,
    library_versions,
)
from bench_pipeline.system.files import json_sha256

log = logging.getLogger(__name__)


def optimizer_model_type(hf_model_type: str) -> str:
    """The ``onnxruntime.transformers.optimizer`` model type for a Hugging Face ``model_type``:
    its own where the optimizer has one, else ``bert``, the generic encoder path.

    The ``bert`` fusions match subgraphs, not model names: on DeBERTa-v2 they fuse the
    LayerNorms and Gelus but not the disentangled attention, on ALBERT the attention too. What
    did not match stays as it was, and the fusion counts say how much was fused (zero is an answer).
    """
    from onnxruntime.transformers.optimizer import MODEL_TYPES

    return hf_model_type if hf_model_type in MODEL_TYPES else "bert"


def optimize_onnx(
    in_path: str | Path,
    out_path: str | Path,
    *,
    model_type: str,
    num_heads: int,
    hidden_size: int,
    float16: bool,
    use_gpu: bool,
) -> dict[str, Any]:
    """ONNX Runtime's transformer optimizer (fused Attention, SkipLayerNormalization, BiasGelu,
    EmbedLayerNormalization…), then FP16 conversion with FP32 inputs/outputs when ``float16``.
    Where the optimizer's Python fusions raise on a graph they were not written for, the file
    gets ONNX Runtime's own basic optimizations only (constant folding, the shape arithmetic
    folded away) and the error is kept as ``fusion_error``: an unfused graph is still a graph.

    ``model_type`` is an optimizer type (see ``optimizer_model_type``). ``use_gpu`` runs the
    optimizer's ONNX Runtime pre-pass (basic level: constant folding, cast removal) on the CUDA EP.
    Where no CUDA EP is installed, ORT's optimizer would log an error and skip the pre-pass, so it
    runs on the CPU EP instead: that level is EP-agnostic, and the fusions (done in Python
    afterwards) come out the same — the file built on a GPU machine may only differ by copy nodes.
    Returns ``path, sha256, size_bytes, fusions, fusion_error, optimize_s, float16, use_gpu, cached, key``.
    """
    import onnxruntime
    from onnxruntime.transformers import optimizer

    if model_type not in optimizer.MODEL_TYPES:
        raise ValueError(f"unknown optimizer model_type {model_type!r}; allowed: {sorted(optimizer.MODEL_TYPES)}")
    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise ValueError(f"in_path {str(in_path)!r}: no such ONNX file")
    options = {"model_type": model_type, "num_heads": num_heads, "hidden_size": hidden_size}
    options |= {"float16": float16, "use_gpu": use_gpu}
    source_sha256 = artifact_sha256(in_path)
    prepass_on_gpu = use_gpu and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    key = json_sha256(
        {
            "step": "optimize",
            "recipe": RECIPE_VERSION,
            "input": source_sha256,
            "options": options,
            "prepass_on_gpu": prepass_on_gpu,
            "versions": library_versions(),
        }
    )
    return _optimize_and_store(in_path, out_path, key, options, prepass_on_gpu, source_sha256)


def _optimize_and_store(
    in_path: Path, out_path: Path, key: str, options: dict[str, Any], prepass_on_gpu: bool, source_sha256: str
) -> dict[str, Any]:
    source_bytes = onnx_bytes(in_path)

    def write(tmp_path: Path) -> dict[str, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model, fusion_error = _fused_model(in_path, options, prepass_on_gpu)
            fusions = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
            # FP32 graph inputs/outputs: the caller binds the same buffers for every precision
            save_onnx_model(model, tmp_path, source_bytes, float16=options["float16"], keep_io_types=True)
        return {**options, "fusion_error": fusion_error, "fusions": fusions, "prepass_on_gpu": prepass_on_gpu,
                "source_sha256": source_sha256}

    return cached_artifact(out_path, key, write, elapsed_as="optimize_s")


def onnx_bytes(path: Path) -> int:
    """The size of an ONNX file with its external data (``<name>.data``) if it has one."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + ".data")) if p.is_file())


def save_onnx_model(model: Any, path: Path, source_bytes: int, *, float16: bool,
                    keep_io_types: bool | list[str]) -> None:
    """Save an ``onnxruntime.transformers`` ``OnnxModel``, converted to FP16 first where ``float16``, by ONNX
    Runtime's own converter (symbolic shape inference for the types, its default op block list kept in FP32
    behind casts, the casts it leaves in a row removed). ``keep_io_types``: True keeps every float graph input
    and output FP32 (casts at the edges), False makes them FP16 too, a list keeps just those names FP32.
    The weights go to external data where the file would come near protobuf's 2 GB limit."""
    if float16:
        model.convert_float_to_float16(keep_io_types=keep_io_types)
    expected_bytes = source_bytes // 2 if float16 else source_bytes
    model.save_model_to_file(str(path), use_external_data_format=expected_bytes > PROTOBUF_LIMIT * 0.9)


def _fused_model(in_path: Path, options: dict[str, Any], prepass_on_gpu: bool) -> tuple[Any, str | None]:
    """The optimizer's model (ONNX Runtime's pre-pass, then the Python fusions), or, where the
    fusions raise, the pre-pass alone (``only_onnxruntime``) and the fusions' error."""
    from onnxruntime.transformers import optimizer

    arguments = {
        "model_type": options["model_type"],
        "num_heads": options["num_heads"],
        "hidden_size": options["hidden_size"],
        "use_gpu": prepass_on_gpu,
    }
    try:
        return optimizer.optimize_model(str(in_path), **arguments), None
    except Exception as error:  # noqa: BLE001 - any fusion bug: fall back to the graph without them
        message = f"{type(error).__name__}: {error}"[:MAX_MESSAGE]
        log.warning("ONNX Runtime's %s fusions failed on %s (%s): unfused graph",
                    options["model_type"], in_path, message)
        return optimizer.optimize_model(str(in_path), **arguments, opt_level=1, only_onnxruntime=True), message

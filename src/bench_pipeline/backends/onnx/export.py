"""A Hugging Face encoder to ONNX, and the content-hashed cache every ONNX artifact shares (ONNX Runtime's
fused graphs, TensorRT's FP16 copy: ``cached_artifact``).

Kedro-free on purpose: the export stage, ONNX Runtime's optimizer, the TensorRT builder and tests call these
directly.

Every artifact is content-addressed: the file written at ``out_path`` gets a sidecar manifest
(``<out_path>.manifest.json``) holding the cache key (model content, exporter, opset, options,
library versions) and the sha256 of every file that belongs to the artifact. A rerun with the
same key reuses the files only after re-hashing them, so a truncated or corrupt file in the
cache is detected, deleted and rebuilt, never trusted.
"""

from __future__ import annotations

import fcntl
import inspect
import json
import logging
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench_pipeline.model.source import load_model, weights_digest
from bench_pipeline.system.files import file_sha256, json_sha256, write_atomic

logger = logging.getLogger(__name__)

EXPORTERS = ("torchscript", "dynamo")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("last_hidden_state", "pooler_output")
# Bump when the export or optimization recipe changes, so old cache entries stop matching.
RECIPE_VERSION = 2
# Protobuf cannot hold more than 2 GiB: beyond this the weights go to an external data file.
PROTOBUF_LIMIT = 2**31 - 1
# Largest relative difference (max abs diff / max abs reference) accepted between the ONNX file
# run by ONNX Runtime and PyTorch, both FP32 on CPU: catches shapes or branches baked in by tracing.
_VALIDATION_RTOL = 1e-3
MAX_MESSAGE = 1500  # characters of an exporter's message kept in errors (and result rows)


class OnnxExportError(RuntimeError):
    """The model could not be exported or the exported file is wrong; the message says why."""


# ---------------------------------------------------------------------------------------------
# export


def export_onnx(
    model_dir: str | Path,
    out_path: str | Path,
    *,
    exporter: str = "torchscript",
    opset: int = 17,
    attn_implementation: str = "eager",
) -> dict[str, Any]:
    """Export the model in ``model_dir`` to ``out_path`` (dynamic batch and sequence axes).

    ``attn_implementation="eager"`` matters: ONNX Runtime's optimizer recognises the eager
    attention subgraph and fuses it into one ``Attention`` op; an SDPA export fuses none.

    Returns ``path, sha256, exporter, opset, export_s, size_bytes, inputs, outputs, cached, key``
    (``cached`` True when a verified earlier export with the same key was reused).
    Raises ``OnnxExportError`` with the exporter's message when export or validation fails.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; allowed: {list(EXPORTERS)}")
    model_dir, out_path = Path(model_dir), Path(out_path)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"model_dir {str(model_dir)!r} has no config.json: not a Hugging Face model directory")
    key = export_key(model_dir, exporter=exporter, opset=opset, attn_implementation=attn_implementation)
    return _cached_or_built(
        out_path, key, lambda: _export_and_store(model_dir, out_path, key, exporter, opset, attn_implementation)
    )


def cached_artifact(
    out_path: str | Path, key: str, write: Callable[[Path], dict[str, Any]], *, elapsed_as: str
) -> dict[str, Any]:
    """This module's verified cache for any other ONNX artifact (e.g. TensorRT's FP16 copy): the
    artifact at ``out_path`` whose manifest holds ``key`` and whose files still hash as recorded,
    or a fresh one. ``write(tmp_path)`` writes the file (and any ``<name>.data``) at ``tmp_path``
    and returns facts to store with it; its duration is recorded as ``elapsed_as``.
    Returns ``path, sha256, size_bytes, files, key, versions, cached``, the facts and the duration.
    """
    out_path = Path(out_path)

    def build() -> dict[str, Any]:
        facts: dict[str, Any] = {}
        info = _build(out_path, key, lambda tmp_path: facts.update(write(tmp_path)))
        info[elapsed_as] = info.pop("build_s")
        return _store(out_path, key, {**info, **facts})

    return _cached_or_built(out_path, key, build)


def _cached_or_built(out_path: Path, key: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Under a lock on ``out_path``: its verified cached record for ``key``, or ``build()``'s."""
    with _exclusive(out_path):
        cached = load_cached(out_path, key)
        return cached if cached is not None else build()


def _export_and_store(
    model_dir: Path, out_path: Path, key: str, exporter: str, opset: int, attn_implementation: str
) -> dict[str, Any]:
    model = _load_model(model_dir, attn_implementation)
    wrapper, input_names, output_names = _wrap(model)
    checks: dict[str, Any] = {}

    def build(tmp_path: Path) -> None:
        start = time.perf_counter()
        _export(wrapper, input_names, output_names, tmp_path, exporter, opset)
        checks["export_s"] = time.perf_counter() - start
        # validated before it is moved into place: a wrong export never reaches the cache
        checks["validate_max_rel"] = _validate(tmp_path, wrapper, input_names, output_names)
        checks["validate_s"] = time.perf_counter() - start - checks["export_s"]
        checks["opset"] = _default_opset(tmp_path)

    info = _build(out_path, key, build)
    del info["build_s"]  # export_s and validate_s say more
    info.update(
        checks,
        exporter=exporter,
        requested_opset=opset,
        attn_implementation=attn_implementation,
        inputs=input_names,
        outputs=output_names,
    )
    return _store(out_path, key, info)


def export_key(model_dir: str | Path, *, exporter: str, opset: int, attn_implementation: str) -> str:
    """The cache key of an export: what the model is (the fingerprint ``model_info`` carries as
    ``weights_sha256``) and how it is exported, not where it lives."""
    return json_sha256(
        {
            "step": "export",
            "recipe": RECIPE_VERSION,
            "model": weights_digest(Path(model_dir)),
            "exporter": exporter,
            "opset": opset,
            "attn_implementation": attn_implementation,
            "versions": library_versions(),
        }
    )


def _load_model(model_dir: Path, attn_implementation: str) -> torch.nn.Module:
    # the project's loader, so weights a checkpoint lacks (an untrained pooler) are seeded exactly
    # as in the reference the backends are compared with
    try:
        return load_model(model_dir, "fp32", torch.device("cpu"), attn_implementation=attn_implementation)
    except Exception as error:  # any loader error means this model cannot be exported here
        raise OnnxExportError(f"could not load {model_dir} for export: {type(error).__name__}: {error}") from error


class _KeywordWrapper(torch.nn.Module):
    """Calls the model with keywords and returns a plain tuple.

    Transformers 5 changed positional argument order (``use_cache`` and friends), which breaks
    the TorchScript tracer that feeds inputs positionally; keywords make the call unambiguous.
    """

    def __init__(self, model: torch.nn.Module, input_names: list[str], output_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.output_names = output_names

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        out = self.model(**{name: given[name] for name in self.input_names}, return_dict=True)
        return tuple(out[name] for name in self.output_names)


def _wrap(model: torch.nn.Module) -> tuple[_KeywordWrapper, list[str], list[str]]:
    accepted = inspect.signature(model.forward).parameters
    input_names = [name for name in INPUT_NAMES if name in accepted]
    if "input_ids" not in input_names:
        raise OnnxExportError(f"{type(model).__name__}.forward takes no input_ids: not a text encoder")
    probe = _sample_inputs(model.config, input_names, batch=1, seq=4)
    with torch.no_grad():
        out = model(**probe, return_dict=True)
    output_names = [name for name in OUTPUT_NAMES if getattr(out, name, None) is not None]
    if "last_hidden_state" not in output_names:
        raise OnnxExportError(f"{type(model).__name__} returns no last_hidden_state: not an encoder")
    # A fresh Module is in training mode, and the exporter restores the wrapper's mode (recursively)
    # afterwards: without eval() here the model would be left with dropout on.
    return _KeywordWrapper(model, input_names, output_names).eval(), input_names, output_names


def _sample_inputs(config: Any, input_names: list[str], *, batch: int, seq: int, pad_last: int = 0) -> dict:
    """Token ids from a fixed seed; ``pad_last`` masks the tail of the second row (padding path)."""
    generator = torch.Generator().manual_seed(0)
    seq = min(seq, getattr(config, "max_position_embeddings", seq) or seq)
    inputs = {"input_ids": torch.randint(0, config.vocab_size, (batch, seq), generator=generator)}
    if "attention_mask" in input_names:
        mask = torch.ones(batch, seq, dtype=torch.int64)
        if pad_last and batch > 1:
            mask[1, seq - pad_last :] = 0
        inputs["attention_mask"] = mask
    if "token_type_ids" in input_names:
        inputs["token_type_ids"] = torch.zeros(batch, seq, dtype=torch.int64)
    return inputs


def _export(
    wrapper: _KeywordWrapper, input_names: list[str], output_names: list[str], path: Path, exporter: str, opset: int
) -> None:
    # batch 2 and seq 16 so neither axis is traced as the special value 1
    sample = _sample_inputs(wrapper.model.config, input_names, batch=2, seq=16)
    args = tuple(sample[name] for name in input_names)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            if exporter == "torchscript":
                axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
                axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
                axes["pooler_output"] = {0: "batch"}
                torch.onnx.export(
                    wrapper,
                    args,
                    str(path),
                    input_names=input_names,
                    output_names=output_names,
                    dynamic_axes={name: axes[name] for name in [*input_names, *output_names]},
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
            else:
                batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
                weights = sum(p.numel() * p.element_size() for p in wrapper.parameters())
                torch.onnx.export(
                    wrapper,
                    args,
                    str(path),
                    input_names=input_names,
                    output_names=output_names,
                    dynamic_shapes={name: {0: batch, 1: seq} for name in input_names},
                    opset_version=opset,
                    dynamo=True,
                    external_data=weights > PROTOBUF_LIMIT // 2,
                )
        except Exception as error:  # every exporter failure becomes one clear error for fail_export
            raise OnnxExportError(f"{exporter} export failed: {_exporter_message(error)}") from error
    _consolidate_external_data(path)


def _exporter_message(error: Exception) -> str:
    """The part of an exporter's message that names the cause: the dynamo exporter wraps it in
    pages of advice and terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1]
    text = " ".join(text.split())
    return f"{type(error).__name__}: {text[:MAX_MESSAGE]}"


def _consolidate_external_data(path: Path) -> None:
    """The TorchScript exporter writes one file per tensor for models above 2 GB; gather them
    into a single ``<name>.data`` so an artifact is always one or two files."""
    others = [p for p in path.parent.iterdir() if p != path and p.name != f"{path.name}.data"]
    if not others:
        return
    import onnx

    model = onnx.load(str(path), load_external_data=True)
    for other in others:
        other.unlink()
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=f"{path.name}.data"
    )


def _default_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _validate(path: Path, wrapper: _KeywordWrapper, input_names: list[str], output_names: list[str]) -> float:
    """``onnx.checker`` (path-based, so > 2 GB and external data work) and one ONNX Runtime CPU
    run at a shape other than the traced one, with padding, compared with PyTorch."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path))
    except Exception as error:
        raise OnnxExportError(f"onnx.checker rejected {path}: {error}") from error
    inputs = _sample_inputs(wrapper.model.config, input_names, batch=3, seq=11, pad_last=4)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: inputs[i.name].numpy() for i in session.get_inputs()}
    try:
        got = session.run(output_names, feeds)
    except Exception as error:
        raise OnnxExportError(f"ONNX Runtime could not run the export of {path}: {error}") from error
    with torch.no_grad():
        expected = wrapper(*(inputs[name] for name in input_names))
    worst = 0.0
    for name, ort_out, ref in zip(output_names, got, expected, strict=True):
        ref = ref.float().numpy()
        if ort_out.shape != ref.shape:
            raise OnnxExportError(f"{name}: ONNX Runtime shape {ort_out.shape} != PyTorch shape {ref.shape}")
        rel = float(np.abs(ort_out - ref).max() / max(float(np.abs(ref).max()), 1e-6))
        if not rel <= _VALIDATION_RTOL:  # also catches NaN
            raise OnnxExportError(
                f"{name}: the export disagrees with PyTorch (max abs diff / max abs = {rel:.3g} > {_VALIDATION_RTOL})"
            )
        worst = max(worst, rel)
    return worst


# ---------------------------------------------------------------------------------------------
# content-hashed artifacts


def library_versions() -> dict[str, str]:
    """Versions that change what an export or optimization produces (part of every cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"torch": torch.__version__}
    for package in ("onnx", "transformers"):
        versions[package] = version(package)
    import onnxruntime

    versions["onnxruntime"] = onnxruntime.__version__
    try:  # the GPU build has its own distribution name and may fuse differently
        versions["onnxruntime-gpu"] = version("onnxruntime-gpu")
    except PackageNotFoundError:
        pass
    return versions


def manifest_path(out_path: str | Path) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".manifest.json")


def load_cached(out_path: str | Path, key: str) -> dict[str, Any] | None:
    """The stored info of a verified artifact with this key, or None (and stale files removed)."""
    out_path = Path(out_path)
    manifest_file = manifest_path(out_path)
    if not manifest_file.is_file():
        return None
    try:
        manifest = json.loads(manifest_file.read_text())
        stored_key, files, info = manifest["key"], manifest["files"], manifest["info"]
    except (ValueError, KeyError, TypeError):
        logger.warning("unreadable cache manifest %s: rebuilding", manifest_file)
        _remove_artifact(out_path)
        return None
    if stored_key != key:
        logger.info("cache key changed for %s: rebuilding", out_path)
        _remove_artifact(out_path, extra=files)
        return None
    for name, expected in files.items():
        file = out_path.parent / name
        if not file.is_file() or file_sha256(file) != expected:
            logger.warning("cached %s is missing or corrupt (sha256 mismatch): deleting and rebuilding", file)
            _remove_artifact(out_path, extra=files)
            return None
    return {**info, "cached": True}


@contextmanager
def _exclusive(out_path: Path) -> Iterator[None]:
    """One writer per artifact: parallel runs sharing a cache (one ``kedro run`` per GPU) wait
    for each other here instead of overwriting each other's files."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path.with_name(out_path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _build(out_path: Path, key: str, write: Callable[[Path], None]) -> dict[str, Any]:
    """Run ``write`` into a private folder, then move the finished files into place.

    The manifest is written last (by ``_store``), so an interrupted build never looks cached.
    """
    _remove_artifact(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.name}.") as tmp:
        tmp_path = Path(tmp) / out_path.name
        start = time.perf_counter()
        write(tmp_path)
        elapsed = time.perf_counter() - start
        names = sorted(p.name for p in Path(tmp).iterdir())
        for name in names:
            shutil.move(str(Path(tmp) / name), str(out_path.parent / name))
    files = {name: file_sha256(out_path.parent / name) for name in names}
    return {
        "path": str(out_path),
        "sha256": files[out_path.name],
        "size_bytes": sum((out_path.parent / name).stat().st_size for name in names),
        "files": files,
        "key": key,
        "build_s": elapsed,
    }


def _store(out_path: Path, key: str, info: dict[str, Any]) -> dict[str, Any]:
    info = {**info, "cached": False, "versions": library_versions()}
    manifest = {"key": key, "files": info["files"], "info": {k: v for k, v in info.items() if k != "cached"}}
    write_atomic(manifest_path(out_path), json.dumps(manifest, indent=2, sort_keys=True).encode())
    return info


def _remove_artifact(out_path: Path, extra: dict[str, str] | None = None) -> None:
    names = {out_path.name, f"{out_path.name}.data", manifest_path(out_path).name, *(extra or {})}
    for name in names:
        (out_path.parent / name).unlink(missing_ok=True)


def artifact_sha256(path: Path) -> str:
    """One digest over an ONNX file and its external data file, if it has one."""
    data = path.with_name(path.name + ".data")
    if not data.is_file():
        return file_sha256(path)
    return json_sha256({path.name: file_sha256(path), data.name: file_sha256(data)})

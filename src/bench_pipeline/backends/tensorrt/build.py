"""ONNX -> TensorRT engine, for full TensorRT and for TensorRT-RTX, with a content-hashed cache.

Why the plain TensorRT API and not Polygraphy: Polygraphy picks its TensorRT module once per
process from an environment variable (``POLYGRAPHY_USE_TENSORRT_RTX``), while this project
chooses the flavour at run time and must tell the two apart in every record. The two
flavours share the few calls needed here (Builder, OnnxParser, optimization profiles,
IBuilderConfig), so one short code path serves both.

Both flavours build strongly typed networks: the precision comes from the ONNX file the
export stage wrote (TensorRT 11 and TensorRT-RTX accept nothing else; TensorRT 10 accepts it).

An engine only runs where it was built for: full TensorRT builds for the GPU it runs on;
TensorRT-RTX builds on a CPU-only machine for a compute capability you name. So the cache
key covers the ONNX hash, the build options, the flavour and its version and the target
(compute capability, and for full TensorRT the GPU name): a changed GPU or library version
is a different key, hence a rebuild, never an engine loaded silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PositiveInt, ValidationInfo, field_validator

from bench_pipeline.backends.base import CellFailure, mentions_out_of_memory
from bench_pipeline.backends.onnx.export import artifact_sha256, cached_artifact, library_versions
from bench_pipeline.harness.status import Status
from bench_pipeline.system.files import file_sha256, json_sha256, slug, write_atomic

log = logging.getLogger(__name__)

FULL = "tensorrt"
RTX = "tensorrt-rtx"
#: flavour -> modules that provide it, in the order tried (``tensorrt_rtx`` is the name NVIDIA
#: documents; the ``tensorrt-rtx-cu13-bindings`` wheel alone installs ``tensorrt_rtx_bindings``)
FLAVOUR_MODULES = {FULL: ("tensorrt",), RTX: ("tensorrt_rtx", "tensorrt_rtx_bindings")}
FLAVOUR_LABELS = {FULL: "TensorRT", RTX: "TensorRT-RTX"}
SHAPE_MODES = ("dynamic", "static")
_CC_PATTERN = re.compile(r"^\d{1,2}\.\d$")


class EngineError(CellFailure):
    """An engine could not be built or loaded; ``status`` is fail_build, oom, skipped or error."""


class TensorRTBuildSpec(BaseModel):
    """The ``tensorrt_build:`` parameters, checked before any build starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: "dynamic": one engine whose profile covers the whole grid; "static": one engine per cell
    shapes: Literal["dynamic", "static"] = "dynamic"
    #: "auto": full TensorRT where importable, else TensorRT-RTX
    flavour: Literal["auto", "tensorrt", "tensorrt-rtx"] = "auto"
    #: "auto": the local GPU, or ``default_compute_capability`` where there is none (or
    #: TensorRT-RTX cannot target it, e.g. Hopper 9.0); or an explicit "8.9"
    target_compute_capability: str = "auto"
    default_compute_capability: str = "8.9"
    workspace_mb: PositiveInt | None = None  # None: TensorRT's default (the device memory)
    engine_dir: str  # conf/base/parameters_tensorrt.yml: the one source of both folders
    timing_cache_dir: str

    @field_validator("target_compute_capability", "default_compute_capability")
    @classmethod
    def _check_cc(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "target_compute_capability" and value == "auto":
            return value
        if not _CC_PATTERN.match(value):
            allowed = "'auto' or " if info.field_name == "target_compute_capability" else ""
            raise ValueError(
                f"{info.field_name} {value!r} is not a compute capability; allowed: {allowed}'MAJOR.MINOR' (e.g. '8.9')"
            )
        return value


# ---------------------------------------------------------------------------------------- flavour


@dataclass(frozen=True)
class Flavour:
    """An importable TensorRT: which kind, from which module, which version."""

    name: str  # FULL or RTX
    module_name: str
    version: str
    module: ModuleType = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{FLAVOUR_LABELS[self.name]} {self.version}"


def detect_flavour(prefer: str = "auto") -> tuple[Flavour | None, str | None]:
    """``(flavour, None)`` for the first importable TensorRT, else ``(None, reason)``.

    ``auto`` prefers full TensorRT (datacenter GPUs, Hopper included) over TensorRT-RTX.
    Any import failure counts as missing: the PyPI ``tensorrt`` stubs and broken native
    libraries raise more than ImportError, and a missing library must never stop a run.
    """
    if prefer != "auto" and prefer not in FLAVOUR_MODULES:
        allowed = ", ".join(map(repr, ["auto", *FLAVOUR_MODULES]))
        raise ValueError(f"unknown TensorRT flavour {prefer!r}; allowed: {allowed}")
    names = list(FLAVOUR_MODULES) if prefer == "auto" else [prefer]
    failures = []
    for name in names:
        for module_name in FLAVOUR_MODULES[name]:
            try:
                module = importlib.import_module(module_name)
            except Exception as error:  # noqa: BLE001 - see docstring
                failures.append(f"{module_name}: {type(error).__name__}: {error}")
                continue
            return Flavour(name, module_name, str(module.__version__), module), None
    return None, "no TensorRT library can be imported (" + "; ".join(failures) + ")"


# --------------------------------------------------------------------------- compute capabilities


def format_cc(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def parse_cc(text: str) -> tuple[int, int]:
    if not _CC_PATTERN.match(text):
        raise ValueError(f"{text!r} is not a compute capability; allowed: 'MAJOR.MINOR' (e.g. '8.9')")
    major, minor = text.split(".")
    return int(major), int(minor)


def rtx_targets(flavour: Flavour) -> list[tuple[int, int]]:
    """Compute capabilities this TensorRT-RTX can build for and run on, read from its own enum
    (``ComputeCapability.SM75`` ... ``SM121``) so a new release needs no change here."""
    members = flavour.module.ComputeCapability.__members__
    return sorted((int(m[2:-1]), int(m[-1])) for m in members if re.fullmatch(r"SM\d{2,3}", m))


def local_gpu(device: Any = None) -> tuple[tuple[int, int], str] | None:
    """(compute capability, name) of ``device`` (default: the current CUDA device), None without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device() if device is None else device
    return tuple(torch.cuda.get_device_capability(index)), torch.cuda.get_device_name(index)


def building_on(device: Any) -> contextlib.AbstractContextManager:
    """TensorRT builds on the current CUDA device: make it the benchmark's."""
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def resolve_target(
    flavour: Flavour, requested: str, default: str, gpu: tuple[tuple[int, int], str] | None
) -> tuple[str, str | None]:
    """(target compute capability, note). Full TensorRT builds for the GPU it runs on only;
    TensorRT-RTX builds for any compute capability it lists, with or without a GPU."""
    if flavour.name == FULL:
        if gpu is None:
            raise EngineError(Status.SKIPPED,
                              f"{flavour.label} builds engines only on a CUDA GPU, and there is none here")
        local = format_cc(gpu[0])
        if requested not in ("auto", local):
            raise EngineError(
                Status.FAIL_BUILD,
                f"{flavour.label} builds for the GPU it runs on ({gpu[1]}, compute capability {local}); "
                f"target_compute_capability {requested!r} needs TensorRT-RTX or that GPU",
            )
        return local, None
    targets = rtx_targets(flavour)
    allowed = ", ".join(map(format_cc, targets))
    if requested != "auto":
        if parse_cc(requested) not in targets:
            raise EngineError(
                Status.FAIL_BUILD, f"{flavour.label} cannot target compute capability {requested}; allowed: {allowed}"
            )
        return requested, None
    if gpu is not None and gpu[0] in targets:
        return format_cc(gpu[0]), None
    if parse_cc(default) not in targets:
        raise EngineError(
            Status.FAIL_BUILD,
            f"default_compute_capability {default} is not a {flavour.label} target; allowed: {allowed}"
        )
    if gpu is None:
        where = "there is no GPU here"
    else:
        where = f"this GPU ({gpu[1]}, {format_cc(gpu[0])}) is not one of its targets ({allowed})"
    return default, f"built for compute capability {default} because {where}; the engine cannot run on this machine"


# ----------------------------------------------------------------------------------- profiles


def profile_shapes(batch_sizes: list[int], sequence_lengths: list[int], mode: str) -> list[dict[str, list[int]]]:
    """Optimization profiles over (batch, seq), applied to every [batch, seq] input.

    ``dynamic``: one profile from the smallest to the largest cell, tuned (``opt``) at the
    grid's median batch and sequence length, so kernels are picked for a typical cell rather
    than an extreme one. ``static``: one profile per cell with min = opt = max — one engine
    each, the baseline that shows what the flexibility of the dynamic engine costs.
    """
    if mode not in SHAPE_MODES:
        raise ValueError(f"unknown shapes mode {mode!r}; allowed: {list(SHAPE_MODES)}")
    for label, values in (("batch_sizes", batch_sizes), ("sequence_lengths", sequence_lengths)):
        if not values or any(not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{label} {values!r} must be a non-empty list of positive integers")
    batches, seqs = sorted(set(batch_sizes)), sorted(set(sequence_lengths))
    if mode == "static":
        return [{"min": [b, s], "opt": [b, s], "max": [b, s]} for b in batches for s in seqs]
    opt = [int(statistics.median_high(batches)), int(statistics.median_high(seqs))]
    return [{"min": [batches[0], seqs[0]], "opt": opt, "max": [batches[-1], seqs[-1]]}]


def profile_covers(profile: dict[str, list[int]], batch: int, seq: int) -> bool:
    (b_min, s_min), (b_max, s_max) = profile["min"], profile["max"]
    return b_min <= batch <= b_max and s_min <= seq <= s_max


def describe_profile(profile: dict[str, list[int]]) -> str:
    (b_min, s_min), (b_max, s_max) = profile["min"], profile["max"]
    return f"batch {b_min}..{b_max} x seq {s_min}..{s_max}"


# ------------------------------------------------------------------------------------- build


FLOAT16_RECIPE = 1  # bump when the FP16 conversion changes, so cached FP16 files stop matching


def float16_onnx(fp32_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """A plain FP16 copy of the FP32 export, for TensorRT's strongly typed build.

    Why not the export stage's FP16 file: that is ONNX Runtime's fused graph, whose
    com.microsoft ops (EmbedLayerNormalization, SkipLayerNormalization, BiasGelu, Attention)
    TensorRT's ONNX parser rejects. ONNX Runtime's float16 converter with ``keep_io_types``
    keeps the int64 inputs and FP32 outputs and clips constants to the FP16 range (the
    attention mask's -3.4e38 becomes -65504). Cached like the export stage's files (a manifest
    with the sha256 of every file, re-checked on reuse, under a lock), keyed by the FP32 file's
    digest, the recipe and the library versions: a truncated or corrupt copy is rebuilt.
    Returns ``path, convert_s, source, sha256, size_bytes, cached`` and the cache's bookkeeping.
    """
    fp32_path, out_dir = Path(fp32_path), Path(out_dir)
    source_sha256 = artifact_sha256(fp32_path)
    key_material = {"step": "float16", "recipe": FLOAT16_RECIPE, "input": source_sha256, "versions": library_versions()}
    key = json_sha256(key_material)
    # the source digest in the name: one folder serves every model's FP16 copies
    out = out_dir / f"{fp32_path.stem}.fp16-{source_sha256[:20]}.onnx"

    def convert(tmp_path: Path) -> dict[str, Any]:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
        external = fp32_path.with_name(fp32_path.name + ".data").is_file()  # above protobuf's 2 GiB
        onnx.save_model(model, str(tmp_path), save_as_external_data=external,
                        all_tensors_to_one_file=True, location=f"{out.name}.data")
        return {"source": str(fp32_path), "source_sha256": source_sha256}

    return cached_artifact(out, key, convert, elapsed_as="convert_s")


def build_engine(
    onnx_path: str | Path,
    engine_dir: str | Path,
    *,
    precision: str,
    profile: dict[str, Any],  # see _add_profile
    target_cc: str,
    flavour: Flavour,
    timing_cache_dir: str | Path | None = None,
    workspace_mb: int | None = None,
    device_name: str | None = None,
) -> dict[str, Any]:
    """Build one engine (or reuse the cached one with the same key) and return its record.

    ``device_name`` is the GPU a full-TensorRT engine is built on (part of the key: a full
    TensorRT engine is specific to the GPU model); TensorRT-RTX engines depend on the target
    compute capability only. The ONNX file is hashed here, external weights included, rather
    than trusted from an earlier record: the key must describe the bytes the parser reads.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EngineError(Status.FAIL_BUILD, f"ONNX file {str(onnx_path)!r} does not exist")
    options = {
        "precision": precision,
        "profile": profile,
        "tf32": precision != "fp32",  # FP32 means FP32, like the eager reference
        "workspace_mb": workspace_mb,
    }
    key_material = {
        "onnx_sha256": artifact_sha256(onnx_path),
        "options": options,
        "flavour": flavour.name,
        "version": flavour.version,
        "target_cc": target_cc,
        "device_name": device_name if flavour.name == FULL else None,
    }
    key = json_sha256(key_material)
    engine_dir = Path(engine_dir)
    engine_path = engine_dir / f"{precision}-{key[:20]}.plan"
    cached = _cached_record(engine_path, key)
    if cached is not None:
        return cached | {"cache_hit": True}

    timing_cache = _timing_cache_path(timing_cache_dir, flavour, device_name)
    start = time.perf_counter()
    plan, timing_cache_hit = _build_plan(onnx_path, flavour, options, target_cc, timing_cache)
    build_s = time.perf_counter() - start

    engine_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(engine_path, plan)
    record = {
        "path": str(engine_path),
        "sha256": hashlib.sha256(plan).hexdigest(),
        "engine_bytes": len(plan),
        "build_s": build_s,
        "key": key,
        "onnx_path": str(onnx_path),
        **key_material,
        "flavour_label": flavour.label,
        "timing_cache": str(timing_cache) if timing_cache else None,
        "timing_cache_hit": timing_cache_hit,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_atomic(_sidecar(engine_path), json.dumps(record, indent=2, sort_keys=True).encode())
    return record | {"cache_hit": False}


def _cached_record(engine_path: Path, key: str) -> dict[str, Any] | None:
    """The stored record when the engine on disk is the one this key describes, byte for byte."""
    sidecar = _sidecar(engine_path)
    if not (engine_path.is_file() and sidecar.is_file()):
        return None
    record = json.loads(sidecar.read_text())
    if record.get("key") != key:
        return None
    if file_sha256(engine_path) != record.get("sha256"):
        log.warning("engine %s does not match its recorded hash; rebuilding", engine_path)
        return None
    return record


def _build_plan(
    onnx_path: Path, flavour: Flavour, options: dict[str, Any], target_cc: str, timing_cache: Path | None
) -> tuple[bytes, bool | None]:
    trt = flavour.module
    logger = recording_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_strongly_typed_flag(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or logger.errors()
        raise EngineError(Status.FAIL_BUILD, f"the ONNX parser rejected {onnx_path.name}: " + " | ".join(errors))

    config = builder.create_builder_config()
    _add_profile(builder, config, network, options["profile"])
    if not options["tf32"] and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if options["workspace_mb"]:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options["workspace_mb"] << 20)
    if flavour.name == RTX:
        config.num_compute_capabilities = 1
        major, minor = parse_cc(target_cc)
        config.set_compute_capability(getattr(trt.ComputeCapability, f"SM{major}{minor}"), 0)
    timing_cache_hit = _attach_timing_cache(config, timing_cache)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        errors = " | ".join(logger.errors()) or "no error message from TensorRT"
        status = Status.OOM if mentions_out_of_memory(errors) else Status.FAIL_BUILD
        raise EngineError(status, f"{flavour.label} could not build {onnx_path.name}: {errors}")
    if timing_cache is not None:
        write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan), timing_cache_hit


def _strongly_typed_flag(trt: ModuleType) -> int:
    """STRONGLY_TYPED where the flag exists (TensorRT 10, TensorRT-RTX); TensorRT 11 is always strongly typed."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def _add_profile(builder: Any, config: Any, network: Any, profile: dict[str, Any]) -> None:
    """One optimization profile: ``{"min", "opt", "max"}`` over [batch, sequence] for every dynamic 2-D input (an
    encoder's), or ``{"inputs": {name: {"min", "opt", "max"}}}`` naming each dynamic input's own shapes (a
    decoder's cache inputs are [batch, heads, past, head dim])."""
    optimization_profile = builder.create_optimization_profile()
    named = profile.get("inputs")
    inputs = [network.get_input(index) for index in range(network.num_inputs)]
    unknown = sorted(set(named or ()) - {tensor.name for tensor in inputs})
    if unknown:  # a profile written for another graph (e.g. other cache names) must not build a wrong engine
        raise EngineError(Status.FAIL_BUILD, f"the profile names input(s) {unknown} the network does not have; "
                          f"it has {[tensor.name for tensor in inputs]}")
    for tensor in inputs:
        shape = tuple(tensor.shape)
        if -1 not in shape:
            continue
        if named is not None:
            if tensor.name not in named:
                raise EngineError(Status.FAIL_BUILD, f"input {tensor.name!r} has shape {shape} and the profile "
                                  f"gives it none; it has shapes for {sorted(named)}")
            shapes = named[tensor.name]
        elif len(shape) != 2:
            raise EngineError(
                Status.FAIL_BUILD,
                f"input {tensor.name!r} has shape {shape}; only [batch, sequence] inputs can be profiled"
            )
        else:
            shapes = profile
        optimization_profile.set_shape(tensor.name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(optimization_profile)


def _timing_cache_path(timing_cache_dir: str | Path | None, flavour: Flavour, device_name: str | None) -> Path | None:
    """A timing cache per (version, GPU) for full TensorRT. TensorRT-RTX has none: its timing
    cache calls are no-ops (deprecated in 1.2); it caches JIT kernels at run time instead."""
    if timing_cache_dir is None or flavour.name == RTX:
        return None
    device = slug(device_name or "gpu")
    return Path(timing_cache_dir) / f"tensorrt-{flavour.version}-{device}.timing"


def _attach_timing_cache(config: Any, path: Path | None) -> bool | None:
    """Load the persisted timing cache into the config; True when one existed (a warm build)."""
    if path is None:
        return None
    existing = path.read_bytes() if path.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(existing), ignore_mismatch=False)
    return bool(existing)


def _sidecar(engine_path: Path) -> Path:
    return engine_path.with_suffix(".json")


def recording_logger(trt: ModuleType) -> Any:
    """A TensorRT logger that keeps warnings and errors, so a failure can say what TensorRT said.
    Made per flavour module because the ILogger base class is that module's own."""
    warning = int(trt.ILogger.Severity.WARNING)
    error = int(trt.ILogger.Severity.ERROR)

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[int, str]] = []

        def log(self, severity: Any, message: str) -> None:
            if int(severity) <= warning:
                self.messages.append((int(severity), message))
                # TensorRT warns a lot about benign things (e.g. "make sure input has Int64 binding")
                log.log(logging.INFO if int(severity) == warning else logging.ERROR, "[%s] %s", trt.__name__, message)

        def errors(self) -> list[str]:
            return [m for s, m in self.messages if s <= error]

    return RecordingLogger()


# ------------------------------------------------------------------------- grid of engines


def build_engines(
    onnx_path: str | Path,
    spec: TensorRTBuildSpec,
    *,
    precision: str,
    batch_sizes: list[int],
    sequence_lengths: list[int],
    flavour: Flavour,
    gpu: tuple[tuple[int, int], str] | None,
) -> dict[str, Any]:
    """All engines one precision needs (one in dynamic mode, one per cell in static mode),
    as the plain record the tensorrt stage persists: totals first, then each engine."""
    target_cc, note = resolve_target(flavour, spec.target_compute_capability, spec.default_compute_capability, gpu)
    engines = [
        build_engine(
            onnx_path,
            Path(spec.engine_dir),
            precision=precision,
            profile=profile,
            target_cc=target_cc,
            flavour=flavour,
            timing_cache_dir=spec.timing_cache_dir,
            workspace_mb=spec.workspace_mb,
            device_name=gpu[1] if gpu else None,
        )
        for profile in profile_shapes(batch_sizes, sequence_lengths, spec.shapes)
    ]
    return {
        "status": Status.OK,
        "precision": precision,
        "flavour": flavour.name,
        "version": flavour.version,
        "target_cc": target_cc,
        "device_name": gpu[1] if gpu and flavour.name == FULL else None,
        "shapes": spec.shapes,
        "note": note,
        "build_s": sum(e["build_s"] for e in engines),
        "engine_bytes": sum(e["engine_bytes"] for e in engines),
        "cache_hit": all(e["cache_hit"] for e in engines),
        "engines": engines,
    }


# ------------------------------------------------------------------------------ loading back


def read_engine(record: dict[str, Any]) -> bytes:
    """The engine's bytes, only if they are the bytes that were built (hash checked)."""
    path = Path(record["path"])
    if not path.is_file():
        raise EngineError(Status.FAIL_BUILD, f"engine file {str(path)!r} is missing; rerun the tensorrt stage")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise EngineError(
            Status.ERROR, f"engine file {str(path)!r} does not match its recorded sha256; rerun the tensorrt stage"
        )
    return data


def not_on_a_gpu(device: Any, built_with: str, target_cc: str) -> str:
    """Why an engine that was built is not run on a run whose device is not a GPU."""
    return (f"TensorRT runs engines only on a CUDA GPU and this run's device is {device} "
            f"(the {built_with} engine for compute capability {target_cc} was built)")


def engine_mismatch(record: dict[str, Any], flavour: Flavour, gpu: tuple[tuple[int, int], str] | None) -> str | None:
    """Why this engine must not be loaded here (another flavour, version, GPU), or None."""
    built_with = f"{FLAVOUR_LABELS[record['flavour']]} {record['version']}"
    if (record["flavour"], record["version"]) != (flavour.name, flavour.version):
        return (
            f"the engine was built with {built_with} but this machine has {flavour.label}; "
            "rerun the tensorrt stage here"
        )
    if gpu is None:
        return f"{flavour.label} needs a CUDA GPU to run an engine, and there is none here"
    local = format_cc(gpu[0])
    if flavour.name == RTX and gpu[0] not in rtx_targets(flavour):
        runs_on = "/".join(format_cc(cc) for cc in rtx_targets(flavour))
        return f"TensorRT-RTX runs on compute capability {runs_on}; this GPU ({gpu[1]}) is {local}"
    if record["target_cc"] != local:
        return (
            f"the engine was built for compute capability {record['target_cc']}; this GPU ({gpu[1]}) is {local}; "
            "rerun the tensorrt stage here"
        )
    if flavour.name == FULL and record.get("device_name") not in (None, gpu[1]):
        return f"the engine was built on {record['device_name']}; this GPU is {gpu[1]}; rerun the tensorrt stage here"
    return None

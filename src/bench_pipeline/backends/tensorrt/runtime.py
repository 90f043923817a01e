"""TensorRT engines from the tensorrt stage, run with bound device buffers on one CUDA stream.

Which TensorRT runs an engine is not a choice: it is the flavour that built it (full TensorRT
and TensorRT-RTX engines are not interchangeable). Where that flavour cannot execute here (no
GPU, a GPU it does not support such as Hopper for TensorRT-RTX, library missing, another
version) every cell is ``skipped`` with the exact reason: the build's time and size are still
real results of the tensorrt stage, but no latency is ever made up.

Per cell, inputs are copied to the device once in the dtypes the engine declares (int64 from
our ONNX; int32 where an engine says so), outputs are pre-allocated, and ``run`` only enqueues
``execute_async_v3`` on the session's stream. ``cuda_graph: true`` is its own variant: full
TensorRT is captured into a torch CUDA graph; TensorRT-RTX uses its built-in whole-graph
capture, since it swaps in shape-specialized kernels that a manual capture could freeze too early.
TensorRT-RTX compiles those specialized kernels eagerly (before the first call returns), so the
warm-up, not the timed calls, pays for the JIT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench_pipeline.backends.base import Backend, BackendContext, Cell, CellFailure, CellRunner, Session
from bench_pipeline.backends.tensorrt.build import (
    FLAVOUR_LABELS,
    RTX,
    Flavour,
    describe_profile,
    detect_flavour,
    engine_mismatch,
    local_gpu,
    not_on_a_gpu,
    profile_covers,
    read_engine,
    recording_logger,
)
from bench_pipeline.backends.tensorrt.options import check_options
from bench_pipeline.backends.tensorrt.records import TensorRTRecord
from bench_pipeline.harness.status import Status
from bench_pipeline.model.source import precision_unsupported
from bench_pipeline.system.files import slug, write_atomic

_TORCH_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "BOOL": torch.bool,
}


class TensorRTBackend(Backend):
    name = "tensorrt"

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        record, flavour = self._runnable(ctx, precision, options)
        return TensorRTSession(ctx.device, record, flavour, cuda_graph=bool(options.get("cuda_graph", False)))

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        self._runnable(ctx, precision, options)

    def _runnable(self, ctx: BackendContext, precision: str, options: dict[str, Any]) -> tuple[TensorRTRecord, Flavour]:
        """The stage's engine record and the TensorRT flavour that runs it here, or why not."""
        check_options(options)
        entry = ctx.artifacts.get("tensorrt", {}).get(precision)
        if entry is None:
            raise CellFailure(Status.SKIPPED, f"the tensorrt stage built no {precision} engine")
        if entry["status"] != Status.OK:
            raise CellFailure(entry["status"], entry["reason"])
        record = TensorRTRecord.model_validate(entry)
        built_with = f"{FLAVOUR_LABELS[record.flavour]} {record.version}"
        if ctx.device.type != "cuda":
            raise skipped_with_build_facts(not_on_a_gpu(ctx.device, built_with, record.target_cc), record)
        capability = precision_unsupported(ctx.device, precision) if precision == "tf32" else None
        if capability:  # a TF32 engine on a GPU without TF32 would time FP32 under the name TF32
            raise CellFailure(Status.UNSUPPORTED, capability, costs=one_off_costs(record), extra=build_facts(record))
        flavour, missing = detect_flavour(record.flavour)
        if flavour is None:
            reason = f"the engine was built with {built_with}, which is missing here: {missing}"
            raise skipped_with_build_facts(reason, record)
        gpu = local_gpu(ctx.device)
        for engine in record.engines:
            reason = engine_mismatch(engine.model_dump(), flavour, gpu)
            if reason:
                raise skipped_with_build_facts(reason, record)
        return record, flavour


def build_facts(record: TensorRTRecord) -> dict[str, Any]:
    """What the tensorrt stage measured, for the ``extra`` column of every row of this precision."""
    return {
        "flavour": f"{FLAVOUR_LABELS[record.flavour]} {record.version}",
        "target_cc": record.target_cc,
        "shapes": record.shapes,
        "engines": len(record.engines),
        "engine_bytes": record.engine_bytes,
        "build_cache_hit": record.cache_hit,
        "profiles": [describe_profile(engine.options["profile"]) for engine in record.engines],
        "build_note": record.note,  # e.g. built for 8.9 because this GPU is not a TensorRT-RTX target
        "fp16_conversion_s": (record.fp16_conversion or {}).get("convert_s"),
    }


def one_off_costs(record: TensorRTRecord) -> dict[str, float]:
    """What it took to get the engines, like the onnxruntime rows count it: the export
    (``export_s``), the build, FP16 conversion of the ONNX included (``build_s``), and INT8's quantization
    with its calibration (``quantize_s``)."""
    costs = {"build_s": record.build_s + record.conversion_s, "export_s": record.export_s}
    if record.quantize_s is not None:
        costs["quantize_s"] = record.quantize_s
    return costs


def skipped_with_build_facts(reason: str, record: TensorRTRecord) -> CellFailure:
    """A skip that still carries the build's real cost and engine facts (``costs``, ``extra``):
    building ran where executing cannot, and its time and size are results."""
    return CellFailure(Status.SKIPPED, reason, costs=one_off_costs(record), extra=build_facts(record))


@dataclass
class _LiveEngine:
    """One deserialized engine with its execution context and what binding needs to know."""

    record: dict[str, Any]
    engine: Any
    context: Any
    runtime_config: Any  # TensorRT-RTX only; kept alive as long as its context
    runtime_cache: Any  # TensorRT-RTX's JIT-compiled kernels, saved on close
    runtime_cache_path: Path | None
    inputs: dict[str, torch.dtype]
    outputs: dict[str, torch.dtype]
    setup_s: float
    device_memory_bytes: int
    runtime_cache_hit: bool | None  # TensorRT-RTX: JIT kernels came from an earlier run


class TensorRTSession(Session):
    """All engines of one (variant, precision), deserialized up front: one in dynamic mode,
    one per cell in static mode (so a static cell's setup is its own, see ``cell_costs``)."""

    uses_torch_allocator = False  # its own arena/allocator: torch's peak would undercount

    def __init__(self, device: torch.device, record: TensorRTRecord, flavour: Flavour, *, cuda_graph: bool):
        if device.index is not None:
            torch.cuda.set_device(device)  # TensorRT deserializes onto the current device
        self.device = device
        self.trt = flavour.module
        self.flavour = flavour
        self.cuda_graph = cuda_graph
        self.stream = torch.cuda.Stream(device)
        self.logger = recording_logger(self.trt)
        self.runtime = self.trt.Runtime(self.logger)
        self.gpu_name = torch.cuda.get_device_name(device)
        self.live: list[_LiveEngine] = []
        for engine in record.engines:
            self.live.append(self._activate(engine.model_dump()))
        self.setup_s = sum(live.setup_s for live in self.live)
        self.costs = one_off_costs(record)
        self._conversion_s = record.conversion_s
        self.extra = {
            **build_facts(record),
            "input_dtypes": {name: str(dtype) for name, dtype in self.live[0].inputs.items()},
            "cuda_graph": self._graph_mode(),
            "device_memory_bytes": max(live.device_memory_bytes for live in self.live),
        }
        if flavour.name == RTX:
            self.extra["kernel_specialization"] = "eager"
            self.extra["runtime_cache_hit"] = all(live.runtime_cache_hit for live in self.live)

    # -- per cell

    def cell_costs(self, cell: Cell) -> dict[str, float]:
        """Static mode: the build (FP16 conversion included) and setup of the one engine serving this cell."""
        if len(self.live) == 1:
            return {}
        live = self._engine_for(cell, raise_outside=False)
        if live is None:
            return {}
        return {"build_s": live.record["build_s"] + self._conversion_s, "setup_s": live.setup_s}

    def prepare(self, inputs: dict[str, torch.Tensor], cell: Cell) -> CellRunner:
        live = self._engine_for(cell, raise_outside=True)
        context = live.context
        bound: dict[str, torch.Tensor] = {}
        for name, dtype in live.inputs.items():
            if name not in inputs:
                raise CellFailure(Status.ERROR,
                                  f"the engine wants input {name!r}; the model inputs are {sorted(inputs)}")
            tensor = inputs[name].to(device=self.device, dtype=dtype).contiguous()
            if not context.set_input_shape(name, tuple(tensor.shape)):
                shape = tuple(tensor.shape)
                raise CellFailure(Status.ERROR, f"TensorRT refused shape {shape} for input {name!r}: {self._errors()}")
            context.set_tensor_address(name, tensor.data_ptr())
            bound[name] = tensor
        outputs = {}
        for name, dtype in live.outputs.items():
            outputs[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device=self.device)
            context.set_tensor_address(name, outputs[name].data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream(self.device))  # the input copies are done first
        runner = TensorRTRunner(context, self.stream, bound, outputs, self._errors)
        if self.cuda_graph and self.flavour.name != RTX:
            runner.capture()
        return runner

    def close(self) -> None:
        """Keep what TensorRT-RTX compiled for the next run, then drop the engines."""
        for live in self.live:
            if live.runtime_cache is not None:
                write_atomic(live.runtime_cache_path, bytes(live.runtime_cache.serialize()))
        self.live.clear()

    # -- setup

    def _activate(self, record: dict[str, Any]) -> _LiveEngine:
        start = time.perf_counter()
        data = read_engine(record)  # its EngineError is a CellFailure: the cell's row
        problem = self._validity_problem(data)
        if problem:
            raise CellFailure(Status.SKIPPED, problem)
        engine = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise CellFailure(Status.ERROR,
                              f"{self.flavour.label} could not deserialize {record['path']}: {self._errors()}")
        runtime_config = runtime_cache = cache_path = cache_hit = None
        if self.flavour.name == RTX:
            runtime_config = engine.create_runtime_config()
            strategy = self.trt.DynamicShapesKernelSpecializationStrategy.EAGER
            runtime_config.dynamic_shapes_kernel_specialization_strategy = strategy
            if self.cuda_graph:
                runtime_config.cuda_graph_strategy = self.trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
            cache_path = _runtime_cache_path(record["path"], self.gpu_name)
            runtime_cache = runtime_config.create_runtime_cache()
            cache_hit = cache_path.is_file() and bool(runtime_cache.deserialize(cache_path.read_bytes()))
            runtime_config.set_runtime_cache(runtime_cache)
            context = engine.create_execution_context(runtime_config)  # the JIT compile happens here
        else:
            context = engine.create_execution_context()
        if context is None:
            raise CellFailure(Status.ERROR,
                              f"{self.flavour.label} could not create an execution context: {self._errors()}")
        inputs, outputs = {}, {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            dtype = self._torch_dtype(engine.get_tensor_dtype(name), name)
            is_input = engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT
            (inputs if is_input else outputs)[name] = dtype
        setup_s = time.perf_counter() - start
        memory = int(engine.device_memory_size_v2)
        return _LiveEngine(
            record, engine, context, runtime_config, runtime_cache, cache_path,
            inputs, outputs, setup_s, memory, cache_hit,
        )

    def _validity_problem(self, data: bytes) -> str | None:
        """TensorRT-RTX says why an engine cannot run here before deserializing it (e.g. an
        unsupported compute capability); full TensorRT has no such check and just fails."""
        if not hasattr(self.runtime, "get_engine_validity"):
            return None
        validity, diagnostics = self.runtime.get_engine_validity(data)
        if validity != self.trt.EngineValidity.INVALID:
            return None
        flags = self.trt.EngineInvalidityDiagnostics.__members__.items()
        causes = ", ".join(name for name, flag in flags if int(diagnostics) & int(flag)) or "no diagnostics"
        return f"{self.flavour.label} cannot run this engine here: {causes}; {self._errors()}"

    def _engine_for(self, cell: Cell, *, raise_outside: bool) -> _LiveEngine | None:
        for live in self.live:
            if profile_covers(live.record["options"]["profile"], cell.batch, cell.seq):
                return live
        if not raise_outside:
            return None
        built = "; ".join(describe_profile(live.record["options"]["profile"]) for live in self.live[:4])
        more = f" and {len(self.live) - 4} more" if len(self.live) > 4 else ""
        raise CellFailure(
            Status.SKIPPED,
            f"cell batch {cell.batch} x seq {cell.seq} is outside the built engine profile(s) ({built}{more}); "
            "rerun the tensorrt stage with this grid",
        )

    def _torch_dtype(self, trt_dtype: Any, name: str) -> torch.dtype:
        dtype = _TORCH_DTYPES.get(trt_dtype.name)
        if dtype is None:
            raise CellFailure(
                Status.ERROR, f"tensor {name!r} has TensorRT type {trt_dtype.name}, which has no torch equivalent"
            )
        return dtype

    def _graph_mode(self) -> str | None:
        if not self.cuda_graph:
            return None
        return "tensorrt-rtx whole-graph capture" if self.flavour.name == RTX else "torch CUDA graph capture"

    def _errors(self) -> str:
        return " | ".join(self.logger.errors()[-3:]) or "no error message from TensorRT"


def _runtime_cache_path(engine_path: str, gpu_name: str) -> Path:
    """Next to its engine, per GPU model: TensorRT-RTX rejects a cache from another GPU or version
    (``deserialize`` returns False), so a cold start is recorded as ``runtime_cache_hit: false``."""
    return Path(engine_path).with_suffix(f".{slug(gpu_name)}.runtime")


class TensorRTRunner(CellRunner):
    def __init__(self, context: Any, stream: torch.cuda.Stream, inputs, outputs, errors):
        self.context = context
        self.cuda_stream = stream
        self._inputs = inputs  # kept alive: TensorRT holds their addresses
        self._outputs = outputs
        self._errors = errors
        self._graph: torch.cuda.CUDAGraph | None = None

    def run(self) -> None:
        if self._graph is not None:
            with torch.cuda.stream(self.cuda_stream):
                self._graph.replay()
        elif not self.context.execute_async_v3(self.cuda_stream.cuda_stream):
            raise RuntimeError(f"execute_async_v3 failed: {self._errors()}")

    def capture(self) -> None:
        """Record one enqueue into a CUDA graph. One plain call first: TensorRT finishes
        shape-dependent setup on the first enqueue after a shape change, which must not be captured."""
        self.run()
        self.cuda_stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.cuda_stream):
                ok = self.context.execute_async_v3(self.cuda_stream.cuda_stream)
        except RuntimeError as error:
            raise CellFailure(Status.ERROR, f"CUDA graph capture of the TensorRT engine failed: {error}") from error
        if not ok:
            raise CellFailure(Status.ERROR, f"execute_async_v3 failed during CUDA graph capture: {self._errors()}")
        self._graph = graph

    def outputs(self) -> dict[str, np.ndarray]:
        self.cuda_stream.synchronize()
        return {name: tensor.float().cpu().numpy() for name, tensor in self._outputs.items()}

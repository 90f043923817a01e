"""ONNX Runtime on the export stage's ONNX files: CPU EP, CUDA EP (IO binding, CUDA graphs), TensorRT EP.

Variants differ only by ``options``:

``provider``     ``cpu`` | ``cuda`` | ``tensorrt`` (default: ``cuda`` on a CUDA device, else ``cpu``)
``io_binding``   inputs placed on the device and outputs pre-allocated and bound once per cell, so a
                 timed call is the inference alone (default true). False times ``session.run`` with
                 host arrays: host↔device copies and output allocation included.
``cuda_graph``   capture each cell's run in a CUDA graph and replay it (CUDA/TensorRT EP, needs
                 io_binding): its own variant, never mixed in silently.
``quantization`` INT8 only: ``dynamic`` (CPU EP; its default) or ``static`` (QDQ, calibrated on the text
                 sample; the default of the CUDA and TensorRT EPs, the only one they run).
``fused``        FP32 on ONNX Runtime's fused FP32 graph instead of the plain export (default false).
                 CUDA graphs need it: the plain export's dynamic-shape arithmetic runs on the CPU EP,
                 and ORT refuses to capture a graph with CPU nodes.

FP32 runs the plain export (or the fused FP32 graph with ``fused``) with TF32 off (``use_tf32=0``, set
explicitly: the CUDA EP's default allows TF32); TF32 the same graphs with ``use_tf32=1``. FP16 runs ONNX
Runtime's fused FP16 graph on the CUDA EP; on the TensorRT EP it runs the plain export with TensorRT's FP16
mode (TensorRT cannot build the fused ``com.microsoft`` ops, it would hand them back to the CUDA EP).
INT8 runs ``onnx_int8``'s graph (``backends/onnxruntime/quantize.py``): dynamic on the CPU EP, static QDQ on
every EP (on the TensorRT EP with its INT8 mode, which takes the QDQ scales as they are).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from bench_pipeline.backends.base import (
    Backend,
    BackendContext,
    Cell,
    CellFailure,
    CellRunner,
    Session,
    is_out_of_memory,
)
from bench_pipeline.backends.onnxruntime.artifacts import (
    EXECUTION_PROVIDERS,
    ort_artifact_key,
    provider_unavailable,
)
from bench_pipeline.backends.onnxruntime.options import OrtOptions
from bench_pipeline.harness.status import Status
from bench_pipeline.model.source import precision_unsupported

_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_ONNX_TO_TORCH = {
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
    "tensor(float)": torch.float32,
    "tensor(float16)": torch.float16,
    "tensor(bfloat16)": torch.bfloat16,
}
TF32_ONLY_CUDA_EP = {
    "cpu": "TF32 is a GPU tensor-core mode: the CPU EP has none",
    "tensorrt": "the TensorRT EP has no TF32 switch (TensorRT allows TF32 tactics in FP32 by default): TF32 runs "
                "on the CUDA EP and the tensorrt backend",
}
_TORCH_TO_NUMPY = {torch.int64: np.int64, torch.int32: np.int32, torch.float32: np.float32, torch.float16: np.float16}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        self._artifact(ctx, precision, OrtOptions.parse(options, ctx.device.type))

    def _artifact(self, ctx: BackendContext, precision: str, opts: OrtOptions) -> dict[str, Any]:
        """The export stage's artifact this variant runs, or why it cannot run here."""
        key = _artifact_key(precision, opts)
        if precision == "tf32":
            capability = precision_unsupported(ctx.device, precision)
            if capability:
                raise CellFailure(Status.UNSUPPORTED, capability)
        # before the artifacts: the export stage builds no fused graph for a provider that cannot run here
        unavailable = provider_unavailable(opts.provider, ctx.device.type)
        if unavailable:
            raise CellFailure(Status.SKIPPED, unavailable)
        if precision == "int8":
            _artifact(ctx.artifacts.get("export"), "fp32")
            return _artifact(ctx.artifacts.get("quantized"), key, stage="INT8 quantization")
        return _artifact(ctx.artifacts.get("export"), key)

    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        opts = OrtOptions.parse(options, ctx.device.type)
        artifact = self._artifact(ctx, precision, opts)
        trt_fp16 = opts.provider == "tensorrt" and precision == "fp16"
        trt_int8 = opts.provider == "tensorrt" and precision == "int8"
        tf32 = opts.provider == "cuda" and precision == "tf32"
        path = Path(artifact["path"])
        if not path.is_file():
            raise CellFailure(Status.FAIL_EXPORT, f"ONNX file {path} is missing: rerun the export stage")

        stream = torch.cuda.Stream(device=ctx.device) if opts.on_gpu else None
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = ctx.threads
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        input_names = export_inputs(ctx)
        providers = _providers(opts, ctx, stream, _EpModes(trt_fp16, trt_int8, tf32), input_names)
        start = time.perf_counter()
        try:
            session = ort.InferenceSession(str(path), session_options, providers=providers)
        except Exception as error:  # out of memory, or an EP that refuses the model (e.g. CUDA graphs with CPU nodes)
            status = Status.OOM if is_out_of_memory(error) else Status.ERROR
            hint = " (CUDA graphs need every node on the GPU: try fused: true)" if opts.cuda_graph else ""
            raise CellFailure(
                status, f"ONNX Runtime could not create a {opts.provider} session for {path.name}: {error}{hint}"
            ) from error
        setup_s = time.perf_counter() - start
        wanted = EXECUTION_PROVIDERS[opts.provider]
        if session.get_providers()[0] != wanted:
            raise CellFailure(
                Status.SKIPPED,
                f"{wanted} is installed but did not load (missing CUDA/cuDNN/TensorRT libraries?); "
                f"the session fell back to {session.get_providers()}",
            )
        export = ctx.artifacts["export"]
        costs = {"export_s": float(export["fp32"]["export_s"])}
        if "optimize_s" in artifact:
            costs["build_s"] = float(artifact["optimize_s"])
        if "quantize_s" in artifact:
            costs["quantize_s"] = float(artifact["quantize_s"])
        extra = {
            "provider": opts.provider,
            "session_providers": session.get_providers(),
            "io_binding": opts.io_binding,
            "cuda_graph": opts.cuda_graph,
            "fused": opts.fused,
            "tf32": tf32 if opts.provider == "cuda" else None,
            "trt_fp16": trt_fp16 if opts.provider == "tensorrt" else None,
            "trt_int8": trt_int8 if opts.provider == "tensorrt" else None,
            "quantization": artifact.get("method"),
            "calibration": artifact.get("calibration"),
            "threads": ctx.threads,
            "onnx_file": path.name,
            "onnx_size_bytes": artifact.get("size_bytes"),
            "onnx_sha256": artifact.get("sha256"),
            "exporter": export["fp32"].get("exporter"),
            "opset": export["fp32"].get("opset"),
            "export_cached": export["fp32"].get("cached"),
            "fusions": artifact.get("fusions"),
            "fusion_error": artifact.get("fusion_error"),
            "onnxruntime": ort.__version__,
        }
        return OrtSession(session, opts, ctx.device, stream, setup_s, costs, extra)


def _artifact_key(precision: str, opts: OrtOptions) -> str:
    """The artifact key this precision and variant run, or why none can."""
    if precision == "tf32" and opts.provider != "cuda":
        raise CellFailure(Status.UNSUPPORTED, TF32_ONLY_CUDA_EP[opts.provider])
    if precision == "int8" and opts.cuda_graph:
        raise CellFailure(Status.UNSUPPORTED, "INT8 runs the plain QDQ graph, whose shape arithmetic runs on the "
                                              "CPU EP: ONNX Runtime cannot capture it in a CUDA graph")
    key = ort_artifact_key(opts.provider, precision, opts.fused, opts.quantization)
    if key is None and precision == "fp16":  # only the CPU EP has no FP16 artifact
        raise CellFailure(
            Status.UNSUPPORTED,
            "ONNX Runtime's CPU EP has no FP16 kernels for most operators: FP16 needs cuda or tensorrt"
        )
    if key is None:
        raise CellFailure(Status.UNSUPPORTED,
                          f"no {precision} ONNX artifact: the export stage writes fp32 and fused fp16")
    return key


def export_inputs(ctx: BackendContext) -> list[str]:
    """The graph inputs of the plain export (every ONNX Runtime graph of it has the same)."""
    return ctx.artifacts["export"]["fp32"].get("inputs") or list(_INPUT_NAMES)


def _artifact(export: dict[str, Any] | None, key: str, stage: str = "export") -> dict[str, Any]:
    """The ``stage``'s artifact under ``key``; its (and the plain export's) failure as this cell's status."""
    if not export:
        raise CellFailure(Status.ERROR,
                          f"no {stage} artifacts in this run: the {stage} stage did not run before onnxruntime")
    needs = [key] if stage != "export" else ["fp32", key]
    for needed in dict.fromkeys(needs):
        artifact = export.get(needed)
        if not artifact:
            raise CellFailure(Status.SKIPPED, f"the {stage} stage made no {needed} artifact (export.optimize off?)")
        if artifact.get("status", Status.OK) != Status.OK:
            raise CellFailure(artifact["status"], artifact.get("reason", ""))
    return export[key]


@dataclass(frozen=True)
class _EpModes:
    """What the precision asks of the GPU EPs: TensorRT's FP16 / INT8 build modes, the CUDA EP's TF32."""

    trt_fp16: bool
    trt_int8: bool
    tf32: bool


def _providers(
    opts: OrtOptions, ctx: BackendContext, stream: torch.cuda.Stream | None, modes: _EpModes, input_names: list[str]
) -> list:
    if not opts.on_gpu:
        return ["CPUExecutionProvider"]
    device_id = ctx.device.index if ctx.device.index is not None else 0
    # ORT enqueues on our stream, so the harness's CUDA events (on CellRunner.cuda_stream) time the work
    common = {
        "device_id": str(device_id),
        "has_user_compute_stream": "1",
        "user_compute_stream": str(stream.cuda_stream),
    }
    cuda = common | {
        "enable_cuda_graph": _flag(opts.cuda_graph and opts.provider == "cuda"),
        "use_tf32": _flag(modes.tf32),  # explicit both ways: the CUDA EP's default allows TF32
    }
    if opts.provider == "cuda":
        return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
    cache = _tensorrt_cache_dir(ctx)
    cache.mkdir(parents=True, exist_ok=True)
    tensorrt = common | {
        "trt_fp16_enable": _flag(modes.trt_fp16),
        "trt_int8_enable": _flag(modes.trt_int8),  # QDQ scales as calibrated: no calibration table
        "trt_cuda_graph_enable": _flag(opts.cuda_graph),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": str(cache),
        **_trt_profile(ctx, input_names),
    }
    # nodes TensorRT cannot take run on the CUDA EP, on the same stream
    return [("TensorrtExecutionProvider", tensorrt), ("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]


def _tensorrt_cache_dir(ctx: BackendContext) -> Path:
    """The TensorRT EP's engine cache for this model's export, keyed by content (model weights and
    config, and the ONNX file). The EP names a cached engine after the graph's structure, not its
    weights, and checks nothing on reuse: two models of one architecture in one folder would
    run each other's engines."""
    model = ctx.model_info["weights_sha256"][:16]
    onnx = ctx.artifacts["export"]["fp32"]["sha256"][:16]
    return ctx.workdir / "ort_tensorrt_cache" / f"{model}-{onnx}"


def _trt_profile(ctx: BackendContext, input_names: list[str]) -> dict[str, str]:
    """One optimization profile spanning the grid, so TensorRT builds one engine up front instead
    of rebuilding whenever a cell exceeds the shapes seen so far."""
    max_batch = max(cell.batch for cell in ctx.cells)
    max_seq = max(cell.seq for cell in ctx.cells)

    def shapes(batch: int, seq: int) -> str:
        return ",".join(f"{name}:{batch}x{seq}" for name in input_names)

    return {
        "trt_profile_min_shapes": shapes(1, 1),
        "trt_profile_opt_shapes": shapes(max_batch, max_seq),
        "trt_profile_max_shapes": shapes(max_batch, max_seq),
    }


def _flag(value: bool) -> str:
    return "1" if value else "0"


class OrtSession(Session):
    uses_torch_allocator = False  # its own arena/allocator: torch's peak would undercount

    def __init__(
        self,
        session: ort.InferenceSession,
        opts: OrtOptions,
        device: torch.device,
        stream: torch.cuda.Stream | None,
        setup_s: float,
        costs: dict[str, float],
        extra: dict[str, Any],
    ):
        self.session = session
        self.opts = opts
        self.device = device if opts.on_gpu else torch.device("cpu")
        self.stream = stream
        self.setup_s = setup_s
        self.costs = costs
        self.extra = extra
        # CUDA graphs replay the addresses they captured: each cell's runner (buffers + its own
        # graph id) is kept alive for the session's life.
        self._graph_runners: list[_BoundRunner] = []

    def prepare(self, inputs: dict[str, torch.Tensor], cell: Cell) -> CellRunner:
        feeds = {}
        for meta in self.session.get_inputs():
            if meta.name not in inputs:
                raise ValueError(f"the ONNX model needs input {meta.name!r}; the cell's inputs are {sorted(inputs)}")
            feeds[meta.name] = inputs[meta.name].to(_ONNX_TO_TORCH[meta.type]).contiguous()
        if not self.opts.io_binding:
            return _HostRunner(self.session, feeds, self.stream)
        if not self.opts.cuda_graph:
            return _BoundRunner(self.session, feeds, cell, self.device, self.stream, graph_id=None)
        runner = _BoundRunner(self.session, feeds, cell, self.device, self.stream, graph_id=len(self._graph_runners))
        self._graph_runners.append(runner)
        return runner

    def close(self) -> None:
        self._graph_runners.clear()
        del self.session
        if self.opts.on_gpu:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()


class _HostRunner(CellRunner):
    """``session.run`` with host arrays: what an application without IO binding pays."""

    def __init__(self, session: ort.InferenceSession, feeds: dict[str, torch.Tensor], stream: torch.cuda.Stream | None):
        self.session = session
        self.feeds = {name: tensor.numpy() for name, tensor in feeds.items()}
        self.output_names = [meta.name for meta in session.get_outputs()]
        self.cuda_stream = stream  # ORT copies inputs and computes on this stream
        self._last: list[np.ndarray] = []

    def run(self) -> None:
        self._last = self.session.run(self.output_names, self.feeds)

    def outputs(self) -> dict[str, np.ndarray]:
        pairs = zip(self.output_names, self._last, strict=True)
        return {name: np.asarray(value, dtype=np.float32) for name, value in pairs}


class _BoundRunner(CellRunner):
    """Inputs and pre-allocated outputs as torch tensors on the device, bound once by address."""

    def __init__(
        self,
        session: ort.InferenceSession,
        feeds: dict[str, torch.Tensor],
        cell: Cell,
        device: torch.device,
        stream: torch.cuda.Stream | None,
        graph_id: int | None,
    ):
        self.session = session
        self.device = device
        self.cuda_stream = stream
        self.inputs = {name: tensor.to(device) for name, tensor in feeds.items()}
        self.outputs_on_device = {
            meta.name: torch.empty(_output_shape(meta, cell), dtype=_ONNX_TO_TORCH[meta.type], device=device)
            for meta in session.get_outputs()
        }
        self.binding = session.io_binding()
        for name, tensor in self.inputs.items():
            self._bind(self.binding.bind_input, name, tensor)
        for name, tensor in self.outputs_on_device.items():
            self._bind(self.binding.bind_output, name, tensor)
        self.run_options = ort.RunOptions()
        if device.type == "cuda":
            # outputs land in our buffers, so ORT need not synchronize after each run: the call stays
            # asynchronous like any CUDA launch, and the harness synchronizes
            self.run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        if graph_id is not None:
            self.run_options.add_run_config_entry("gpu_graph_id", str(graph_id))
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def _bind(self, bind, name: str, tensor: torch.Tensor) -> None:
        device_id = tensor.device.index if tensor.device.index is not None else 0
        bind(name, tensor.device.type, device_id, _TORCH_TO_NUMPY[tensor.dtype], list(tensor.shape), tensor.data_ptr())

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding, self.run_options)

    def outputs(self) -> dict[str, np.ndarray]:
        if self.cuda_stream is not None:
            self.cuda_stream.synchronize()
        # a copy: the bound buffers are overwritten by the next run
        return {
            name: tensor.to(device="cpu", dtype=torch.float32, copy=True).numpy()
            for name, tensor in self.outputs_on_device.items()
        }


def _output_shape(meta: Any, cell: Cell) -> list[int]:
    """An output's concrete shape: its symbolic axes are, in order, batch then sequence (the
    export names them so; the optimizer may rename them, the order stays)."""
    symbolic = iter((cell.batch, cell.seq))
    shape = []
    for dim in meta.shape:
        if isinstance(dim, int):
            shape.append(dim)
            continue
        try:
            shape.append(next(symbolic))
        except StopIteration:
            raise ValueError(f"output {meta.name} has more than two dynamic axes: {meta.shape}") from None
    return shape

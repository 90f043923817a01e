"""The small interface every backend implements, so the sweep can treat them all alike.

A backend turns (variant, precision) into a ``Session`` once (load, export, build, compile:
the one-off cost), and a session turns each grid cell's inputs into a ``CellRunner``
whose ``run`` is the only thing the harness times. Anything that stops a backend from
running raises ``CellFailure`` with a ``Status`` and a reason; the
sweep turns that into a row and goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from bench_pipeline.harness.status import Status

if TYPE_CHECKING:
    from bench_pipeline.config import BenchmarkConfig

# How allocators say they ran out when they raise a generic error or only log (CUDA, CPU allocator, ORT
# arena, C++'s std::bad_alloc, which ONNX Runtime passes on for a failed host allocation, and TensorRT's
# builder log: "OutOfMemory", cudaErrorMemoryAllocation). Compared lower-case.
_OOM_MESSAGES = (
    "out of memory", "outofmemory", "cudaerrormemoryallocation",
    "can't allocate memory", "cannot allocate memory", "failed to allocate memory", "bad_alloc",
)


def mentions_out_of_memory(text: str) -> bool:
    """Whether an error message or a library's error log says memory ran out."""
    lowered = text.lower()
    return any(m in lowered for m in _OOM_MESSAGES)


def is_out_of_memory(error: BaseException) -> bool:
    """The one out-of-memory test: torch's and Python's own errors, or a message that says so."""
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or mentions_out_of_memory(str(error))


class CellFailure(Exception):
    """A cell (or a whole variant) cannot produce a measurement; ``status`` says which kind.

    ``costs`` and ``extra`` keep what was measured before the failure (e.g. an engine's build
    time when only its execution is impossible here): a skip must not erase a real result.
    """

    def __init__(
        self,
        status: Status | str,
        reason: str,
        costs: dict[str, float] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.costs = costs or {}
        self.extra = extra or {}


def classify(error: BaseException) -> tuple[Status | str, str]:
    """(status, reason) of an exception that stopped a unit, a cell or a build: the one classifier."""
    if isinstance(error, CellFailure):
        return error.status, error.reason
    text = str(error).strip()
    message = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    if isinstance(error, ImportError):
        return Status.SKIPPED, f"a library this backend needs is not installed: {message}"
    if is_out_of_memory(error):
        return Status.OOM, message
    return Status.ERROR, message


@dataclass(frozen=True)
class Cell:
    batch: int
    seq: int


def grid_cells(config: BenchmarkConfig) -> list[Cell]:
    """The run's cells, batch-major: the order the reference, the plans and the dynamo compile share."""
    return [Cell(b, s) for b in config.grid.batch_sizes for s in config.grid.sequence_lengths]


@dataclass
class BackendContext:
    """What a backend may use: the resolved model, the device, and artifacts of earlier stages."""

    model_dir: Path
    model_info: dict[str, Any]
    device: torch.device
    threads: int
    cells: list[Cell]
    workdir: Path  # a project-local folder for caches and artifacts this backend writes
    artifacts: dict[str, Any] = field(default_factory=dict)  # e.g. ONNX paths, engines, compiled modules


class CellRunner(ABC):
    """One cell, ready to time: inputs already on the device, outputs pre-allocated where possible."""

    #: the CUDA stream the work is enqueued on, so the harness puts its events there (None: current stream)
    cuda_stream: torch.cuda.Stream | None = None

    @abstractmethod
    def run(self) -> None:
        """One inference. Asynchronous on GPU; the harness synchronizes."""

    @abstractmethod
    def outputs(self) -> dict[str, np.ndarray]:
        """The last run's outputs on the host as float32 (``last_hidden_state``, ``pooler_output``)."""


class Session(ABC):
    """A backend ready for one (variant, precision): the model loaded, compiled or built."""

    #: seconds spent getting ready (load, session creation, deserialization), recorded as setup_s
    setup_s: float = 0.0
    #: result columns this session fills for every cell (export_s, build_s, compile_s)
    costs: dict[str, float]
    #: backend facts for the ``extra`` column (fusion counts, engine size, graph breaks…)
    extra: dict[str, Any]
    #: where the session computes (an ONNX Runtime CPU variant in a CUDA run computes on the CPU)
    device: torch.device
    #: bytes of weights this session keeps on the device (its share of what the allocator holds)
    resident_bytes: int = 0
    #: False where the backend allocates device memory itself (ONNX Runtime, TensorRT): torch's
    #: allocator statistics would then see only the bound buffers, so no peak is reported
    uses_torch_allocator: bool = True

    @abstractmethod
    def prepare(self, inputs: dict[str, torch.Tensor], cell: Cell) -> CellRunner:
        """Bind one cell's host inputs (int64 CPU tensors) to the device and return its runner."""

    def close(self) -> None:
        """Release device memory before the next variant."""


class Backend(ABC):
    name: ClassVar[str]

    def precheck(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> None:
        """Raise ``CellFailure`` when this (variant, precision) cannot run here, from what is known
        without loading anything (precision on this device, a missing provider, a failed stage):
        the sweep then starts no worker process for it. ``open`` still checks everything."""

    @abstractmethod
    def open(self, ctx: BackendContext, variant: str, precision: str, options: dict[str, Any]) -> Session:
        """Get ready for (variant, precision); raise ``CellFailure`` when it cannot run here."""

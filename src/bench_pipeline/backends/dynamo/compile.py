"""torch.compile a model for every grid shape and record what compiling cost.

Kedro-free: the dynamo stage's node loads the model and makes the inputs; this module
compiles, times and inspects. Per (variant, precision) it records, per grid cell, the
first call on a cold compiler cache (``cold_s``) and on a warm one (``warm_s``), plus the
recompiles across the grid and the graph breaks with their reasons.

Two choices worth knowing:

* Cold is cold: each (variant, precision) compiles into its own project-local inductor
  cache directory, emptied first, with the in-memory caches cleared. Warm is a second
  ``torch.compile`` in the same process, in-memory caches cleared again, that finds the
  FX-graph, autotune and kernel caches the cold pass wrote: what a new process finds
  when the cache directory is kept (a deployment's second start).
* Every compile is ``isolate_recompiles=True`` instead of ``torch._dynamo.reset()``
  between passes: dynamo keeps compiled code on the model class's ``forward`` code object,
  so a global reset would throw away the modules already compiled for earlier variants,
  and the benchmark would silently recompile them. An isolated region gives the warm pass
  a fresh start and leaves every other compiled module intact.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench_pipeline.backends.base import is_out_of_memory
from bench_pipeline.harness.status import Status
from bench_pipeline.system.files import slug

OPTION_KEYS = ("backend", "mode", "dynamic", "fullgraph", "options", "attn_implementation")
ATTN_IMPLEMENTATIONS = (None, "eager", "sdpa")
#: backend names a library registers when it is imported: accepted by validation, and the
#: variant is ``skipped`` where the library (or its registration) is missing
LIBRARY_BACKENDS = {"tensorrt": "torch_tensorrt", "torch_tensorrt": "torch_tensorrt", "onnxrt": "onnxruntime"}
#: inductor options that turn CUDA graphs on; on CPU such a variant is ``unsupported``
#: rather than silently measured without them
_CUDA_GRAPH_MODES = ("reduce-overhead",)

log = logging.getLogger(__name__)


def allowed_modes() -> list[str]:
    """The modes torch.compile knows, from torch itself (it gained ``lite`` in 2.x)."""
    import torch._inductor

    return list(torch._inductor.list_mode_options())


def registered_backends(include_debug: bool = False) -> list[str]:
    import torch._dynamo

    return torch._dynamo.list_backends(exclude_tags=() if include_debug else ("debug", "experimental"))


def validate_variant_options(options: dict[str, Any]) -> None:
    """Raise ValueError naming the offending value and what is allowed, before anything compiles."""
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ValueError(f"unknown dynamo option(s) {unknown}; allowed: {list(OPTION_KEYS)}")
    backend = options.get("backend", "inductor")
    if not isinstance(backend, str) or (
        backend not in registered_backends(include_debug=True) and backend not in LIBRARY_BACKENDS
    ):
        raise ValueError(
            f"unknown dynamo backend {backend!r}; torch._dynamo.list_backends(): {registered_backends()}"
            f" (debug/experimental ones: torch._dynamo.list_backends(None)); provided by libraries when"
            f" installed: {sorted(LIBRARY_BACKENDS)}"
        )
    mode = options.get("mode")
    if mode is not None and mode not in allowed_modes():
        raise ValueError(f"unknown torch.compile mode {mode!r}; allowed: {[None, *allowed_modes()]}")
    for flag in ("dynamic", "fullgraph"):
        if not isinstance(options.get(flag, False), bool):
            raise ValueError(f"dynamo option {flag!r} must be true or false, got {options[flag]!r}")
    compile_options = options.get("options") or {}
    if not isinstance(compile_options, dict):
        raise ValueError(f"dynamo option 'options' must be a mapping, got {compile_options!r}")
    if mode is not None and compile_options:
        # torch.compile refuses both at once; say so now rather than at the first compile
        raise ValueError(
            f"dynamo options: give either mode ({mode!r}) or options ({sorted(compile_options)}), not both;"
            f" a mode is a preset of options: torch._inductor.list_mode_options()[{mode!r}]"
        )
    if backend == "inductor":
        import torch._inductor

        unknown_inductor = sorted(set(compile_options) - set(torch._inductor.list_options()))
        if unknown_inductor:
            raise ValueError(
                f"unknown inductor option(s) {unknown_inductor}; see torch._inductor.list_options()"
            )
    if options.get("attn_implementation") not in ATTN_IMPLEMENTATIONS:
        raise ValueError(
            f"unknown attn_implementation {options['attn_implementation']!r}; allowed: {list(ATTN_IMPLEMENTATIONS)}"
        )


@dataclass(frozen=True)
class CompileSpec:
    """One dynamo variant's torch.compile arguments (validated)."""

    backend: str = "inductor"
    mode: str | None = None
    dynamic: bool = False  # False: one compile per grid shape; True: one compile for the grid
    fullgraph: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> CompileSpec:
        validate_variant_options(options)
        return cls(
            backend=options.get("backend", "inductor"),
            mode=options.get("mode"),
            dynamic=options.get("dynamic", False),
            fullgraph=options.get("fullgraph", False),
            options=dict(options.get("options") or {}),
        )

    def requests_cuda_graphs(self) -> bool:
        """CUDA graphs asked for by name (backend, mode or option), not as part of max-autotune."""
        return (
            self.backend == "cudagraphs"
            or self.mode in _CUDA_GRAPH_MODES
            or bool(self.options.get("triton.cudagraphs"))
        )

    def uses_cuda_graphs(self, device: torch.device) -> bool:
        """Whether the compiled module replays CUDA graphs, so reports keep that axis apart."""
        if device.type != "cuda":
            return False
        if self.backend == "inductor":
            import torch._inductor

            preset = torch._inductor.list_mode_options().get(self.mode or "default", {})
            return bool({**preset, **self.options}.get("triton.cudagraphs"))
        return self.requests_cuda_graphs()

    def describe(self, device: torch.device) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "mode": self.mode,
            "dynamic": self.dynamic,
            "fullgraph": self.fullgraph,
            "options": self.options,
            "cuda_graphs": self.uses_cuda_graphs(device),
        }


@dataclass
class CellCompile:
    """One grid cell's first calls. ``status`` is a result status (ok, fail_compile, oom, skipped)."""

    status: str = Status.OK
    reason: str | None = None
    cold_s: float | None = None
    warm_s: float | None = None
    frames_compiled: int = 0  # dynamo frames compiled by this cell's cold first call (0: no recompile)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "cold_s": self.cold_s,
            "warm_s": self.warm_s,
            "frames_compiled": self.frames_compiled,
        }


@dataclass
class CompiledVariant:
    """A compiled module and what it cost. ``status`` other than ok: nothing was compiled."""

    spec: CompileSpec
    status: str = Status.OK
    reason: str | None = None
    module: Callable[..., Any] | None = None
    cells: dict[str, CellCompile] = field(default_factory=dict)
    recompiles: int = 0
    recompile_reasons: list[str] = field(default_factory=list)
    graph_breaks: int = 0  # the most graph breaks one cell's trace hit
    break_reasons: list[str] = field(default_factory=list)


def unavailable(spec: CompileSpec, device: torch.device) -> tuple[str, str] | None:
    """(status, reason) when this variant cannot compile here at all, before any work."""
    if spec.backend in LIBRARY_BACKENDS:
        missing = _library_backend_missing(spec.backend)
        if missing:
            return Status.SKIPPED, missing
    if device.type != "cuda" and spec.requests_cuda_graphs():
        return Status.UNSUPPORTED, f"CUDA graphs ({_cuda_graph_request(spec)}) need a CUDA device, not {device}"
    if device.type != "cuda" and spec.backend in ("tensorrt", "torch_tensorrt"):
        return Status.UNSUPPORTED, f"backend {spec.backend!r} needs a CUDA device, not {device}"
    if device.type == "cpu" and spec.backend == "inductor":
        return _missing_cpp_compiler()
    return None


def _cuda_graph_request(spec: CompileSpec) -> str:
    if spec.backend == "cudagraphs":
        return "backend 'cudagraphs'"
    if spec.mode in _CUDA_GRAPH_MODES:
        return f"mode {spec.mode!r}"
    return "option 'triton.cudagraphs'"


def _library_backend_missing(backend: str) -> str | None:
    library = LIBRARY_BACKENDS[backend]
    try:
        importlib.import_module(library)  # torch_tensorrt registers its backends on import
    except ImportError as error:
        return f"dynamo backend {backend!r} needs {library}, which is not importable: {error}"
    if backend not in registered_backends(include_debug=True):
        return (
            f"dynamo backend {backend!r} is not registered in torch {torch.__version__} although {library} is"
            f" installed (torch no longer ships it); registered: {registered_backends()}"
        )
    return None


def _missing_cpp_compiler() -> tuple[str, str] | None:
    """Inductor on CPU writes C++ and needs a compiler; without one say so, not a stack trace."""
    from torch._inductor import cpp_builder, exc

    try:
        cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler as error:
        return Status.SKIPPED, _no_compiler_reason(error)
    return None


def _no_compiler_reason(error: BaseException) -> str:
    return f"inductor on CPU needs a working C++ compiler (install g++ or set CXX): {error}"


def compile_variant(
    model: torch.nn.Module,
    cell_inputs: dict[str, dict[str, torch.Tensor]],
    spec: CompileSpec,
    device: torch.device,
    cache_dir: Path,
    *,
    measure_warm: bool = True,
) -> CompiledVariant:
    """Compile ``model`` over the grid and time each cell's first call, cold then warm.

    ``cell_inputs`` maps cell names (grid order) to keyword inputs already on ``device``.
    A cell that fails to compile gets its own status; the other cells go on.
    """
    result = CompiledVariant(spec=spec)
    blocked = unavailable(spec, device)
    if blocked:
        result.status, result.reason = blocked
        return result
    from torch._inductor.utils import clear_caches

    shutil.rmtree(cache_dir, ignore_errors=True)  # cold means cold, on every run
    cache_dir.mkdir(parents=True)
    with compiler_caches_in(cache_dir):
        result.module = compile_module(model, spec, len(cell_inputs))
        breaks_seen: Counter[str] = Counter()
        for name, inputs in cell_inputs.items():
            result.cells[name] = _cold_first_call(result, inputs, device, breaks_seen)
        result.break_reasons = list(breaks_seen)
        if measure_warm and not CAN_ISOLATE:
            log.warning(
                "warm-cache compile times need torch >= 2.13 (isolate_recompiles); torch %s: cold times only",
                torch.__version__,
            )
        elif measure_warm:
            clear_caches()  # warm must come from the cache files, as in a new process
            result.module = compile_module(model, spec, len(cell_inputs))
            for name, inputs in cell_inputs.items():
                if result.cells[name].status == Status.OK:
                    _warm_first_call(result, name, inputs, device)
    return result


# torch >= 2.13 compiles a module apart from every other compiled module (isolate_recompiles) and
# takes the recompile limit per call; older releases have neither keyword.
_COMPILE_KEYWORDS = inspect.signature(torch.compile).parameters
CAN_ISOLATE = "isolate_recompiles" in _COMPILE_KEYWORDS


def compile_module(model: torch.nn.Module, spec: CompileSpec, cells: int) -> Callable[..., Any]:
    """``torch.compile`` as every compile of this project calls it (lazy: shapes compile on first call)."""
    # a static grid compiles once per shape; above the limit dynamo would silently run eager
    limit = max(8, 2 * cells)
    extra: dict[str, Any] = {"isolate_recompiles": True} if CAN_ISOLATE else {}
    if "recompile_limit" in _COMPILE_KEYWORDS:
        extra["recompile_limit"] = limit
    else:
        # One global limit counts the cache entries of every variant compiled from the same
        # forward code, so each compile raises it by its own share.
        torch._dynamo.config.recompile_limit += limit
    return torch.compile(
        model,
        backend=spec.backend,
        mode=spec.mode,
        dynamic=spec.dynamic,
        fullgraph=spec.fullgraph,
        options=spec.options or None,
        **extra,
    )


def _cold_first_call(
    result: CompiledVariant, inputs: dict[str, torch.Tensor], device: torch.device, breaks_seen: Counter[str]
) -> CellCompile:
    from torch._dynamo.utils import clear_compilation_metrics, counters, get_compilation_metrics

    frames_before = counters["frames"]["ok"]
    breaks_before = Counter(counters["graph_break"])
    clear_compilation_metrics()
    try:
        seconds = _timed_call(result.module, inputs, device)
    except Exception as error:  # noqa: BLE001 - one shape failing must not stop the grid
        status, reason = classify_error(error, result.spec.backend)
        return CellCompile(status=status, reason=reason)
    new_breaks = Counter(counters["graph_break"]) - breaks_before
    breaks_seen.update({_summary(reason): count for reason, count in new_breaks.items()})
    result.graph_breaks = max(result.graph_breaks, sum(new_breaks.values()))
    reasons = [_first_line(m.recompile_reason) for m in get_compilation_metrics() if m.recompile_reason]
    result.recompiles += len(reasons)
    result.recompile_reasons = list(dict.fromkeys(result.recompile_reasons + reasons))
    frames = counters["frames"]["ok"] - frames_before
    if frames == 0 and result.spec.dynamic is False:
        # A static compile must compile every new shape; none means dynamo gave up (e.g. its
        # recompile limit) and this shape would run eagerly under the compiled variant's name.
        return CellCompile(
            status=Status.FAIL_COMPILE,
            reason=f"backend {result.spec.backend!r}: dynamo compiled nothing for this new shape and would run it "
            f"eagerly (recompile_limit={torch._dynamo.config.recompile_limit} reached?)",
            cold_s=seconds,
        )
    return CellCompile(cold_s=seconds, frames_compiled=frames)


def _warm_first_call(
    result: CompiledVariant, name: str, inputs: dict[str, torch.Tensor], device: torch.device
) -> None:
    cell = result.cells[name]
    try:
        cell.warm_s = _timed_call(result.module, inputs, device)
    except Exception as error:  # noqa: BLE001
        status, reason = classify_error(error, result.spec.backend)
        cell.status, cell.reason = status, f"warm-cache compile: {reason}"


def _timed_call(module: Callable[..., Any], inputs: dict[str, torch.Tensor], device: torch.device) -> float:
    """Seconds of one call, compile included; synchronized so GPU work is inside the interval."""
    _synchronize(device)
    started = time.perf_counter()
    with torch.inference_mode():
        module(**inputs)
    _synchronize(device)
    return time.perf_counter() - started


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def classify_error(error: BaseException, backend: str) -> tuple[str, str]:
    """(status, reason) for an exception from a compiling call: the reason is the first line of
    the error that matters (the backend's own exception, not dynamo's wrapper) and the backend."""
    from torch._inductor import exc

    chain = _exception_chain(error)
    if any(isinstance(e, exc.InvalidCxxCompiler) for e in chain):
        return Status.SKIPPED, _no_compiler_reason(next(e for e in chain if isinstance(e, exc.InvalidCxxCompiler)))
    root = chain[-1]
    message = f"backend {backend!r}: {type(root).__name__}: {_summary(str(root))}"
    if any(is_out_of_memory(e) for e in chain):
        return Status.OOM, message
    if any(isinstance(e, (ImportError, exc.TritonMissing)) for e in chain):
        return Status.SKIPPED, message  # a library the backend needs is missing
    return Status.FAIL_COMPILE, message


def _exception_chain(error: BaseException) -> list[BaseException]:
    """The error, then what it wraps (dynamo's ``inner_exception``, ``__cause__``), innermost last."""
    chain = [error]
    while True:
        inner = getattr(chain[-1], "inner_exception", None) or chain[-1].__cause__
        if inner is None or inner in chain:
            return chain
        chain.append(inner)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _summary(text: str) -> str:
    """The first line, and dynamo's one-line ``Explanation:`` where it gives one: its graph-break
    messages start with a category ("Failed to trace builtin operator") that names no culprit."""
    explanation = next((line.strip() for line in text.splitlines() if line.strip().startswith("Explanation:")), None)
    first = _first_line(text)
    return f"{first} ({explanation.removeprefix('Explanation:').strip()})" if explanation else first


def warm_up_compiler(device: torch.device, scratch_root: Path) -> None:
    """Pay the once-per-process costs (imports, toolchain and ISA probes) on a throwaway function,
    so the first variant's cold times are comparable with the others'."""
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_root) as scratch, compiler_caches_in(Path(scratch)):
        extra = {"isolate_recompiles": True} if CAN_ISOLATE else {}
        function = torch.compile(lambda x: torch.nn.functional.gelu(x @ x) + 1, **extra)
        with torch.inference_mode():
            function(torch.ones(8, 8, device=device))
        _synchronize(device)


@contextmanager
def compiler_caches_in(directory: Path) -> Iterator[None]:
    """Inductor's on-disk caches (FX graph, AOTAutograd, autotune, C++ and Triton kernels) in
    ``directory``, its in-memory caches cleared first; the environment restored afterwards."""
    from torch._inductor.utils import clear_caches

    variables = {"TORCHINDUCTOR_CACHE_DIR": directory, "TRITON_CACHE_DIR": directory / "triton"}
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update({name: str(path) for name, path in variables.items()})
    clear_caches()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cache_dir_for(root: Path, variant: str, precision: str) -> Path:
    return root / slug(f"{variant}-{precision}", keep="_.-")

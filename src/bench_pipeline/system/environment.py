"""What the machine looked like while it measured, so a number can be trusted or explained later.

A latency means little without the GPU, driver, clocks and library versions behind it, and a
shared or throttled GPU silently makes every number worse. This module records those facts
as one flat dict with stable dotted keys (``gpu.name``, ``lib.torch``, ``cpu.model``) that goes
to JSON, to the report and to MLflow tags unchanged. Values are JSON scalars, or short lists
(providers, throttle reasons, other GPU processes).

GPU facts come from NVML through ``nvidia-ml-py`` (not by parsing ``nvidia-smi``, whose text
changes between drivers). Reading the environment must never cost a measurement: no GPU, no
NVML, an NVML call a board does not support, or a library that fails to import all end up as
``None`` values and a reason string, never as an exception.

Kedro-free on purpose: the report and the sweep call it, and it is tested on its own.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import torch

# Clock event ("throttle") reason bits, as defined in nvml.h (``nvmlClocksEventReason*``, formerly
# ``nvmlClocksThrottleReason*``). Kept here rather than read from pynvml so that decoding is a pure
# function that works without NVML; the test checks the table against pynvml's constants.
CLOCK_EVENT_REASONS = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}

# Reasons that do not slow a benchmark down: an idle GPU between runs, clocks someone set on
# purpose, boost synchronised across boards, a display. Every other reason (power, thermal,
# hardware slowdown, and any bit this table does not know) means the GPU ran below its clocks.
BENIGN_CLOCK_REASONS = frozenset(
    {"gpu_idle", "applications_clocks_setting", "sync_boost", "display_clock_setting"}
)

# A GPU held at its power limit by the benchmark's own work (``sw_power_cap``) is the steady state
# of a GPU-bound cell on that board, not a disturbance from outside: on the H200 every round of
# nine GPU-bound cells (32x512 and two FP16 CUDA-graph cells) reported it while their rounds agreed
# within 3.5 % (most within 1 %). It is recorded as a warning but does not contaminate a round;
# thermal, hardware and unknown slowdowns do.
OWN_LOAD_CLOCK_REASONS = frozenset({"sw_power_cap"})

# A clock that falls by more than this between the start and the end of a run is worth a warning.
CLOCK_DROP_WARNING = 0.10

# The Python modules whose versions explain a result; tried by import, so a broken install shows.
LIBRARY_MODULES = (
    "torch",
    "transformers",
    "onnx",
    "onnxruntime",
    "tensorrt",
    "tensorrt_rtx",  # TensorRT for RTX: wheel ``tensorrt_rtx``, module ``tensorrt_rtx``
    "tensorrt_rtx_bindings",  # the same, where only the ``tensorrt-rtx-cu13-bindings`` wheel is installed
    "kedro",
    "kedro_mlflow",
    "mlflow",
    "numpy",
    "pandas",
    "pydantic",
    "pynvml",  # nvidia-ml-py
)

# Facts of the GPU's state: read at the start and end of a run to see what changed.
GPU_STATE_KEYS = (
    "gpu.sm_clock_mhz",
    "gpu.mem_clock_mhz",
    "gpu.temperature_c",
    "gpu.power_draw_w",
    "gpu.memory_used_mb",
    "gpu.throttle_reasons",
    "gpu.throttled",
    "gpu.other_processes",
    "gpu.shared",
)

# Every GPU key a capture has, filled or None, so captures on any machine have the same columns.
GPU_KEYS = (
    "gpu.reason",  # None when all GPU facts could be read; else why some or all are missing
    "gpu.index",
    "gpu.uuid",
    "gpu.name",
    "gpu.compute_capability",
    "gpu.multiprocessors",
    "gpu.driver_version",
    "gpu.cuda_driver_version",
    "gpu.persistence_mode",
    "gpu.memory_total_mb",
    "gpu.sm_clock_max_mhz",
    "gpu.mem_clock_max_mhz",
    "gpu.power_limit_w",
    *GPU_STATE_KEYS,
)


def capture_environment(device: torch.device | str, threads: int) -> dict[str, Any]:
    """Everything about this machine and process that could change a benchmark number.

    ``threads`` is the CPU thread count the run asked for (recorded next to what torch uses).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    device = torch.device(device)
    return {
        "timestamp": _utc_now(),
        "device": str(device),
        **_host_facts(),
        **_cpu_facts(threads),
        **_torch_facts(),
        **_library_versions(),
        **_gpu_facts(device, state_only=False),
    }


def gpu_state_snapshot(device: torch.device | str) -> dict[str, Any]:
    """The GPU's changing state (clocks, temperature, throttling, other processes) right now.

    Taken after every cell (its `gpu_warnings`) and at the start and end of each backend's sweep
    (``compare_snapshots`` tells what changed).
    """
    return {"timestamp": _utc_now(), **_gpu_facts(torch.device(device), state_only=True)}


def compare_snapshots(start: dict[str, Any], end: dict[str, Any]) -> list[str]:
    """Warnings about what got worse on the GPU between two snapshots (empty: nothing did).

    Snapshots without GPU facts (CPU runs, NVML missing) give no warnings.
    """
    warnings = []
    for key, label in (("gpu.sm_clock_mhz", "SM clock"), ("gpu.mem_clock_mhz", "memory clock")):
        before, after = start.get(key), end.get(key)
        if before and after is not None and after < before * (1 - CLOCK_DROP_WARNING):
            drop = 100 * (before - after) / before
            warnings.append(
                f"{label} fell from {before} MHz to {after} MHz (-{drop:.0f} %) during the run: "
                "later cells may have run slower than this GPU can"
            )
    reasons_before = start.get("gpu.throttle_reasons") or []
    new_reasons = [r for r in throttling_reasons(end.get("gpu.throttle_reasons")) if r not in reasons_before]
    if new_reasons:
        warnings.append(f"clock throttling appeared during the run: {', '.join(new_reasons)}")
    start_pids = {p["pid"] for p in start.get("gpu.other_processes") or []}
    new_processes = [p for p in end.get("gpu.other_processes") or [] if p["pid"] not in start_pids]
    if new_processes:
        warnings.append(f"other processes started on the GPU during the run: {_describe(new_processes)}")
    return warnings


def state_warnings(snapshot: dict[str, Any]) -> list[str]:
    """Warnings about one capture or snapshot: a GPU shared with other processes, or throttled now."""
    warnings = []
    if snapshot.get("gpu.shared"):
        warnings.append(
            f"the GPU is shared with other processes: {_describe(snapshot['gpu.other_processes'])}; "
            "their work competes with the measurement"
        )
    if snapshot.get("gpu.throttled"):
        reasons = ", ".join(throttling_reasons(snapshot.get("gpu.throttle_reasons")))
        warnings.append(f"the GPU is throttling its clocks ({reasons})")
    return warnings


def contaminating_warnings(snapshot: dict[str, Any]) -> list[str]:
    """The ``state_warnings`` that make a round unfit to count: all but a GPU at its own power limit."""
    reasons = [r for r in snapshot.get("gpu.throttle_reasons") or [] if r not in OWN_LOAD_CLOCK_REASONS]
    outside = {"gpu.throttle_reasons": reasons, "gpu.throttled": bool(throttling_reasons(reasons))}
    return state_warnings(snapshot | outside)


def decode_clock_reasons(mask: int) -> list[str]:
    """NVML's clock event bitmask as names; bits this table does not know become ``unknown_0x…``."""
    names = []
    bit = 1
    while bit <= mask:
        if mask & bit:
            names.append(CLOCK_EVENT_REASONS.get(bit, f"unknown_{bit:#x}"))
        bit <<= 1
    return names


def throttling_reasons(reasons: list[str] | None) -> list[str]:
    """The reasons among ``reasons`` that slow the GPU down (see ``BENIGN_CLOCK_REASONS``)."""
    return [r for r in reasons or [] if r not in BENIGN_CLOCK_REASONS]


def mlflow_tags(env: dict[str, Any]) -> dict[str, str]:
    """The environment as MLflow tags: ``env.``-prefixed keys, string values within MLflow's limit.

    Unknown (None) values are left out rather than tagged "None"; lists of plain values are
    comma-joined so they read well in the UI ("none" when empty), anything else is JSON.
    """
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_TAG_VAL_LENGTH

    tags = {}
    for key, value in env.items():
        if value is None:
            continue
        tag_key = f"env.{key}"
        if len(tag_key) > MAX_ENTITY_KEY_LENGTH:
            raise ValueError(f"environment key {key!r} is too long for an MLflow tag (max {MAX_ENTITY_KEY_LENGTH})")
        text = _tag_text(value)
        if len(text) > MAX_TAG_VAL_LENGTH:
            marker = "…[truncated]"
            text = text[: MAX_TAG_VAL_LENGTH - len(marker)] + marker
        tags[tag_key] = text
    return tags


def read_nvml(uuids: list[str], *, state_only: bool = False) -> dict[str, Any]:
    """GPU facts from NVML for the first of ``uuids`` NVML knows (``GPU-…`` or ``MIG-…``).

    Never raises: if NVML cannot start or no uuid matches, every key is None and ``gpu.reason``
    says why. A single query the board does not support (power on some boards, most things on a
    MIG slice) leaves just that key None.
    """
    facts: dict[str, Any] = {"gpu.reason": None, **dict.fromkeys(GPU_STATE_KEYS if state_only else GPU_KEYS)}
    try:
        with _nvml_session() as nvml:
            handle = _handle_by_uuid(nvml, uuids)
            facts.update(_nvml_state(nvml, handle))
            if not state_only:
                facts.update(_nvml_static(nvml, handle))
    except _GpuFactsUnavailable as unavailable:
        facts["gpu.reason"] = str(unavailable)
    except Exception as error:  # an NVML/driver surprise must cost the run its GPU facts, not its measurements
        facts["gpu.reason"] = f"NVML query failed: {type(error).__name__}: {error}"
    return facts


class _GpuFactsUnavailable(Exception):
    """Why GPU facts cannot be read; becomes ``gpu.reason``."""


def _gpu_facts(device: torch.device, *, state_only: bool) -> dict[str, Any]:
    empty = {"gpu.reason": None, **dict.fromkeys(GPU_STATE_KEYS if state_only else GPU_KEYS)}
    if device.type != "cuda":
        return {**empty, "gpu.reason": f"benchmark device is {device.type}: no GPU facts recorded"}
    try:
        index, torch_facts = _torch_gpu(device)
    except _GpuFactsUnavailable as unavailable:
        return {**empty, "gpu.reason": str(unavailable)}
    nvml_facts = read_nvml(_nvml_uuid_candidates(torch_facts["gpu.uuid"]), state_only=state_only)
    if state_only:
        return nvml_facts
    # torch's name and compute capability stand even when NVML is missing
    return {**nvml_facts, **torch_facts, "gpu.index": index}


def _torch_gpu(device: torch.device) -> tuple[int, dict[str, Any]]:
    """The CUDA device torch will use, and what torch knows about it."""
    try:
        available = torch.cuda.is_available()
        count = torch.cuda.device_count() if available else 0
        index = device.index if device.index is not None else (torch.cuda.current_device() if available else 0)
        props = torch.cuda.get_device_properties(index) if index < count else None
    except Exception as error:  # a broken driver raises from inside torch; the run should still say why
        raise _GpuFactsUnavailable(f"torch could not query {device}: {type(error).__name__}: {error}") from error
    if not available:
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise _GpuFactsUnavailable(f"torch {torch.__version__} ({build}) sees no CUDA device")
    if props is None:
        raise _GpuFactsUnavailable(f"device {device} does not exist: torch sees {count} CUDA device(s)")
    return index, {
        "gpu.name": props.name,
        "gpu.compute_capability": f"{props.major}.{props.minor}",
        "gpu.multiprocessors": props.multi_processor_count,
        "gpu.uuid": str(props.uuid),
    }


def _nvml_uuid_candidates(torch_uuid: str) -> list[str]:
    """NVML names GPUs ``GPU-<uuid>`` and MIG slices ``MIG-<uuid>``; torch prints the bare uuid.

    Matching by uuid (not index) is what keeps the facts right under ``CUDA_VISIBLE_DEVICES``
    and CUDA's fastest-first device order, where torch's index and NVML's differ.
    """
    if torch_uuid.startswith(("GPU-", "MIG-")):
        return [torch_uuid]
    return [f"GPU-{torch_uuid}", f"MIG-{torch_uuid}"]


@contextmanager
def _nvml_session() -> Iterator[Any]:
    try:
        import pynvml
    except ImportError as error:
        raise _GpuFactsUnavailable("nvidia-ml-py (pynvml) is not installed") from error
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        raise _GpuFactsUnavailable(f"NVML unavailable: {error}") from error
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def _handle_by_uuid(nvml: Any, uuids: list[str]) -> Any:
    for uuid in uuids:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(uuid)
        except nvml.NVMLError:
            continue
    raise _GpuFactsUnavailable(f"NVML knows no GPU with uuid {' or '.join(uuids)}")


def _query(nvml: Any, names: tuple[str, ...], *args: Any) -> Any:
    """The first of NVML functions ``names`` that this driver supports, called; None if none is.

    Several names: the current NVML call first, then the one older drivers have.
    """
    for name in names:
        function = getattr(nvml, name, None)
        if function is None:
            continue
        try:
            return function(*args)
        except nvml.NVMLError:
            continue
    return None


def _nvml_static(nvml: Any, handle: Any) -> dict[str, Any]:
    """Facts that do not change during a run."""
    memory = _query(nvml, ("nvmlDeviceGetMemoryInfo",), handle)
    cuda_driver = _query(nvml, ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"))
    persistence = _query(nvml, ("nvmlDeviceGetPersistenceMode",), handle)
    return {
        "gpu.name": _query(nvml, ("nvmlDeviceGetName",), handle),
        "gpu.driver_version": _query(nvml, ("nvmlSystemGetDriverVersion",)),
        "gpu.cuda_driver_version": None if cuda_driver is None else f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}",
        "gpu.persistence_mode": None if persistence is None else persistence == nvml.NVML_FEATURE_ENABLED,
        "gpu.memory_total_mb": None if memory is None else _mib(memory.total),
        "gpu.sm_clock_max_mhz": _query(nvml, ("nvmlDeviceGetMaxClockInfo",), handle, nvml.NVML_CLOCK_SM),
        "gpu.mem_clock_max_mhz": _query(nvml, ("nvmlDeviceGetMaxClockInfo",), handle, nvml.NVML_CLOCK_MEM),
        "gpu.power_limit_w": _watts(
            _query(nvml, ("nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit"), handle)
        ),
    }


def _nvml_state(nvml: Any, handle: Any) -> dict[str, Any]:
    """Facts that can change during a run."""
    memory = _query(nvml, ("nvmlDeviceGetMemoryInfo",), handle)
    mask = _query(
        nvml, ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"), handle
    )
    reasons = None if mask is None else decode_clock_reasons(mask)
    others = _other_processes(nvml, handle)
    return {
        "gpu.sm_clock_mhz": _query(nvml, ("nvmlDeviceGetClockInfo",), handle, nvml.NVML_CLOCK_SM),
        "gpu.mem_clock_mhz": _query(nvml, ("nvmlDeviceGetClockInfo",), handle, nvml.NVML_CLOCK_MEM),
        "gpu.temperature_c": _query(
            nvml, ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"), handle, nvml.NVML_TEMPERATURE_GPU
        ),
        "gpu.power_draw_w": _watts(_query(nvml, ("nvmlDeviceGetPowerUsage",), handle)),
        "gpu.memory_used_mb": None if memory is None else _mib(memory.used),
        "gpu.throttle_reasons": reasons,
        "gpu.throttled": None if reasons is None else bool(throttling_reasons(reasons)),
        "gpu.other_processes": others,
        "gpu.shared": None if others is None else bool(others),
    }


def _other_processes(nvml: Any, handle: Any) -> list[dict[str, Any]] | None:
    """Processes other than this one holding memory on the GPU (None: NVML cannot list them).

    Inside a container NVML may report host pids; then this process can appear as "other" and
    the list says more than it should, never less.
    """
    compute = _query(nvml, ("nvmlDeviceGetComputeRunningProcesses",), handle)
    graphics = _query(nvml, ("nvmlDeviceGetGraphicsRunningProcesses",), handle)
    if compute is None and graphics is None:
        return None
    by_pid: dict[int, dict[str, Any]] = {}
    for process in [*(compute or []), *(graphics or [])]:
        if _of_this_sweep(process.pid) or process.pid in by_pid:
            continue
        used = process.usedGpuMemory
        by_pid[process.pid] = {
            "pid": process.pid,
            "name": _query(nvml, ("nvmlSystemGetProcessName",), process.pid),
            "used_memory_mb": None if used is None else _mib(used),
        }
    return sorted(by_pid.values(), key=lambda p: p["pid"])


def _of_this_sweep(pid: int) -> bool:
    """This process or another of its process group: the sweep's own idle unit workers hold GPU
    memory too, and are no competition (only the unit being timed runs)."""
    if pid == os.getpid():
        return True
    try:
        return os.getpgid(pid) == os.getpgid(0)
    except OSError:  # gone, or a host pid this container cannot see
        return False


def _host_facts() -> dict[str, Any]:
    try:
        distro = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:  # not a Linux with /etc/os-release
        distro = None
    return {
        "host.name": socket.gethostname(),
        "os.system": platform.system(),
        "os.kernel": platform.release(),
        "os.distro": distro,
        "os.machine": platform.machine(),
        "python.version": platform.python_version(),
    }


def _cpu_facts(threads: int) -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu.model": _cpu_model(),
        "cpu.logical_cores": os.cpu_count(),
        "cpu.usable_cores": usable,  # the cores this process may run on (container/taskset limits)
        "cpu.threads_requested": threads,
        "torch.num_threads": torch.get_num_threads(),
        "torch.num_interop_threads": torch.get_num_interop_threads(),
    }


def _cpu_model() -> str | None:
    """The CPU's marketing name from /proc/cpuinfo (stdlib only); platform's guess elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def _torch_facts() -> dict[str, Any]:
    return {
        "torch.cuda_runtime": torch.version.cuda,
        "torch.cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torch.cuda_available": torch.cuda.is_available(),
    }


def _library_versions() -> dict[str, Any]:
    """``lib.<module>``: the version, None when not installed; ``lib.import_errors`` for broken installs."""
    versions: dict[str, Any] = {}
    errors = []
    for module_name in LIBRARY_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name.split(".")[0]:  # installed, but one of its dependencies is missing
                errors.append(f"{module_name}: {error}")
            versions[f"lib.{module_name}"] = None
            continue
        except Exception as error:  # a native library that fails to load must not stop the run
            errors.append(f"{module_name}: {type(error).__name__}: {error}")
            versions[f"lib.{module_name}"] = None
            continue
        versions[f"lib.{module_name}"] = _module_version(module)
        if module_name == "onnxruntime":
            versions["lib.onnxruntime_providers"] = list(module.get_available_providers())
    versions["lib.import_errors"] = errors
    return versions


def _module_version(module: Any) -> str | None:
    """``__version__`` where the module has one, else its distribution's (pynvml has none)."""
    version = getattr(module, "__version__", None)
    if version is not None:
        return str(version)
    for distribution in importlib.metadata.packages_distributions().get(module.__name__, []):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _describe(processes: list[dict[str, Any]]) -> str:
    parts = []
    for p in processes:
        name = f" {p['name']}" if p.get("name") else ""
        memory = "" if p.get("used_memory_mb") is None else f", {p['used_memory_mb']:.0f} MiB"
        parts.append(f"pid {p['pid']}{name}{memory}")
    return "; ".join(parts)


def _tag_text(value: Any) -> str:
    if value == []:
        return "none"
    if isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _mib(n_bytes: int) -> float:
    return round(n_bytes / 2**20, 1)


def _watts(milliwatts: int | None) -> float | None:
    return None if milliwatts is None else milliwatts / 1000

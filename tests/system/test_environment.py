"""Environment capture: real captures on this CPU machine (no GPU, no NVML library here), and
the pure decision functions (throttle decoding, snapshot comparison) on hand-made snapshots."""

from __future__ import annotations

import ctypes.util
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import socket
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import torch

from bench_pipeline.system.environment import (
    CLOCK_EVENT_REASONS,
    GPU_KEYS,
    GPU_STATE_KEYS,
    LIBRARY_MODULES,
    capture_environment,
    compare_snapshots,
    contaminating_warnings,
    decode_clock_reasons,
    gpu_state_snapshot,
    mlflow_tags,
    read_nvml,
    state_warnings,
    throttling_reasons,
)

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the path for a machine without CUDA")
NO_NVML_LIBRARY = pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None, reason="checks the path for a machine without libnvidia-ml"
)


@pytest.fixture(scope="module")
def cpu_env():
    return capture_environment(torch.device("cpu"), threads=2)


def _snapshot(**facts):
    """A hand-made GPU snapshot: a healthy, idle, unshared GPU unless ``facts`` say otherwise."""
    healthy = {
        "gpu.reason": None,
        "gpu.sm_clock_mhz": 1980,
        "gpu.mem_clock_mhz": 2619,
        "gpu.temperature_c": 35,
        "gpu.power_draw_w": 70.0,
        "gpu.memory_used_mb": 500.0,
        "gpu.throttle_reasons": ["gpu_idle"],
        "gpu.throttled": False,
        "gpu.other_processes": [],
        "gpu.shared": False,
    }
    return {**healthy, **{key.replace("__", "."): value for key, value in facts.items()}}


# --- real captures on this machine ------------------------------------------------------------


def test_capture_on_cpu_records_host_and_cpu_facts_of_this_machine(cpu_env):
    assert cpu_env["device"] == "cpu"
    assert cpu_env["host.name"] == socket.gethostname()
    assert cpu_env["os.kernel"] == platform.release()
    assert cpu_env["python.version"] == platform.python_version()
    assert cpu_env["cpu.logical_cores"] == os.cpu_count()
    assert cpu_env["cpu.usable_cores"] == len(os.sched_getaffinity(0))
    assert cpu_env["cpu.threads_requested"] == 2
    assert cpu_env["torch.num_threads"] == torch.get_num_threads()
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        assert cpu_env["cpu.model"] and cpu_env["cpu.model"] in cpuinfo.read()
    taken = datetime.fromisoformat(cpu_env["timestamp"])
    assert taken.utcoffset() == timedelta(0)
    assert datetime.now(timezone.utc) - taken < timedelta(minutes=10)


def test_capture_on_cpu_records_the_versions_of_the_imported_libraries(cpu_env):
    import onnxruntime
    import transformers

    assert cpu_env["lib.torch"] == torch.__version__
    assert cpu_env["lib.transformers"] == transformers.__version__
    assert cpu_env["lib.onnxruntime"] == onnxruntime.__version__
    assert cpu_env["lib.onnxruntime_providers"] == onnxruntime.get_available_providers()
    assert "CPUExecutionProvider" in cpu_env["lib.onnxruntime_providers"]
    assert cpu_env["lib.pynvml"] == importlib.metadata.version("nvidia-ml-py")  # pynvml has no __version__
    assert cpu_env["torch.cuda_runtime"] == torch.version.cuda
    for name in ("onnx", "kedro", "kedro_mlflow", "mlflow", "numpy", "pandas", "pydantic"):
        assert cpu_env[f"lib.{name}"] == importlib.import_module(name).__version__, name


def test_capture_records_tensorrt_versions_or_none_when_not_installed(cpu_env):
    for name in ("tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings"):
        if importlib.util.find_spec(name) is None:
            assert cpu_env[f"lib.{name}"] is None
        else:
            assert cpu_env[f"lib.{name}"] == importlib.import_module(name).__version__
    assert cpu_env["lib.import_errors"] == []


def test_capture_on_cpu_device_leaves_gpu_facts_none_and_says_why(cpu_env):
    assert cpu_env["gpu.reason"] == "benchmark device is cpu: no GPU facts recorded"
    assert all(cpu_env[key] is None for key in GPU_KEYS if key != "gpu.reason")


@NO_CUDA
def test_capture_for_cuda_on_a_torch_without_cuda_says_why_instead_of_raising(cpu_env):
    env = capture_environment("cuda:0", threads=2)
    assert "sees no CUDA device" in env["gpu.reason"]
    assert f"torch {torch.__version__}" in env["gpu.reason"]
    assert all(env[key] is None for key in GPU_KEYS if key != "gpu.reason")
    assert env.keys() == cpu_env.keys()  # same columns whatever the device


def test_capture_is_flat_and_survives_a_json_round_trip(cpu_env):
    assert json.loads(json.dumps(cpu_env)) == cpu_env
    assert all(not isinstance(value, dict) for value in cpu_env.values())
    expected_libs = {f"lib.{name}" for name in LIBRARY_MODULES}
    assert expected_libs <= cpu_env.keys()
    assert set(GPU_KEYS) <= cpu_env.keys()


@pytest.mark.parametrize("threads", [0, -1, 1.5, None, True])
def test_capture_rejects_a_thread_count_that_is_not_a_positive_integer(threads):
    with pytest.raises(ValueError, match=rf"threads must be a positive integer, got {threads!r}"):
        capture_environment("cpu", threads=threads)


@NO_NVML_LIBRARY
def test_read_nvml_without_the_nvml_library_gives_a_reason_and_no_facts():
    facts = read_nvml(["GPU-00000000-0000-0000-0000-000000000000"])
    assert facts["gpu.reason"] == "NVML unavailable: NVML Shared Library Not Found"
    assert facts.keys() == set(GPU_KEYS)
    assert all(facts[key] is None for key in GPU_KEYS if key != "gpu.reason")

    state = read_nvml(["GPU-00000000-0000-0000-0000-000000000000"], state_only=True)
    assert state["gpu.reason"] == "NVML unavailable: NVML Shared Library Not Found"
    assert state.keys() == {"gpu.reason", *GPU_STATE_KEYS}


@NO_CUDA
def test_gpu_state_snapshots_without_a_gpu_have_a_reason_and_compare_without_warnings():
    start, end = gpu_state_snapshot("cuda"), gpu_state_snapshot("cuda")
    assert "sees no CUDA device" in start["gpu.reason"]
    assert start.keys() == {"timestamp", "gpu.reason", *GPU_STATE_KEYS}
    assert compare_snapshots(start, end) == []
    assert state_warnings(start) == []
    cpu = gpu_state_snapshot("cpu")
    assert cpu["gpu.reason"] == "benchmark device is cpu: no GPU facts recorded"


# --- mlflow tags -------------------------------------------------------------------------------


def test_mlflow_tags_are_prefixed_strings_within_mlflow_limits(cpu_env):
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_TAG_VAL_LENGTH

    tags = mlflow_tags(cpu_env)
    assert tags["env.lib.torch"] == torch.__version__
    assert tags["env.cpu.threads_requested"] == "2"
    assert tags["env.lib.onnxruntime_providers"] == ", ".join(cpu_env["lib.onnxruntime_providers"])
    assert "env.gpu.name" not in tags  # None: unknown, left out rather than tagged "None"
    assert all(key.startswith("env.") and len(key) <= MAX_ENTITY_KEY_LENGTH for key in tags)
    assert all(isinstance(value, str) and len(value) <= MAX_TAG_VAL_LENGTH for value in tags.values())


def test_mlflow_tags_truncate_long_values_and_write_lists_readably():
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    processes = [{"pid": 7, "name": "python", "used_memory_mb": 10.0}]
    tags = mlflow_tags({"long": "x" * 20_000, "gpu.other_processes": processes, "gpu.throttle_reasons": []})
    assert len(tags["env.long"]) == MAX_TAG_VAL_LENGTH
    assert tags["env.long"].endswith("…[truncated]")
    assert json.loads(tags["env.gpu.other_processes"]) == processes
    assert tags["env.gpu.throttle_reasons"] == "none"


def test_mlflow_tags_are_accepted_by_a_real_mlflow_store(cpu_env, tmp_path):
    from mlflow.entities import RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("environment", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment)
    tags = mlflow_tags({**cpu_env, "long": "y" * 20_000})
    client.log_batch(run.info.run_id, tags=[RunTag(key, value) for key, value in tags.items()])
    stored = client.get_run(run.info.run_id).data.tags
    assert {key: stored[key] for key in tags} == tags


# --- pure decisions on hand-made values --------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "names"),
    [
        (0x0, []),
        (0x1, ["gpu_idle"]),
        (0x4 | 0x40, ["sw_power_cap", "hw_thermal_slowdown"]),
        (0x8 | 0x1000, ["hw_slowdown", "unknown_0x1000"]),
    ],
)
def test_decode_clock_reasons_names_each_set_bit(mask, names):
    assert decode_clock_reasons(mask) == names


def test_clock_reason_table_matches_the_constants_of_nvidia_ml_py():
    import pynvml

    for bit, name in CLOCK_EVENT_REASONS.items():
        camel = "".join(part.capitalize() for part in name.split("_"))
        assert getattr(pynvml, f"nvmlClocksThrottleReason{camel}") == bit, name
    every_bit = 0
    for bit in CLOCK_EVENT_REASONS:
        every_bit |= bit
    assert every_bit == pynvml.nvmlClocksThrottleReasonAll  # the table knows every reason pynvml does


def test_idle_and_configured_clocks_do_not_count_as_throttling():
    reasons = ["gpu_idle", "applications_clocks_setting", "sw_thermal_slowdown", "unknown_0x1000"]
    assert throttling_reasons(reasons) == ["sw_thermal_slowdown", "unknown_0x1000"]
    assert throttling_reasons(None) == []


def test_compare_hand_made_snapshots_of_an_unchanged_gpu_gives_no_warning():
    assert compare_snapshots(_snapshot(), _snapshot(gpu__temperature_c=60, gpu__sm_clock_mhz=1800)) == []


def test_compare_hand_made_snapshots_warns_when_a_clock_drops_more_than_10_percent():
    warnings = compare_snapshots(_snapshot(), _snapshot(gpu__sm_clock_mhz=1700, gpu__mem_clock_mhz=1300))
    assert len(warnings) == 2
    assert warnings[0].startswith("SM clock fell from 1980 MHz to 1700 MHz (-14 %)")
    assert warnings[1].startswith("memory clock fell from 2619 MHz to 1300 MHz (-50 %)")


def test_compare_hand_made_snapshots_warns_when_throttling_appears():
    end = _snapshot(gpu__throttle_reasons=["sw_power_cap", "hw_thermal_slowdown"], gpu__throttled=True)
    assert compare_snapshots(_snapshot(), end) == [
        "clock throttling appeared during the run: sw_power_cap, hw_thermal_slowdown"
    ]
    already = _snapshot(gpu__throttle_reasons=["sw_power_cap"], gpu__throttled=True)
    assert compare_snapshots(already, already) == []
    benign = _snapshot(gpu__throttle_reasons=["applications_clocks_setting"])
    assert compare_snapshots(_snapshot(), benign) == []


def test_compare_hand_made_snapshots_warns_when_another_process_appears():
    other = {"pid": 4242, "name": "python", "used_memory_mb": 2048.0}
    end = _snapshot(gpu__other_processes=[other], gpu__shared=True)
    assert compare_snapshots(_snapshot(), end) == [
        "other processes started on the GPU during the run: pid 4242 python, 2048 MiB"
    ]
    assert compare_snapshots(end, end) == []


def test_state_warnings_flag_a_hand_made_shared_and_throttled_snapshot():
    snapshot = _snapshot(
        gpu__other_processes=[{"pid": 99, "name": None, "used_memory_mb": None}],
        gpu__shared=True,
        gpu__throttle_reasons=["gpu_idle", "hw_slowdown"],
        gpu__throttled=True,
    )
    assert state_warnings(snapshot) == [
        "the GPU is shared with other processes: pid 99; their work competes with the measurement",
        "the GPU is throttling its clocks (hw_slowdown)",
    ]
    assert state_warnings(_snapshot()) == []


def test_a_gpu_at_its_own_power_limit_is_a_warning_but_no_contamination():
    capped = _snapshot(gpu__throttle_reasons=["sw_power_cap"], gpu__throttled=True)
    assert state_warnings(capped) == ["the GPU is throttling its clocks (sw_power_cap)"]
    assert contaminating_warnings(capped) == []
    hot = _snapshot(gpu__throttle_reasons=["sw_power_cap", "hw_thermal_slowdown"], gpu__throttled=True)
    assert contaminating_warnings(hot) == ["the GPU is throttling its clocks (hw_thermal_slowdown)"]
    shared = _snapshot(gpu__other_processes=[{"pid": 7, "name": None, "used_memory_mb": None}], gpu__shared=True,
                       gpu__throttle_reasons=["sw_power_cap"], gpu__throttled=True)
    assert contaminating_warnings(shared) == [
        "the GPU is shared with other processes: pid 7; their work competes with the measurement"]


# --- the NVML reading code on a fake GPU (no GPU here; the real one is checked on the device) ---


@pytest.fixture
def fake_gpu_nvml(monkeypatch):
    """pynvml answering like an H100 with one other process, this process, and no power sensor.

    Only what a GPU machine would answer is faked; our code under test runs unchanged.
    """
    import pynvml

    uuid = "GPU-11111111-2222-3333-4444-555555555555"
    own, other = os.getpid(), os.getpid() + 100_000

    def handle_by_uuid(candidate):
        if candidate != uuid:
            raise pynvml.NVMLError_NotFound()
        return "handle"

    def not_supported(*_args):
        raise pynvml.NVMLError_NotSupported()

    def missing_in_this_driver(*_args):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    answers = {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetHandleByUUID": handle_by_uuid,
        "nvmlDeviceGetName": lambda h: "NVIDIA H100 80GB HBM3",
        "nvmlSystemGetDriverVersion": lambda: "570.86.15",
        "nvmlSystemGetCudaDriverVersion_v2": lambda: 12080,
        "nvmlDeviceGetPersistenceMode": lambda h: pynvml.NVML_FEATURE_ENABLED,
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=80 * 2**30, used=3 * 2**30, free=77 * 2**30),
        "nvmlDeviceGetMaxClockInfo": lambda h, kind: {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}[kind],
        "nvmlDeviceGetClockInfo": lambda h, kind: {pynvml.NVML_CLOCK_SM: 1755, pynvml.NVML_CLOCK_MEM: 2619}[kind],
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: 700_000,
        "nvmlDeviceGetPowerUsage": not_supported,
        "nvmlDeviceGetTemperatureV": missing_in_this_driver,  # older driver: falls back to the old call
        "nvmlDeviceGetTemperature": lambda h, sensor: 41,
        "nvmlDeviceGetCurrentClocksEventReasons": lambda h: 0x4,
        "nvmlDeviceGetComputeRunningProcesses": lambda h: [
            SimpleNamespace(pid=own, usedGpuMemory=2**30),
            SimpleNamespace(pid=other, usedGpuMemory=2 * 2**30),
        ],
        "nvmlDeviceGetGraphicsRunningProcesses": lambda h: [],
        "nvmlSystemGetProcessName": lambda pid: "other_job",
    }
    for name, answer in answers.items():
        monkeypatch.setattr(pynvml, name, answer)
    return uuid, other


def test_read_nvml_turns_fake_gpu_answers_into_facts(fake_gpu_nvml):
    uuid, other_pid = fake_gpu_nvml
    facts = read_nvml([f"MIG-{uuid[4:]}", uuid])  # the second candidate matches
    assert facts["gpu.reason"] is None
    assert facts["gpu.name"] == "NVIDIA H100 80GB HBM3"
    assert facts["gpu.driver_version"] == "570.86.15"
    assert facts["gpu.cuda_driver_version"] == "12.8"
    assert facts["gpu.persistence_mode"] is True
    assert (facts["gpu.memory_total_mb"], facts["gpu.memory_used_mb"]) == (81920.0, 3072.0)
    assert (facts["gpu.sm_clock_mhz"], facts["gpu.sm_clock_max_mhz"]) == (1755, 1980)
    assert (facts["gpu.mem_clock_mhz"], facts["gpu.mem_clock_max_mhz"]) == (2619, 2619)
    assert facts["gpu.power_limit_w"] == 700.0
    assert facts["gpu.power_draw_w"] is None  # not supported by this board: just this key is missing
    assert facts["gpu.temperature_c"] == 41
    assert facts["gpu.throttle_reasons"] == ["sw_power_cap"]
    assert facts["gpu.throttled"] is True
    assert facts["gpu.other_processes"] == [{"pid": other_pid, "name": "other_job", "used_memory_mb": 2048.0}]
    assert facts["gpu.shared"] is True
    assert json.loads(json.dumps(facts)) == facts
    assert state_warnings(facts) == [
        f"the GPU is shared with other processes: pid {other_pid} other_job, 2048 MiB; "
        "their work competes with the measurement",
        "the GPU is throttling its clocks (sw_power_cap)",
    ]


def test_read_nvml_on_a_fake_gpu_names_an_unknown_uuid(fake_gpu_nvml):
    facts = read_nvml(["GPU-ffffffff-0000-0000-0000-000000000000"])
    assert facts["gpu.reason"] == "NVML knows no GPU with uuid GPU-ffffffff-0000-0000-0000-000000000000"
    assert facts["gpu.name"] is None

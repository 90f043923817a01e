"""One shard measured in a fresh process: ``python -m bench_pipeline.fanout.shard IN OUT``.

``IN`` is a pickle of ``{"units": [...], "config": ..., "stamp": {...}}``; the units are the
ordinary ``sweep`` units (the baseline among them), measured by ``sweep.run_units`` exactly as a
plain run measures them: each unit in its own worker process, interleaved rounds, paired
speedups. A fresh interpreter per shard gives every shard a fresh CUDA context on the one GPU
its Dask worker owns. Every row (journaled and returned) carries which GPU and host measured it.
``OUT`` gets ``{"rows", "raw", "device"}``.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import socket
import sys
from pathlib import Path
from typing import Any

from bench_pipeline.harness.journal import Journal


def device_facts() -> dict[str, Any]:
    """The GPU this process may use: its CUDA_VISIBLE_DEVICES id, and its NVML UUID where NVML
    knows it (None on a machine without NVML GPUs: a simulated GPU)."""
    gpu_id = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return {"gpu_id": gpu_id, "gpu_uuid": _nvml_uuid(gpu_id), "host": socket.gethostname()}


def _nvml_uuid(gpu_id: str) -> str | None:
    if gpu_id.startswith(("GPU-", "MIG-")):
        return gpu_id
    if not gpu_id.isdigit():
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML, no driver: no UUID to give
        return None
    try:  # the cluster numbers GPUs in PCI order (CUDA_DEVICE_ORDER=PCI_BUS_ID), as NVML does
        uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(int(gpu_id)))
        return uuid.decode() if isinstance(uuid, bytes) else uuid
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def stamped(row: dict[str, Any], stamp: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ``stamp`` (gpu_id, gpu_uuid, host, shard) added to its ``extra`` JSON."""
    extra = json.loads(row.get("extra") or "{}") | {k: v for k, v in stamp.items() if v is not None}
    return row | {"extra": json.dumps(extra, default=str, sort_keys=True)}


class SharedJournal(Journal):
    """The backend's journal, written by several shard processes at once (one host or a shared
    filesystem): each entry is appended under an exclusive ``flock`` of a lock file beside it, so
    lines never interleave, and every finished cell says which GPU measured it."""

    def __init__(self, path: Path, stamp: dict[str, Any]):
        super().__init__(path)
        self.stamp = stamp

    def append(self, key, row, raw_times) -> None:
        super().append(key, stamped(row, self.stamp), raw_times)

    def _write(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            super()._write(entry)


def measure_shard(units: list, config, stamp: dict[str, Any]) -> dict[str, Any]:
    from bench_pipeline.harness.sweep import run_units

    stamp = stamp | device_facts()
    for unit in units:
        if unit.journal is not None:
            unit.journal = SharedJournal(unit.journal.path, stamp)
    rows, raw = run_units(units, config)
    return {"rows": [stamped(r, stamp) for r in rows], "raw": raw, "device": stamp}


def _die_with_parent() -> None:
    """Die with the Dask worker that started this process: a killed worker must not leave its
    shard measuring on the GPU while the retry measures there too (Linux ``PR_SET_PDEATHSIG``)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except OSError:
        return  # not Linux: an orphaned shard finishes its cells, nothing worse
    if os.getppid() == 1:  # the worker died before the line above
        sys.exit("the Dask worker that started this shard is gone")


def main(argv: list[str]) -> int:
    _die_with_parent()
    source, target = argv
    payload = pickle.loads(Path(source).read_bytes())
    result = measure_shard(payload["units"], payload["config"], payload["stamp"])
    Path(target).write_bytes(pickle.dumps(result))
    return 0


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sys.exit(main(sys.argv[1:]))

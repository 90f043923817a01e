"""The Dask cluster a fan-out runs on: a local one (one worker per GPU) or an existing scheduler.

Why a ``SpecCluster`` of ``Nanny`` workers rather than ``LocalCluster``: every GPU worker needs its
own ``CUDA_VISIBLE_DEVICES``, and ``LocalCluster`` gives all workers the same environment.
(dask-cuda's ``LocalCUDACluster`` does the same per-GPU spec, but it needs NVML GPUs to start,
so it cannot simulate GPUs on a CPU machine.) The nanny restarts a worker that died, with the
same environment, so its GPU comes back into the pool.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench_pipeline.fanout.spec import ScaleSpec

log = logging.getLogger(__name__)

GPU = "GPU"  # the worker resource a GPU unit asks for: {"GPU": 1}
# A shard whose worker died is given to another worker once, then recorded as crashed cells.
ALLOWED_FAILURES = 1


def _distributed():
    try:
        import distributed
    except ImportError as error:
        raise ImportError("benchmark.scale needs Dask: pip install -e '.[scale]'") from error
    return distributed


def worker_specs(gpu_ids: list[str], cpu_workers: int, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """One single-threaded nanny per GPU id (resource GPU=1, its own CUDA_VISIBLE_DEVICES, GPUs
    numbered in PCI order as NVML numbers them), and ``cpu_workers`` that see no GPU; ``env`` is
    set in every worker over what it inherits from this process (a nanny can set, not unset)."""
    nanny = _distributed().Nanny
    env = env or {}
    specs = {
        f"gpu{i}": {"cls": nanny, "options": {
            "nthreads": 1, "resources": {GPU: 1},
            "env": env | {"CUDA_VISIBLE_DEVICES": gpu_id, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
        }}
        for i, gpu_id in enumerate(gpu_ids)
    }
    specs |= {f"cpu{i}": {"cls": nanny, "options": {"nthreads": 1, "env": env | {"CUDA_VISIBLE_DEVICES": ""}}}
              for i in range(cpu_workers)}
    return specs


@contextmanager
def local_cluster(specs: dict[str, dict[str, Any]]) -> Iterator[Any]:
    """A client on a cluster of these workers, in this process's scheduler; closed on exit."""
    import dask

    distributed = _distributed()
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        scheduler = {"cls": distributed.Scheduler, "options": {"dashboard_address": None}}
        with distributed.SpecCluster(workers=specs, scheduler=scheduler, name="bench-fanout") as cluster:
            with distributed.Client(cluster) as client:
                client.wait_for_workers(len(specs))
                yield client


@contextmanager
def connect(scale: ScaleSpec, visible_gpus: int, env: dict[str, str] | None = None) -> Iterator[Any]:
    """A client on the cluster ``scale`` names, its GPU workers checked before any work is sent;
    ``env``: for the workers of a local cluster (those of a running scheduler have their own)."""
    if scale.scheduler:
        with _distributed().Client(scale.scheduler) as client:
            check_workers(client)
            yield client
        return
    count = scale.local_gpu_workers(visible_gpus)
    if not visible_gpus:
        log.warning("fan-out: %d SIMULATED GPU workers (no CUDA device here): units run on the CPU", count)
    with local_cluster(worker_specs([str(i) for i in range(count)], scale.cpu_workers, env)) as client:
        check_workers(client)
        yield client


def worker_devices(client: Any) -> dict[str, dict[str, Any]]:
    """Per worker address: host, threads, whether it holds a GPU, and its CUDA_VISIBLE_DEVICES."""
    visible = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    return {
        address: {"host": info["host"], "nthreads": info["nthreads"], "gpu": info.get("resources", {}).get(GPU, 0) > 0,
                  "device": visible.get(address)}
        for address, info in client.scheduler_info(n_workers=-1)["workers"].items()
    }


def check_workers(client: Any) -> None:
    """Refuse a cluster on which two units could share a GPU: a GPU worker with more than one
    thread or more than one GPU, without CUDA_VISIBLE_DEVICES, or two on one host with the same id."""
    devices = worker_devices(client)
    gpu_workers = {a: d for a, d in devices.items() if d["gpu"]}
    if not gpu_workers:
        raise ValueError(
            f"the Dask cluster has no worker with resource {GPU}=1 (workers: {sorted(devices)}); start one per GPU: "
            f"CUDA_VISIBLE_DEVICES=i dask worker <scheduler> --nthreads 1 --resources {GPU}=1"
        )
    problems = [
        f"{a}: {d['nthreads']} threads (needs --nthreads 1)" for a, d in gpu_workers.items() if d["nthreads"] != 1
    ]
    problems += [f"{a}: CUDA_VISIBLE_DEVICES={d['device']!r} (needs exactly one GPU id)"
                 for a, d in gpu_workers.items() if not d["device"] or "," in d["device"]]
    shared = Counter((d["host"], d["device"]) for d in gpu_workers.values())
    problems += [
        f"{n} workers on {host} share CUDA_VISIBLE_DEVICES={device}" for (host, device), n in shared.items() if n > 1
    ]
    if problems:
        raise ValueError("the Dask cluster would let two units share a GPU: " + "; ".join(problems))

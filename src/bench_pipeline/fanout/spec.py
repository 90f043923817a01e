"""``benchmark.scale``: where a sweep runs. Pure pydantic (no Dask import), validated with the rest."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

SCHEDULER_SCHEMES = ("tcp://", "tls://", "ws://", "wss://", "inproc://")


class ScaleSpec(BaseModel):
    """``gpus``: 0 runs the plain single-process sweep; N or ``"all"`` starts a local Dask cluster
    of one single-threaded worker per GPU (N above the visible GPUs is allowed only on a machine
    with none: simulated GPUs, for trying the fan-out on a CPU). ``scheduler``: the address of a
    running ``dask scheduler`` whose workers are the GPUs (several hosts). ``cpu_workers``: local
    workers without a GPU, for CPU-only units (ONNX Runtime CPU). ``units_per_shard``: units
    measured together with one baseline per Dask task (more: fewer baseline repeats, a dead
    worker costs more)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: int | str = 0
    scheduler: str | None = None
    cpu_workers: int = Field(1, ge=0)
    units_per_shard: PositiveInt = 1

    @field_validator("gpus", mode="before")
    @classmethod
    def _check_gpus(cls, gpus: Any) -> int | str:
        if gpus == "all" or (isinstance(gpus, int) and not isinstance(gpus, bool) and gpus >= 0):
            return gpus
        raise ValueError(f"scale.gpus {gpus!r}: allowed 0 (no fan-out), a number of GPU workers, or 'all'")

    @field_validator("scheduler")
    @classmethod
    def _check_scheduler(cls, scheduler: str | None) -> str | None:
        if scheduler is not None and not scheduler.startswith(SCHEDULER_SCHEMES):
            raise ValueError(f"scale.scheduler {scheduler!r}: a Dask scheduler address, e.g. 'tcp://host:8786' "
                             f"(schemes {list(SCHEDULER_SCHEMES)})")
        return scheduler

    @model_validator(mode="after")
    def _one_cluster(self) -> ScaleSpec:
        if self.scheduler and self.gpus != 0:
            raise ValueError(f"scale.gpus={self.gpus!r} with scale.scheduler={self.scheduler!r}: the scheduler's "
                             "workers are the GPUs; set gpus: 0 or drop the scheduler")
        return self

    @property
    def enabled(self) -> bool:
        return self.gpus != 0 or self.scheduler is not None

    def local_gpu_workers(self, visible: int) -> int:
        """How many GPU workers a local cluster starts, given the CUDA devices this host has."""
        wanted = visible if self.gpus == "all" else int(self.gpus)
        if self.gpus == "all" and visible == 0:
            raise ValueError("scale.gpus='all': this machine has no visible CUDA device; "
                             "use scale.gpus=N to simulate N GPU workers on the CPU")
        if visible and wanted > visible:
            raise ValueError(f"scale.gpus={wanted}: this machine has {visible} visible CUDA device(s)")
        return wanted

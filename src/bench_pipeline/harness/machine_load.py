"""What else the machine is doing while a cell is timed: the noise gate's CPU half.

On a 2-core machine another busy process made eager FP32 look 30x slower and a 2.58x speedup
read as 74.76x, and nothing in the row said so. So each timed round records how many cores
*other* processes kept busy meanwhile: the machine's busy time from ``/proc/stat`` minus this
process's own (all its threads). A round during which they used more than the allowed share of
the usable cores is contaminated, and its cell can never be a result (``unstable``).

The GPU half (other GPU processes, throttling) lives in ``environment``.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def usable_cores() -> int:
    """Cores this process may run on (container and taskset limits included)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def effective_threads(requested: int | None) -> int:
    """The CPU threads to use: all usable cores by default, never more than there are.

    More threads than cores only makes threads wait for each other (``threads=4`` on 2 cores ran
    4-5x slower): the request is clamped, with a warning that says so.
    """
    cores = usable_cores()
    if requested is None:
        return cores
    if requested > cores:
        log.warning("threads=%d is above the %d usable core(s) of this machine: using %d", requested, cores, cores)
        return cores
    return requested


def _machine_busy_s() -> float | None:
    """Seconds of CPU time all processes have used since boot (None where /proc/stat is missing)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait
    values = [int(v) for v in fields[1:9]]
    return (sum(values) - values[3] - values[4]) / _TICKS


def _own_busy_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class LoadWatch:
    """Started before a timed round and read after it: the cores other processes used meanwhile."""

    started: float
    machine: float | None
    own: float

    @classmethod
    def start(cls) -> LoadWatch:
        return cls(time.monotonic(), _machine_busy_s(), _own_busy_s())

    def other_cores(self) -> float | None:
        """Average number of cores kept busy by other processes since ``start`` (None: unknown)."""
        machine, wall = _machine_busy_s(), time.monotonic() - self.started
        if machine is None or self.machine is None or wall <= 0:
            return None
        # /proc/stat counts whole ticks per CPU, so either end may be off by up to a tick on every CPU: without
        # that slack a round of a few ms read "2.44 of 2 cores busy" on an idle machine
        slack = 2 * (os.cpu_count() or 1) / _TICKS
        return max(0.0, (machine - self.machine) - (_own_busy_s() - self.own) - slack) / wall


def contamination(other_cores: float | None, max_share: float) -> str | None:
    """Why a round cannot be trusted, or None: other processes above ``max_share`` of the usable cores."""
    cores = usable_cores()
    if other_cores is None or other_cores <= max_share * cores:
        return None
    return (
        f"other processes kept {other_cores:.2f} of {cores} usable core(s) busy while it was timed "
        f"(allowed: {max_share:.0%})"
    )


def load_check() -> str | None:
    """A warning before the sweep when the machine is already busy (1-minute load average)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores = usable_cores()
    if load <= 0.5 * cores:
        return None
    return f"the machine is busy before the sweep starts: load average {load:.2f} on {cores} usable core(s)"

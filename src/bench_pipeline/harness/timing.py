"""The measurement harness: times any callable the same way, whatever the backend.

The recipe (DESIGN.md): first call recorded apart; warm-up by count AND time, longer while
times still fall; timed calls until both a minimum count AND a minimum time are reached
(or a ceiling); on GPU CUDA events on the stream that does the work plus a synchronized
host clock, on CPU ``perf_counter_ns``. Raw per-call times are kept for the artifact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from bench_pipeline.harness.stats import robust_cov

CPU = torch.device("cpu")  # measure's default device: one module-level value, not a call per default

# How much the calls of one round may scatter (robust CoV, ``stats.robust_cov``) before the cell
# is flagged noisy. A GPU replays the same kernels: 2.5 %. A shared CPU core is preempted by the
# OS and other threads: 5 % (on a quiet 2-core machine MiniLM rounds measured well under that).
NOISE_LIMITS = {"cuda": 0.025, "cpu": 0.05}


def noise_limit(device_type: str) -> float:
    return NOISE_LIMITS.get(device_type, NOISE_LIMITS["cpu"])


@dataclass(frozen=True)
class StopRule:
    """When one round of one cell stops warming up and stops timing. No defaults here: the one
    source of them is ``config.TimingSpec``, which the worker turns into this rule."""

    warmup_iters: int
    warmup_s: float
    min_iters: int
    min_time_s: float
    max_time_s: float


@dataclass
class Measurement:
    """Per-call times in milliseconds. ``times_ms`` is device time on GPU (CUDA events) and the
    host clock on CPU; ``host_ms`` is always the synchronized host clock."""

    times_ms: np.ndarray
    host_ms: np.ndarray
    first_call_ms: float
    warmup_calls: int
    notes: list[str] = field(default_factory=list)  # where a time limit cut warm-up or timing short

    def stats(self, limit: float = NOISE_LIMITS["cuda"]) -> dict[str, float]:
        return summarize(self.times_ms, limit) | {"host_p50_ms": float(np.median(self.host_ms))}


def summarize(times_ms: np.ndarray, limit: float = NOISE_LIMITS["cuda"]) -> dict[str, float]:
    """Latency statistics of a set of calls; ``cov`` is std/mean (tails included), ``cov_flag``
    marks a robust CoV (``stats.robust_cov``, tails excluded) above ``limit``."""
    mean = float(np.mean(times_ms))
    std = float(np.std(times_ms, ddof=1)) if len(times_ms) > 1 else 0.0
    cov = std / mean if mean > 0 else float("nan")
    return {
        "mean_ms": mean,
        "p50_ms": float(np.percentile(times_ms, 50)),
        "p90_ms": float(np.percentile(times_ms, 90)),
        "p99_ms": float(np.percentile(times_ms, 99)),
        "std_ms": std,
        "cov": cov,
        "cov_flag": bool(robust_cov(times_ms) > limit),
        "iterations": int(len(times_ms)),
    }


class _Clock:
    """Host clock plus, on GPU, CUDA events on the stream that does the work."""

    def __init__(self, device: torch.device, stream: torch.cuda.Stream | None, now_ns: Callable[[], int]):
        self.cuda = device.type == "cuda"
        self.device = device
        self.stream = stream
        self.now_ns = now_ns

    def sync(self) -> None:
        if self.cuda:
            (self.stream or torch.cuda.current_stream(self.device)).synchronize()

    def time_call(self, fn: Callable[[], None]) -> tuple[float, float]:
        """(time, host time) of one call in ms; both equal on CPU."""
        if not self.cuda:
            start = self.now_ns()
            fn()
            host = (self.now_ns() - start) / 1e6
            return host, host
        stream = self.stream or torch.cuda.current_stream(self.device)
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start = self.now_ns()
        begin.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        host = (self.now_ns() - start) / 1e6
        return begin.elapsed_time(end), host


def measure(
    fn: Callable[[], None],
    rule: StopRule,
    *,
    device: torch.device = CPU,
    stream: torch.cuda.Stream | None = None,
    now_ns: Callable[[], int] = time.perf_counter_ns,
) -> Measurement:
    clock = _Clock(device, stream, now_ns)
    first_call_ms, _ = clock.time_call(fn)

    warmup_times = _warm_up(fn, clock, rule)
    notes = []
    if len(warmup_times) < rule.warmup_iters:
        notes.append(f"warm-up cut at max_time_s/2 after {len(warmup_times)} calls (warmup_iters={rule.warmup_iters})")

    times, host = [], []
    started = now_ns()
    while True:
        elapsed_s = (now_ns() - started) / 1e9
        if len(times) >= rule.min_iters and elapsed_s >= rule.min_time_s:
            break
        if elapsed_s >= rule.max_time_s and times:
            notes.append(
                f"stopped at max_time_s={rule.max_time_s}s after {len(times)} calls (min_iters={rule.min_iters})")
            break
        t, h = clock.time_call(fn)
        times.append(t)
        host.append(h)
    return Measurement(np.array(times), np.array(host), first_call_ms, len(warmup_times), notes)


def _warm_up(fn: Callable[[], None], clock: _Clock, rule: StopRule) -> list[float]:
    """At least ``warmup_iters`` calls and ``warmup_s`` seconds, then more while the median of
    the last ten calls is still falling (JIT, autotuning, clock ramp-up), within half the ceiling."""
    times: list[float] = []
    started = clock.now_ns()
    while True:
        elapsed_s = (clock.now_ns() - started) / 1e9
        if elapsed_s >= rule.max_time_s / 2:
            return times
        if len(times) >= rule.warmup_iters and elapsed_s >= rule.warmup_s and not _still_falling(times):
            return times
        times.append(clock.time_call(fn)[1])


def _still_falling(times: list[float], window: int = 10, margin: float = 0.05) -> bool:
    if len(times) < 2 * window:
        return False
    previous = np.median(times[-2 * window : -window])
    recent = np.median(times[-window:])
    return recent < previous * (1 - margin)

"""How fast the host hands work to the device, and how much of a cell that decides.

Small shapes on a GPU are bound by the host: the time to launch ~100 kernels, not to run them.
That speed differs between machines of the same kind and drifts within minutes, so two runs'
launch-bound numbers mean little without it. ``host_dispatch`` records a short calibration with
every run (a burst of tiny ops); ``dispatch_share`` measures, per GPU cell, how much of one call
the GPU spent waiting for the host.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

BURST = 2000  # tiny ops per burst
BURSTS = 5


def host_dispatch(device: torch.device) -> dict[str, float]:
    """``host.op_us``: one tiny CPU torch op; on CUDA also ``host.launch_us``: one tiny kernel
    launch (host side, the queue never drained). Medians over a few bursts, microseconds."""
    facts = {"host.op_us": _burst_us(torch.zeros(1), lambda: None)}
    if device.type == "cuda":
        x = torch.zeros(1, device=device)
        facts["host.launch_us"] = _burst_us(x, lambda: torch.cuda.synchronize(device))
    return facts


def _burst_us(x: torch.Tensor, sync: Callable[[], None]) -> float:
    per_op = []
    for _ in range(BURSTS):
        sync()
        start = time.perf_counter_ns()
        for _ in range(BURST):
            x.add_(1)
        per_op.append((time.perf_counter_ns() - start) / 1e3 / BURST)
        sync()
    return float(np.median(per_op))


def dispatch_share(
    fn: Callable[[], None], device: torch.device, stream: torch.cuda.Stream | None, p50_ms: float, calls: int = 5
) -> float | None:
    """1 - (GPU-only time / p50): the share of a call in which the GPU idled, waiting for launches.

    The GPU-only time is measured by holding the stream in a spin kernel (``torch.cuda._sleep``)
    long enough for the host to enqueue the whole call behind it, so its kernels then run back to
    back. A runner that synchronizes inside its call cannot be queued that way; it then reads
    as not dispatch-bound (a share near 0), never as more bound than it is.
    """
    stream = stream or torch.cuda.current_stream(device)
    cycles = int(_cycles_per_ms(stream) * (3 * p50_ms + 1))
    gpu_only = []
    for _ in range(calls):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(stream):
            torch.cuda._sleep(cycles)
        begin.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        gpu_only.append(begin.elapsed_time(end))
    return float(min(1.0, max(0.0, 1 - np.median(gpu_only) / p50_ms)))


def _cycles_per_ms(stream: torch.cuda.Stream) -> float:
    """GPU clock cycles of ``torch.cuda._sleep`` per millisecond, measured (clocks vary)."""
    cycles = 1_000_000
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.cuda.stream(stream):
        begin.record(stream)
        torch.cuda._sleep(cycles)
        end.record(stream)
    end.synchronize()
    return cycles / max(begin.elapsed_time(end), 1e-3)

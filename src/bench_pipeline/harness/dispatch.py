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
    back. A call that synchronizes inside (HF's eager BERT checks its attention mask on the host)
    cannot be queued that way; its share is None (see ``share_from``).
    """
    stream = stream or torch.cuda.current_stream(device)
    spin_ms = 3 * p50_ms + 1
    cycles = int(_cycles_per_ms(stream) * spin_ms)
    gpu_only, host = [], []
    for _ in range(calls):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(stream):
            torch.cuda._sleep(cycles)
        begin.record(stream)
        started = time.perf_counter()
        fn()
        host.append((time.perf_counter() - started) * 1e3)
        end.record(stream)
        end.synchronize()
        gpu_only.append(begin.elapsed_time(end))
    return share_from(gpu_only, host, p50_ms, spin_ms)


def share_from(gpu_only_ms: list[float], host_ms: list[float], p50_ms: float, spin_ms: float) -> float | None:
    """The share from the probe's timings, or None where the call did not return to the host until the spin
    was mostly over: it waited for the GPU somewhere inside, and if that wait came before its last kernel,
    the kernels after it were never queued and the "GPU-only" time holds host gaps. The probe cannot tell
    where the wait was (a call that only syncs at its end, or one held by a full launch queue, is measurable
    in principle), so it gives no number rather than a possibly wrong one. (Before, such a call read 0.0,
    "not dispatch-bound": eager BERT-base at 1x128 on the H200, 4.5 ms a call and launch-bound by every other
    measure, had a share of 0.) A call that queues freely returns after its host time, at most about p50; one
    that waits returns after the spin."""
    if float(np.median(host_ms)) > (p50_ms + spin_ms) / 2:
        return None
    return float(min(1.0, max(0.0, 1 - float(np.median(gpu_only_ms)) / p50_ms)))


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

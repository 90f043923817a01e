"""Stamps inside one generation: when each new token's logits were ready, on the clock that matters.

On CPU the host clock; on CUDA an event per step on the stream that does the work, read once
after the generation (reading it per step would add a synchronization the real loop does not have).
The first stamp is the time to first token (prefill); the gaps between stamps are the decode steps.
"""

from __future__ import annotations

import time

import numpy as np
import torch


class StepClock:
    def __init__(self, device: torch.device, steps: int):
        self.cuda = device.type == "cuda"
        self.device = device
        self.events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)] if self.cuda else []
        self.host: list[int] = []
        self.count = 0

    def start(self) -> None:
        self.count = 0
        self.host = []
        self.stamp()

    def stamp(self) -> None:
        if self.cuda:
            if self.count < len(self.events):
                self.events[self.count].record(torch.cuda.current_stream(self.device))
        else:
            self.host.append(time.perf_counter_ns())
        self.count += 1

    def offsets_ms(self) -> np.ndarray:
        """Milliseconds from the start to each stamp after it (one per generated token)."""
        if self.cuda:
            used = self.events[: self.count]
            used[-1].synchronize()
            return np.array([used[0].elapsed_time(e) for e in used[1:]])
        return (np.array(self.host[1:]) - self.host[0]) / 1e6


class GenerationLog:
    """Per-call step offsets of a runner's generations, so the harness can take a round's timed calls."""

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def add(self, offsets_ms: np.ndarray) -> None:
        self.calls.append(offsets_ms)

    def last(self, n: int) -> dict[str, list[list[float]]]:
        """The last ``n`` calls (the round's timed ones: they come after the first call and the warm-up)."""
        taken = self.calls[-n:] if n else []
        self.calls = []
        return {"step_offsets_ms": [offsets.tolist() for offsets in taken]}

"""One measured unit, as its worker process sees it: a backend session measuring one cell per command.

A unit is one (backend, variant, precision). Its session is opened once (load, compile, build:
the one-off cost, never inside a timed call) and then asked, round after round, to time one
grid cell at a time. Each answer is a plain dict (it crosses a pipe): the round's raw per-call
times and what else was seen meanwhile (parity, memory, other processes' load, GPU state), or
the cell's failure status and reason. ``sweep`` turns the rounds into rows.
"""

from __future__ import annotations

import gc
from typing import Any

import torch

from bench_pipeline.backends import instantiate
from bench_pipeline.backends.base import Cell, CellRunner, Session, classify
from bench_pipeline.harness.dispatch import dispatch_share
from bench_pipeline.harness.machine_load import LoadWatch, contamination
from bench_pipeline.harness.parity import compare
from bench_pipeline.harness.results import cell_name
from bench_pipeline.harness.timing import StopRule, measure
from bench_pipeline.model.source import make_inputs
from bench_pipeline.system.environment import contaminating_warnings, gpu_state_snapshot, state_warnings

Reference = dict[str, Any]  # "bB_sS/<output>" -> FP32 eager output


def reference_for(reference: Reference, cell: Cell) -> dict[str, Any]:
    prefix = f"{cell_name(cell.batch, cell.seq)}/"
    return {key.removeprefix(prefix): value for key, value in reference.items() if key.startswith(prefix)}


class UnitSession:
    """The open session of one unit and the prepared runner of each cell it has measured.

    ``payload`` holds what a worker needs: ``target`` (the backend's "module:class"), ``options``,
    ``precision``, ``config``, ``ctx`` and the ``reference`` outputs of the cells it will measure.
    Runners stay alive between rounds: inputs stay bound and CUDA graphs stay captured, so a
    later round times the same call as the first.
    """

    def __init__(self, payload: dict[str, Any]):
        self.payload = payload
        self.config = payload["config"]
        self.ctx = payload["ctx"]
        self.session: Session | None = None
        self.runners: dict[Cell, CellRunner] = {}
        self.inputs: dict[Cell, dict[str, torch.Tensor]] = {}

    def open(self) -> dict[str, Any]:
        """``{"status": "open", setup facts}``, or the failure that every cell of the unit shares."""
        try:
            backend = instantiate(self.payload["target"])
            self.session = backend.open(self.ctx, self.payload["variant"], self.payload["precision"],
                                        self.payload["options"])
        except Exception as error:  # noqa: BLE001 - every failure becomes rows, the sweep goes on
            status, reason = classify(error)
            release(self.ctx.device)
            return {"status": status, "reason": reason,
                    "costs": getattr(error, "costs", {}), "extra": getattr(error, "extra", {})}
        session = self.session
        return {
            "status": "open",
            "device": str(session.device),
            "setup_s": session.setup_s,
            "costs": dict(session.costs),
            "extra": dict(session.extra),
        }

    def measure(self, cell: Cell, round_index: int) -> dict[str, Any]:
        """One round of one cell: the stop rule's timed calls and what was seen meanwhile."""
        session, device = self.session, self.session.device
        try:
            first_round = cell not in self.runners
            if first_round:
                # a scenario's session may make its own inputs (generation: seeded prompt ids)
                scenario_inputs = getattr(session, "make_inputs", None)
                self.inputs[cell] = (scenario_inputs(cell, self.config.seed) if scenario_inputs else
                                     make_inputs(self.ctx.model_dir, cell.batch, cell.seq, self.config.seed))
                self.runners[cell] = session.prepare(self.inputs[cell], cell)
            runner = self.runners[cell]
            allocated_before = _reset_peak_memory(device)
            watch = LoadWatch.start()
            measurement = measure(runner.run, StopRule(**self.config.timing.model_dump()), device=device,
                                  stream=runner.cuda_stream)
            other_cores = watch.other_cores()
            # a generation runner stamps the steps of its calls: this round's timed ones, before any other call
            round_steps = getattr(runner, "round_steps", None)
            steps = round_steps(len(measurement.times_ms)) if round_steps else None
            parity, verdict = None, {}
            if first_round:
                reference = reference_for(self.payload["reference"], cell)
                check = getattr(runner, "check_parity", None)  # a scenario's own parity and verdict
                if check:
                    parity, why = check(reference, self.payload["precision"],
                                        self.config.tolerances[self.payload["precision"]])
                    verdict = {"verdict": why}
                else:
                    parity = compare(runner.outputs(), reference, self.inputs[cell]["attention_mask"].numpy())
            snapshot = gpu_state_snapshot(device) if device.type == "cuda" else {}
            share = None
            if device.type == "cuda" and not getattr(runner, "syncs_inside", False):
                share = dispatch_share(runner.run, device, runner.cuda_stream, float(measurement.stats()["p50_ms"]))
        except Exception as error:  # noqa: BLE001
            status, reason = classify(error)
            del error
            self.runners.pop(cell, None)
            release(device)
            return {"status": status, "reason": reason}
        gpu_warnings = state_warnings(snapshot)
        problems = [contamination(other_cores, self.config.noise.max_other_cpu), *contaminating_warnings(snapshot)]
        peak_mem_mb = None
        if device.type == "cuda" and session.uses_torch_allocator:
            # this cell's peak above what was resident before it, plus this session's own weights
            peak_mem_mb = (torch.cuda.max_memory_allocated(device) - allocated_before + session.resident_bytes) / 2**20
        cell_costs = getattr(session, "cell_costs", None)
        return {
            "status": "measured",
            "round": round_index,
            "times_ms": measurement.times_ms,
            "host_ms": measurement.host_ms,
            "first_call_ms": measurement.first_call_ms,
            "warmup_calls": measurement.warmup_calls,
            "notes": measurement.notes,
            "parity": parity,
            "peak_mem_mb": peak_mem_mb,
            "device_memory_used_mb": snapshot.get("gpu.memory_used_mb") if not session.uses_torch_allocator else None,
            "other_cores": other_cores,
            "contamination": "; ".join(p for p in problems if p) or None,
            "gpu_warnings": gpu_warnings,
            "dispatch_share": share,
            "cell_costs": cell_costs(cell) if cell_costs else {},
            "steps": steps,
            **verdict,
        }

    def close(self) -> None:
        self.runners.clear()
        if self.session is not None:
            self.session.close()
            self.session = None
        release(self.ctx.device)


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _reset_peak_memory(device: torch.device) -> int:
    """Start this cell's peak-memory window; the bytes already allocated (0 off CUDA)."""
    if device.type != "cuda":
        return 0
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)

"""Every planned cell measured in interleaved rounds, each unit in its own worker; one row per cell.

A *unit* is one (backend, variant, precision): one session serving all its grid cells. The sweep
starts every unit's worker (``isolation``), then takes the grid cell by cell: each unit times the
cell once per round, in an order rotated from round to round, so drift of the host or the GPU
clocks hits every unit alike. The FP32 eager baseline takes part in the same rounds, seconds
from each candidate, so a speedup is a paired ratio (``stats.paired_speedup``).

A cell's latency is the median of its round medians, with a bootstrap interval. A cell whose
rounds disagree by more than ``rounds.max_spread``, or whose rounds were contaminated by other
processes (``machine_load``) or a throttled or shared GPU, gets up to ``rounds.retries`` extra
rounds; if no ``rounds.count`` clean rounds agree, it is ``unstable``: kept, never a result, and
measured again by the next run instead of reused. Every round is journaled the moment it ends.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench_pipeline.backends import REGISTRY, instantiate
from bench_pipeline.backends.base import BackendContext, Cell, classify
from bench_pipeline.config import BackendSpec, BenchmarkConfig
from bench_pipeline.generation.metrics import generation_fields
from bench_pipeline.harness.isolation import LocalUnit, WorkerUnit
from bench_pipeline.harness.journal import Journal, cell_key, reusable
from bench_pipeline.harness.parity import violation
from bench_pipeline.harness.results import cell_name, make_row
from bench_pipeline.harness.stats import (
    agreeing_rounds,
    faster_round_left_out,
    latency_interval,
    paired_speedup,
    robust_cov,
    round_spread,
    unpaired_speedup,
)
from bench_pipeline.harness.status import Status
from bench_pipeline.harness.timing import noise_limit, summarize
from bench_pipeline.harness.unit import Reference, reference_for

log = logging.getLogger(__name__)

BASELINE = ("eager", "default", "fp32")  # what a user gets without trying: every speedup is over it
Rounds = dict[int, np.ndarray]  # round index -> that round's per-call times (ms)


@dataclass(eq=False)
class Unit:
    """One (backend, variant, precision) of the plan, with what the journal already holds for it."""

    backend: str
    variant: str
    precision: str
    payload: dict[str, Any]  # what its worker needs to open the session (see unit.UnitSession)
    cells: list[Cell]
    keys: dict[Cell, str]
    reused: dict[Cell, dict[str, Any]]  # journal entries taken instead of measuring
    journal: Journal | None = None
    failure: dict[str, Any] | None = None  # known without a worker (unsupported precision, no provider)
    rounds: dict[Cell, dict[int, dict[str, Any]]] = field(default_factory=dict)  # measured now
    worker: Any = None  # isolation.WorkerUnit or LocalUnit while the sweep runs

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.variant}/{self.precision}"

    @property
    def todo(self) -> list[Cell]:
        return [c for c in self.cells if c not in self.reused]

    @property
    def base(self) -> dict[str, Any]:
        return self.payload["base"]


def plan_units(
    name: str,
    spec: BackendSpec,
    config: BenchmarkConfig,
    ctx: BackendContext,
    reference: Reference,
    journal: Journal | None = None,
    key_context: dict[str, Any] | None = None,
    reuse: bool = True,
    target: str | None = None,
) -> list[Unit]:
    """The units of one backend: each variant x precision, its cells' journal keys, the cells the
    journal already holds (when ``reuse``), and any failure its backend can tell without opening.
    ``target``: the runtime's "module:class" when it is not the registry's (the generation scenario's)."""
    done = journal.load() if journal and reuse else {}
    units = []
    for variant in spec.variants:
        for precision in config.precisions_for(variant):
            keys = {
                c: cell_key(key_context or {}, name, variant.name, variant.options, precision, c.batch, c.seq)
                for c in ctx.cells
            }
            base = {
                "model": ctx.model_info["name"], "backend": name, "variant": variant.name,
                "precision": precision, "device": str(ctx.device), "threads": ctx.threads,
            }
            payload = {
                "target": target or REGISTRY[name].runtime, "variant": variant.name, "options": variant.options,
                "precision": precision, "config": config, "ctx": ctx, "base": base,
                "reference": {f"{cell_name(c.batch, c.seq)}/{k}": v
                              for c in ctx.cells for k, v in reference_for(reference, c).items()},
            }
            reused = {c: done[k] for c, k in keys.items() if k in done and reusable(done[k]["row"])}
            unit = Unit(name, variant.name, precision, payload, list(ctx.cells), keys, reused, journal)
            if unit.todo:
                unit.failure = _precheck(unit, ctx)
            units.append(unit)
    return units


def _precheck(unit: Unit, ctx: BackendContext) -> dict[str, Any] | None:
    """What the backend knows without loading anything, so no worker starts for a cell that cannot run."""
    missing = REGISTRY[unit.backend].precision_missing(unit.precision)
    if missing:
        return {"status": Status.UNSUPPORTED, "reason": missing, "costs": {}, "extra": {}}
    try:
        instantiate(unit.payload["target"]).precheck(ctx, unit.variant, unit.precision, unit.payload["options"])
    except Exception as error:  # noqa: BLE001 - a missing library is a skip, not the end of the run
        status, reason = classify(error)
        return {"status": status, "reason": reason,
                "costs": getattr(error, "costs", {}), "extra": getattr(error, "extra", {})}
    return None


def run_units(units: list[Unit], config: BenchmarkConfig) -> tuple[list[dict[str, Any]], dict[str, Rounds]]:
    """Rows for every unit's cells (plan order) and the per-round raw times of each measured cell
    (keyed ``backend/variant/precision/bB_sS``).

    Cell after cell (grid order), every unit takes its rounds of that cell, so a cell is final
    (journaled, its speedups paired) minutes before the sweep ends: a killed sweep loses at most
    the cell in flight, and the rounds of that one are in the journal too.
    """
    sweep_id = uuid.uuid4().hex[:12]
    _remeasure_baseline_beside_candidates(units)
    live = [u for u in units if u.todo and u.failure is None]
    rows: dict[tuple[Unit, Cell], dict[str, Any]] = {}
    raw: dict[str, Rounds] = {}
    try:
        opened = _open_all(live, config)  # inside: workers already started are closed whatever happens
        measuring = [u for u in live if opened[u]["status"] == "open"]
        for cell in dict.fromkeys(c for u in units for c in u.cells):
            _measure_cell([u for u in measuring if cell in u.todo], cell, config)
            here = [u for u in units if cell in u.cells]
            for unit in here:
                rows[(unit, cell)], rounds = _row_for(unit, cell, opened.get(unit), config, sweep_id)
                if rounds:
                    raw[_raw_key(unit, cell)] = rounds
            _add_speedups(here, cell, rows, raw)
            for unit in here:
                if cell not in unit.reused and unit.journal:
                    unit.journal.append(unit.keys[cell], rows[(unit, cell)], raw.get(_raw_key(unit, cell)))
    finally:
        for unit in live:
            if unit.worker is not None:
                unit.worker.close()
    for backend in dict.fromkeys(u.backend for u in units):
        mine = [u for u in units if u.backend == backend]
        journal = mine[0].journal
        if journal:
            log.info("%s: reused %d of %d cells from %s", backend, sum(len(u.reused) for u in mine),
                     sum(len(u.cells) for u in mine), journal.path)
    log.info("sweep %s: %d units measured in rounds of %d", sweep_id, len(measuring), config.rounds.count)
    return [rows[(u, c)] for u in units for c in u.cells], raw


def _remeasure_baseline_beside_candidates(units: list[Unit]) -> None:
    """A baseline cell from the journal would pair this sweep's candidates with rounds of another
    sweep, whose drift no interval covers: wherever a candidate is measured now, so is the baseline."""
    baseline = next((u for u in units if (u.backend, u.variant, u.precision) == BASELINE), None)
    if baseline is None:
        return
    for cell in list(baseline.reused):
        if any(cell in u.todo and u.failure is None for u in units if u is not baseline):
            del baseline.reused[cell]


def _raw_key(unit: Unit, cell: Cell) -> str:
    return f"{unit.label}/{cell_name(cell.batch, cell.seq)}"


def _open_all(units: list[Unit], config: BenchmarkConfig) -> dict[Unit, dict[str, Any]]:
    """Start every unit's worker at once (they load and compile side by side), then wait for each."""
    kind = WorkerUnit if config.isolation == "process" else LocalUnit
    for unit in units:
        unit.worker = kind(unit.payload, config.cell_timeout_s, config.open_timeout_s)
    opened = {}
    for unit in units:
        started = time.perf_counter()
        opened[unit] = unit.worker.open()
        log.info("%s: %s (waited %.1f s)", unit.label, opened[unit]["status"], time.perf_counter() - started)
    return opened


def _measure_cell(units: list[Unit], cell: Cell, config: BenchmarkConfig) -> None:
    """``rounds.count`` rounds of ``cell`` over ``units``, then extra rounds where they disagree."""
    pending = set(units)
    for round_index in range(config.rounds.count):
        _one_round(units, pending, cell, round_index)
    baseline = next((u for u in units if (u.backend, u.variant, u.precision) == BASELINE), None)
    for retry in range(config.rounds.retries):
        unsettled = [u for u in units if u in pending and not _settled(u.rounds.get(cell, {}), config)]
        if not unsettled:
            return
        # the baseline joins each extra round, so the candidate's new round is paired too
        extra = set(unsettled) | ({baseline} if baseline in pending else set())
        log.info("%s: %d unit(s) measured again (rounds disagree or were contaminated)",
                 cell_name(cell.batch, cell.seq), len(unsettled))
        _one_round([u for u in units if u in extra], pending, cell, config.rounds.count + retry)


def _one_round(units: list[Unit], pending: set[Unit], cell: Cell, round_index: int) -> None:
    """Each pending unit times ``cell`` once, in an order rotated by the round."""
    here = [u for u in units if u in pending]
    shift = round_index % len(here) if here else 0
    for unit in here[shift:] + here[:shift]:
        result = unit.worker.measure(cell, round_index)
        unit.rounds.setdefault(cell, {})[round_index] = result
        if unit.journal:
            unit.journal.append_round(unit.keys[cell], round_index, result)
        if result["status"] != "measured":  # a failure is final for the cell: no more rounds
            log.warning("%s %s: %s: %s", unit.label, cell_name(cell.batch, cell.seq),
                        result["status"], result["reason"])
            pending.discard(unit)


def _settled(rounds: dict[int, dict[str, Any]], config: BenchmarkConfig) -> bool:
    clean = _clean(rounds)
    if len(clean) < config.rounds.count:
        return False
    ids = agreeing_rounds(clean, config.rounds.count, config.rounds.max_spread)
    return (round_spread([clean[r] for r in ids]) <= config.rounds.max_spread
            and faster_round_left_out(clean, ids, config.rounds.max_spread) is None)


def _clean(rounds: dict[int, dict[str, Any]]) -> Rounds:
    return {r: res["times_ms"] for r, res in rounds.items() if res["status"] == "measured" and not res["contamination"]}


def _row_for(unit: Unit, cell: Cell, opened: dict[str, Any] | None, config: BenchmarkConfig, sweep_id: str):
    """The cell's row and its rounds' raw times (None where nothing was timed)."""
    if cell in unit.reused:
        return _reused(unit.reused[cell])
    base = unit.base | {"batch": cell.batch, "seq": cell.seq}
    failure = unit.failure or (opened if opened and opened["status"] != "open" else None)
    if failure:
        row = make_row(**base, **failure.get("costs", {}), status=failure["status"], reason=failure["reason"],
                       extra=_json(failure.get("extra", {}) | {"sweep_id": sweep_id}))
        return row, None
    return _measured_row(unit, cell, opened, config, sweep_id)


def _measured_row(unit: Unit, cell: Cell, opened: dict[str, Any], config: BenchmarkConfig, sweep_id: str):
    results = unit.rounds.get(cell, {})
    measured = {r: res for r, res in results.items() if res["status"] == "measured"}
    failed = next((res for res in results.values() if res["status"] != "measured"), None)
    fields = unit.base | {"batch": cell.batch, "seq": cell.seq,
                          "device": opened["device"], "setup_s": opened["setup_s"]}
    fields |= opened["costs"]
    extra = dict(opened["extra"]) | {"sweep_id": sweep_id}
    if not measured:
        return make_row(**fields, status=failed["status"], reason=failed["reason"], extra=_json(extra)), None
    fields |= next(iter(measured.values()))["cell_costs"]
    all_rounds = {r: res["times_ms"] for r, res in measured.items()}
    clean = _clean(measured)
    counted_ids = agreeing_rounds(clean or all_rounds, config.rounds.count, config.rounds.max_spread)
    counted = [all_rounds[r] for r in counted_ids]
    first = measured[min(measured)]
    parity = first["parity"] or {}  # compared once, on the cell's first round in its worker
    estimate = latency_interval(counted, seed=config.seed)
    spread = round_spread(counted) if len(counted) > 1 else None
    pooled = np.concatenate(counted)
    device_type = opened["device"].split(":")[0]
    stats = summarize(pooled, noise_limit(device_type))
    stats["cov_flag"] = any(robust_cov(all_rounds[r]) > noise_limit(device_type) for r in counted_ids)
    stats["p50_ms"] = estimate.value  # the median of round medians: what every comparison uses
    contaminated = _contamination(measured)
    # a scenario that judges its own parity (generation: token ids) says so in "verdict"
    accuracy = first["verdict"] if "verdict" in first else (
        violation(parity, config.tolerances[unit.precision]) if parity else None)
    faster = faster_round_left_out(clean, counted_ids, config.rounds.max_spread) if clean else None
    status, reason = _verdict(failed, accuracy,
                              len(clean), spread, contaminated, len(measured), config, faster, len(counted_ids))
    extra |= {
        "counted_rounds": counted_ids,
        "round_p50_ms": {str(r): float(np.median(t)) for r, t in sorted(all_rounds.items())},
        "warmup_calls": [res["warmup_calls"] for _, res in sorted(measured.items())],
        "other_cores": [res["other_cores"] for _, res in sorted(measured.items())],
        "device_memory_used_mb":
            max((res["device_memory_used_mb"] or 0 for res in measured.values()), default=None) or None,
        "measurement_notes": [n for res in measured.values() for n in res["notes"]] or None,
    }
    shares = [measured[r]["dispatch_share"] for r in counted_ids if measured[r]["dispatch_share"] is not None]
    per_second = 1000.0 / estimate.value
    peaks = [res["peak_mem_mb"] for res in measured.values() if res["peak_mem_mb"] is not None]
    row = make_row(
        **fields, **stats, **parity,
        status=status, reason=reason,
        rounds=len(counted), rounds_set_aside=len(measured) - len(counted), round_spread=spread,
        p50_ci_low_ms=estimate.low, p50_ci_high_ms=estimate.high,
        host_p50_ms=float(np.median([np.median(measured[r]["host_ms"]) for r in counted_ids])),
        first_call_ms=first["first_call_ms"],
        throughput_seq_s=cell.batch * per_second,
        throughput_tok_s=cell.batch * cell.seq * per_second,
        peak_mem_mb=max(peaks) if peaks else None,
        dispatch_share=float(np.median(shares)) if shares else None,
        contamination=contaminated,
        gpu_warnings="; ".join(dict.fromkeys(w for res in measured.values() for w in res["gpu_warnings"])) or None,
        extra=_json(extra),
    )
    steps = [measured[r]["steps"]["step_offsets_ms"] for r in counted_ids if measured[r].get("steps")]
    if steps:  # a generation cell: TTFT, per-token decode latency, generated tokens/s
        row.update(generation_fields(steps, cell.batch, estimate.value, config.seed),
                   kv_cache=opened["extra"].get("kv_cache"))
    return row, all_rounds


def _contamination(measured: dict[int, dict[str, Any]]) -> str | None:
    """What contaminated the cell's rounds, told by its worst round (None: nothing did)."""
    hit = sorted((res for res in measured.values() if res["contamination"]), key=lambda res: -(res["other_cores"] or 0))
    return f"{len(hit)} of {len(measured)} rounds: {hit[0]['contamination']}" if hit else None


def _verdict(failed, accuracy, n_clean, spread, contaminated, n_measured, config,
             faster: float | None, n_counted: int) -> tuple[str, str | None]:
    """Status and reason of a measured cell: a failure in any round wins, then accuracy, then stability."""
    if failed:
        return failed["status"], failed["reason"]
    if accuracy:
        return Status.FAIL_ACCURACY, accuracy
    needed = config.rounds.count
    if n_clean < needed:
        return Status.UNSTABLE, f"only {n_clean} of {n_measured} rounds were clean (needed {needed}); {contaminated}"
    if spread is not None and spread > config.rounds.max_spread:
        return Status.UNSTABLE, (
            f"rounds disagree: the {n_counted} closest round medians spread {spread:.0%} "
            f"(allowed {config.rounds.max_spread:.0%}) after {n_measured} rounds"
        )
    if faster is not None:
        return Status.UNSTABLE, (
            f"rounds disagree: a round left out ran at {faster:.4g} ms, more than {config.rounds.max_spread:.0%} "
            f"faster than the {n_counted} agreeing rounds after {n_measured} rounds: interference only "
            "slows, so the agreeing rounds may all have been slowed"
        )
    return Status.OK, None


def _add_speedups(
    units: list[Unit], cell: Cell, rows: dict[tuple[Unit, Cell], dict[str, Any]], raw: dict[str, Rounds]
) -> None:
    """Each measured row's speedup over the baseline at ``cell``, with its interval: paired round
    by round where both were measured in this sweep, otherwise resampled independently."""
    baseline = next((u for u in units if (u.backend, u.variant, u.precision) == BASELINE), None)
    if baseline is None:
        return
    base_row, base_rounds = rows[(baseline, cell)], raw.get(_raw_key(baseline, cell))
    for unit in units:
        row, cand_rounds = rows[(unit, cell)], raw.get(_raw_key(unit, cell))
        if not base_rounds or not cand_rounds or base_row["p50_ms"] is None or row["p50_ms"] is None:
            continue
        if unit is baseline:
            row.update(speedup=1.0, speedup_ci_low=1.0, speedup_ci_high=1.0)
            continue
        if base_row["status"] != Status.OK:  # a ratio over an unsure baseline is no speedup
            row.update(speedup=None, speedup_ci_low=None, speedup_ci_high=None)
            continue
        extra = json.loads(row["extra"] or "{}")
        base_extra = json.loads(base_row["extra"] or "{}")
        same_sweep = extra.get("sweep_id") is not None and extra.get("sweep_id") == base_extra.get("sweep_id")
        if cell in unit.reused and same_sweep:
            continue  # both from the same earlier sweep: its paired speedup stands
        counted = _counted(extra, cand_rounds)
        common = [r for r in counted if r in _counted(base_extra, base_rounds)]  # rounds both sides count
        paired = same_sweep and len(common) >= 2
        if paired:
            estimate = paired_speedup([base_rounds[r] for r in common], [cand_rounds[r] for r in common])
        else:
            estimate = unpaired_speedup(
                [base_rounds[r] for r in _counted(base_extra, base_rounds)], [cand_rounds[r] for r in counted]
            )
        row.update(speedup=estimate.value, speedup_ci_low=estimate.low, speedup_ci_high=estimate.high)
        row["extra"] = _json(extra | {"speedup_paired": paired})


def _counted(extra: dict[str, Any], rounds: Rounds) -> list[int]:
    return [int(r) for r in extra.get("counted_rounds", sorted(rounds)) if int(r) in rounds]


def _reused(entry: dict[str, Any]) -> tuple[dict[str, Any], Rounds | None]:
    """A journaled cell as a row again, marked in ``extra`` as reused rather than measured now."""
    row = dict(entry["row"])
    extra = json.loads(row.get("extra") or "{}") | {"reused_from_journal": True}
    row["extra"] = _json(extra)
    times = entry.get("raw_times_ms")
    if times is None:
        return row, None
    if isinstance(times, list):  # a journal written before rounds: one round
        return row, {0: np.asarray(times)}
    return row, {int(r): np.asarray(t) for r, t in times.items()}


def run_backend(
    name: str,
    spec: BackendSpec,
    config: BenchmarkConfig,
    ctx: BackendContext,
    reference: Reference,
    journal: Journal | None = None,
    key_context: dict[str, Any] | None = None,
    reuse: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Rounds]]:
    """One backend's sweep on its own (its units' rounds interleaved with each other only)."""
    return run_units(plan_units(name, spec, config, ctx, reference, journal, key_context, reuse), config)


def _json(extra: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in extra.items() if v is not None}, default=str, sort_keys=True)

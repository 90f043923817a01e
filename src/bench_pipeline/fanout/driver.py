"""The fan-out driver: plan's units -> shards -> Dask -> rows merged as one sweep's rows.

Shards: the units that need measuring, ``units_per_shard`` at a time, each with its own fresh
copy of the FP32 eager baseline, so each GPU measures the baseline in the same interleaved
rounds as the candidates beside it and every speedup pairs two numbers from one GPU. CPU-only
units (ONNX Runtime's CPU provider) prefer the workers without a GPU and ask for none; they carry the
baseline only when the baseline runs on the CPU too (else it would use a GPU it does not own);
on a GPU sweep their rows have no speedup (a CPU-over-GPU ratio measured on different machines
is not a pairing this sweep can vouch for).

Units that need no worker (all cells reused from the journal, or failing before a session opens)
become rows here, as ``sweep.run_units`` makes them. The baseline's rows come from the first
shard that measured it; each candidate's speedup stays the one paired inside its own shard.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench_pipeline.config import BenchmarkConfig
from bench_pipeline.fanout.cluster import GPU, connect, worker_devices
from bench_pipeline.fanout.task import run_shard
from bench_pipeline.fanout.tracking import log_child_runs, start_sweep, tracking_server, writer_env
from bench_pipeline.harness.results import cell_name, make_row
from bench_pipeline.harness.sweep import BASELINE, Rounds, Unit, run_units

log = logging.getLogger(__name__)



@dataclasses.dataclass
class Shard:
    key: str
    units: list[Unit]  # candidates first, then the baseline copy (when it has one)
    gpu: bool


@dataclasses.dataclass
class FanOut:
    """What a fan-out returns: the sweep's rows and raw rounds (as ``run_units``), and one record per
    shard (worker, GPU id and UUID, host, start/end, status) for the non-overlap check and the report."""

    sweep_id: str
    rows: list[dict[str, Any]]
    raw: dict[str, Rounds]
    shards: list[dict[str, Any]]


def is_baseline(unit: Unit) -> bool:
    return (unit.backend, unit.variant, unit.precision) == BASELINE


def cpu_only(unit: Unit) -> bool:
    """A unit that runs on the CPU whatever the device (ONNX Runtime's CPU provider)."""
    return unit.payload["options"].get("provider") == "cpu"


def make_shards(units: list[Unit], per_shard: int, sweep_id: str) -> list[Shard]:
    """The Dask tasks of a sweep: CPU-only shards first, then GPU shards, ``per_shard`` candidates
    each, with a fresh baseline copy where it may run; the baseline alone when it is all there is."""
    baseline = next((u for u in units if is_baseline(u) and u.failure is None), None)
    work = [u for u in units if u.todo and u.failure is None and not is_baseline(u)]
    groups = [(False, [u for u in work if cpu_only(u)]), (True, [u for u in work if not cpu_only(u)])]
    shards = []
    for gpu, members in groups:
        for start in range(0, len(members), per_shard):
            chunk = members[start:start + per_shard]
            pair = baseline is not None and (gpu or baseline.base["device"] == "cpu")
            fresh = [dataclasses.replace(baseline, reused={}, rounds={}, worker=None)] if pair else []
            shards.append(Shard(f"shard-{sweep_id}-{len(shards)}", chunk + fresh, gpu))
    if baseline is not None and baseline.todo and not any(baseline.label == u.label for s in shards for u in s.units):
        shards.append(Shard(f"shard-{sweep_id}-{len(shards)}", [baseline], True))
    return shards


def fan_out(units: list[Unit], config: BenchmarkConfig, tracking_uri: str, parent_run_id: str | None = None,
            visible_gpus: int = 0, experiment_name: str = "bench_pipeline", project_dir: Path | None = None,
            *, fanout_dir: Path) -> FanOut:
    """Measure ``units`` on the cluster ``config.scale`` names; rows in plan order, as ``run_units``.

    Everything a worker gets is said here, not inherited: the sweep's own tracking server
    (``tracking_uri`` is its store; no ``MLFLOW_*`` variable of this process reaches a shard) and
    ``project_dir`` (default: the working directory), where shards run; ``fanout_dir`` (``params:paths``, relative
    to ``project_dir``) takes the MLflow server's log."""
    if config.scale.scheduler is None:
        config.scale.local_gpu_workers(visible_gpus)  # before any server or cluster starts
    project = (project_dir or Path.cwd()).resolve()
    sweep_id = uuid.uuid4().hex[:12]
    shards = make_shards(units, config.scale.units_per_shard, sweep_id)
    in_shards = {id(u) for s in shards for u in s.units}
    # no worker needed: journal-reused units and failures known before opening (the baseline is in every shard)
    local = [u for u in units if id(u) not in in_shards and not (is_baseline(u) and shards and u.todo)]
    rows, raw = _index(*run_units(local, config)) if local else ({}, {})
    started = time.perf_counter()
    server_log = project / fanout_dir / f"mlflow-{sweep_id}.log"
    with tracking_server(tracking_uri, config.scale.scheduler is not None, server_log) as url:
        tracking = start_sweep(url, sweep_id, experiment_name, parent_run_id)
        with connect(config.scale, visible_gpus, writer_env(url)) as client:
            records = run_shards(client, shards, config, sweep_id, tracking, project)
    log.info("fan-out %s: %d shards on %d worker(s) in %.1f s", sweep_id, len(shards),
             len({r["worker"] for r in records if r.get("worker")}), time.perf_counter() - started)
    for first, second in overlaps(records):
        log.error("fan-out: shards %s and %s overlapped in time on %s GPU %s: their numbers shared a GPU",
                  first["key"], second["key"], first["device"]["host"], first["device"]["gpu_id"])
    _merge(records, shards, rows, raw)
    ordered = [rows[(u.label, cell_name(c.batch, c.seq))] for u in units for c in u.cells]
    timeline = [{k: v for k, v in r.items() if k not in ("rows", "raw")} for r in records]
    return FanOut(sweep_id, ordered, raw, timeline)


def fan_out_here(units: list[Unit], config: BenchmarkConfig,
                 fanout_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Rounds]]:
    """``fan_out`` from inside a Kedro node: the active MLflow run (kedro-mlflow's) is the parent,
    its tracking URI the store; the shard timeline is written to ``fanout_dir`` (``params:paths``)."""
    import json

    import mlflow
    import torch

    active = mlflow.active_run()
    result = fan_out(units, config, mlflow.get_tracking_uri(), active.info.run_id if active else None,
                     visible_gpus=torch.cuda.device_count(), fanout_dir=fanout_dir)
    fanout_dir.mkdir(parents=True, exist_ok=True)
    path = fanout_dir / f"shards-{result.sweep_id}.json"
    path.write_text(json.dumps(result.shards, indent=1, default=str))
    log.info("fan-out: shard timeline (worker, GPU, host, start, end) in %s", path)
    return result.rows, result.raw


def _index(rows: list[dict[str, Any]], raw: dict[str, Rounds]) -> tuple[dict, dict]:
    return {(f"{r['backend']}/{r['variant']}/{r['precision']}", cell_name(r["batch"], r["seq"])): r for r in rows}, raw


def run_shards(client: Any, shards: list[Shard], config: BenchmarkConfig, sweep_id: str,
               tracking: dict[str, Any] | None, project: Path) -> list[dict[str, Any]]:
    """Submit the shards (GPU shards ask for one GPU; retried once on failure), collect them as
    they finish, and log progress per worker.

    Only as many shards are in flight as there are workers for them: Dask hands a task with
    resources to a worker at once, queued behind the one running there, and when that worker dies
    every task it holds counts a death. Kept in flight one per worker, a dead worker costs only
    the shard it was running (``allowed-failures``), never its queue.
    """
    from distributed import as_completed

    devices = worker_devices(client)
    cpu_workers = [a for a, d in devices.items() if not d["gpu"]]
    slots = {True: sum(d["gpu"] for d in devices.values()), False: max(len(cpu_workers), 1)}
    waiting = {gpu: [s for s in shards if s.gpu == gpu] for gpu in (True, False)}

    def submit(gpu: bool):
        shard = waiting[gpu].pop(0)
        payload = pickle.dumps({"units": shard.units, "config": config,
                                "stamp": {"shard": shard.key, "sweep_id": sweep_id}})
        # a CPU shard prefers the workers without a GPU, and takes a GPU worker's turn when there are none
        placement = {"resources": {GPU: 1}} if gpu else {"workers": cpu_workers or None, "allow_other_workers": True}
        future = client.submit(run_shard, payload, str(project), tracking, key=shard.key, pure=False, retries=1,
                               **placement)
        futures[future] = shard
        return future

    futures: dict[Any, Shard] = {}
    pending = as_completed([submit(gpu) for gpu in (True, False) for _ in range(min(slots[gpu], len(waiting[gpu])))])
    records, progress = [], Counter()
    for future in pending:
        shard = futures.pop(future)
        try:
            record = future.result() | {"status": "ok"}
            future.release()  # off the worker now: a worker that dies later must not make it run again
            progress[(record["worker"], "done")] += 1
        except Exception as error:  # noqa: BLE001 - a shard lost twice is its cells' status, not the sweep's end
            record = _failed(shard, error, tracking, sweep_id)
            progress[("(lost)", "failed")] += 1
        records.append(record | {"key": shard.key})
        if waiting[shard.gpu]:
            pending.add(submit(shard.gpu))
        _log_progress(client, progress, len(records), len(shards))
    return records


def overlaps(records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of measured shards that ran at the same time on the same GPU (host and id): none on a
    cluster whose GPU workers each own one GPU and run one task at a time."""
    by_gpu: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        if record["status"] == "ok" and record["device"]["gpu_id"]:
            by_gpu.setdefault((record["device"]["host"], record["device"]["gpu_id"]), []).append(record)
    return [(a, b) for group in by_gpu.values() for i, a in enumerate(group) for b in group[i + 1:]
            if a["start"] < b["end"] and b["start"] < a["end"]]


def _failed(shard: Shard, error: BaseException, tracking: dict[str, Any] | None, sweep_id: str) -> dict[str, Any]:
    """Rows for a shard that could not be measured: ``crashed`` when its worker died twice, else ``error``."""
    killed = type(error).__name__ == "KilledWorker"
    status = "crashed" if killed else "error"
    reason = (f"its Dask worker died on two attempts ({type(error).__name__})" if killed
              else f"the shard failed twice: {type(error).__name__}: {_first_line(error)}")
    log.warning("%s (%s): %s", shard.key, ", ".join(u.label for u in shard.units), reason)
    extra = json.dumps({"sweep_id": sweep_id, "shard": shard.key})
    rows = [make_row(**u.base, batch=c.batch, seq=c.seq, status=status, reason=reason, extra=extra)
            for u in shard.units if not is_baseline(u) for c in u.todo]
    device = {"gpu_id": "", "gpu_uuid": None, "host": "", "shard": shard.key}
    now = time.time()
    record = {"rows": rows, "raw": {}, "device": device, "worker": "", "start": now, "end": now,
              "status": status, "run_status": "FAILED"}
    if rows and tracking:
        log_child_runs(tracking, record)
    return record


def _log_progress(client: Any, progress: Counter, finished: int, total: int) -> None:
    """Units done / running / failed per worker, after every shard that ends."""
    running = {address: len(keys) for address, keys in client.processing().items()}
    workers = worker_devices(client)
    parts = [f"{address} ({'GPU ' + str(d['device']) if d['gpu'] else 'CPU'}): done {progress[(address, 'done')]}, "
             f"running {running.get(address, 0)}" for address, d in sorted(workers.items())]
    if progress[("(lost)", "failed")]:
        parts.append(f"failed {progress[('(lost)', 'failed')]}")
    log.info("fan-out: %d/%d shards finished | %s", finished, total, " | ".join(parts))


def _merge(records, shards, rows, raw) -> None:
    """Every shard's rows into ``rows``/``raw``: candidates from their shard, the baseline from
    the first shard that measured it, GPU shards first (a CPU shard's baseline is the same CPU's)."""
    order = {s.key: i for i, s in enumerate(sorted(shards, key=lambda s: not s.gpu))}
    baseline_from = None
    for record in sorted(records, key=lambda r: order[r["key"]]):
        for row in record["rows"]:
            label = f"{row['backend']}/{row['variant']}/{row['precision']}"
            key = (label, cell_name(row["batch"], row["seq"]))
            if (row["backend"], row["variant"], row["precision"]) == BASELINE:
                if baseline_from not in (None, record["key"]):
                    continue
                baseline_from = record["key"]
            rows[key] = row
            if f"{label}/{key[1]}" in record["raw"]:
                raw[f"{label}/{key[1]}"] = record["raw"][f"{label}/{key[1]}"]


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else ""

"""Finished cells on disk the moment they finish, so a killed sweep loses nothing measured.

One append-only JSON-lines file per backend. Each line is one cell: its key, its result row
and its raw per-call times. A rerun with the same configuration and environment finds the
key and reuses the row instead of measuring again. JSON, not pickle: reading a journal runs
no code. A line cut off by a kill is moved to ``<name>.jsonl.torn`` when the journal is read, so
the next append starts on a line of its own instead of being glued onto the fragment (and lost).
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench_pipeline.harness.status import Status
from bench_pipeline.system.files import json_sha256

log = logging.getLogger(__name__)

# Statuses that are a result worth keeping. Errors, OOMs, timeouts and crashes are retried, and
# so are skips: a library installed or fixed since may make the cell runnable. An ``unstable``
# cell is measured again: its numbers were contaminated or its rounds disagreed.
REUSABLE = (Status.OK, Status.FAIL_ACCURACY, Status.UNSUPPORTED)


def reusable(row: dict[str, Any]) -> bool:
    """Whether a journaled row may stand for this run: a kept status, measured on a quiet machine."""
    return row.get("status") in REUSABLE and not row.get("contamination")

# How a row is made from its rounds (which rounds count, the dispatch probe, the verdict). Bump it when that
# changes, so a journal never serves a row the current rules would not make: 2 = agreeing rounds widened within
# max_spread, no dispatch share for a call that synchronizes inside (2026-12-02).
MEASUREMENT_RULES = 2

# Environment facts that change what a cell measures (not clocks or temperature, which drift).
_STABLE_ENV_PREFIXES = ("gpu.name", "gpu.driver", "gpu.compute_capability", "lib.", "cpu.model", "torch.", "device")


def environment_fingerprint(environment: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sorted(environment.items()) if k.startswith(_STABLE_ENV_PREFIXES)}


def artifact_hashes(artifacts: Any) -> list[str]:
    """Every ``sha256`` in an earlier stage's artifacts: a rebuilt ONNX file or engine is a new cell."""
    if isinstance(artifacts, dict):
        found = [str(artifacts["sha256"])] if "sha256" in artifacts else []
        return found + [h for key in sorted(artifacts, key=str) for h in artifact_hashes(artifacts[key])]
    if isinstance(artifacts, (list, tuple)):
        return [h for item in artifacts for h in artifact_hashes(item)]
    return []


def cell_key(
    context: dict[str, Any], backend: str, variant: str, options: dict[str, Any], precision: str, batch: int, seq: int
) -> str:
    """A hash of everything a cell's result depends on: ``context`` holds the model, the run's
    settings (timing, tolerances, seed, threads), the environment fingerprint and artifact hashes."""
    return json_sha256(
        {
            "context": context,
            "backend": backend,
            "variant": variant,
            "options": options,
            "precision": precision,
            "batch": batch,
            "seq": seq,
        },
        default=str,
    )


def key_context(
    model_info: dict[str, Any], environment: dict[str, Any], config: Any, artifacts: Any = None
) -> dict[str, Any]:
    """Everything besides the cell itself that a journaled result depends on: the measurement rules, the
    model, the settings that shape a measurement, the environment fingerprint and the stage artifacts."""
    return {
        "rules": MEASUREMENT_RULES,
        "model": {k: model_info[k] for k in ("path", "name", "weights_sha256")},
        "settings": config.model_dump(
            include={"timing", "rounds", "noise", "isolation", "tolerances", "seed", "threads", "device"}),
        "environment": environment_fingerprint(environment),
        "artifacts": artifact_hashes(artifacts),
    }


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict[str, dict[str, Any]]:
        """Cell entries by key; the last line for a key wins. A torn line is quarantined (``_repair``).
        Round records (``append_round``) are history, not results: they are kept but not returned."""
        entries: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return entries
        text = self.path.read_text()
        kept: list[str] = []
        torn: list[str] = []
        for number, line in enumerate(io.StringIO(text), 1):
            found = _entry(line) or _salvage(line)
            if found is None or found[1] != line:
                torn.append(line)
                log.warning("%s line %d is incomplete (a run was killed mid-write): moved to %s%s",
                            self.path, number, self._torn_path, "" if found is None else "; the cell after it is kept")
            if found is not None:
                if "round" not in found[0]:
                    entries[found[0]["key"]] = found[0]
                kept.append(found[1].rstrip("\n") + "\n")
        if torn or not text.endswith("\n"):
            self._repair(kept, torn)
        return entries

    def reusable_keys(self) -> set[str]:
        """Keys of the finished cells a rerun may take instead of measuring them again."""
        return {key for key, entry in self.load().items() if reusable(entry["row"])}

    def append(self, key: str, row: dict[str, Any], raw_times: dict[int, np.ndarray] | None) -> None:
        """A finished cell: its row and the raw times of each of its rounds."""
        times = None if raw_times is None else {str(r): t.tolist() for r, t in raw_times.items()}
        self._write({"key": key, "row": row, "raw_times_ms": times})

    def append_round(self, key: str, round_index: int, record: dict[str, Any]) -> None:
        """One round of a cell, the moment it ends: a sweep killed between rounds loses nothing
        measured. Kept as history; a cell is reused only from its finished entry."""
        plain = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in record.items()}
        self._write({"key": key, "round": round_index, "record": plain})

    def _write(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._tail_is_torn():
            self.load()  # repairs the file, so this line does not start on a fragment
        line = json.dumps(entry, default=_plain) + "\n"
        with self.path.open("a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    @property
    def _torn_path(self) -> Path:
        return self.path.with_name(self.path.name + ".torn")

    def _tail_is_torn(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"

    def _repair(self, kept: list[str], torn: list[str]) -> None:
        """Keep the torn lines beside the journal for inspection and rewrite the journal without
        them, atomically: a kill during the repair leaves either the old file or the new one."""
        if torn:
            with self._torn_path.open("a") as f:
                f.writelines(line.rstrip("\n") + "\n" for line in torn)
        repaired = self.path.with_name(self.path.name + ".repair")
        with repaired.open("w") as f:
            f.writelines(kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(repaired, self.path)


def _entry(line: str) -> tuple[dict[str, Any], str] | None:
    """The entry on ``line`` and the line itself; None where the line is not a whole entry."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    return (entry, line) if isinstance(entry, dict) and "key" in entry else None


def _salvage(line: str) -> tuple[dict[str, Any], str] | None:
    """A whole entry glued onto a fragment (what a run appended after a kill, before the repair
    existed), and the part of the line it takes."""
    start = line.find('{"key": ', 1)
    return None if start == -1 else _entry(line[start:])


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)

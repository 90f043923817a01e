"""Finished cells on disk the moment they finish, so a killed sweep loses nothing measured.

One append-only JSON-lines file per backend. Each line is one cell: its key, its result row
and its raw per-call times. A rerun with the same configuration and environment finds the
key and reuses the row instead of measuring again. JSON, not pickle: reading a journal runs
no code, and a line cut off by a kill is simply ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Statuses that are a result worth keeping. Errors, OOMs, timeouts and crashes are retried, and
# so are skips: a library installed or fixed since may make the cell runnable.
REUSABLE = ("ok", "fail_accuracy", "unsupported")

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
    payload = json.dumps(
        {
            "context": context,
            "backend": backend,
            "variant": variant,
            "options": options,
            "precision": precision,
            "batch": batch,
            "seq": seq,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict[str, dict[str, Any]]:
        """Entries by key; the last line for a key wins; a torn last line is skipped."""
        entries: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return entries
        with self.path.open() as f:
            for number, line in enumerate(f, 1):
                try:
                    entry = json.loads(line)
                    entries[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("%s line %d is incomplete (a run was killed mid-write): ignored", self.path, number)
        return entries

    def append(self, key: str, row: dict[str, Any], raw_times: np.ndarray | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"key": key, "row": row, "raw_times_ms": None if raw_times is None else raw_times.tolist()}
        line = json.dumps(entry, default=_plain) + "\n"
        with self.path.open("a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)

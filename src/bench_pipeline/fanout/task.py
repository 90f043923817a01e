"""What a Dask worker runs for one shard: the shard in a fresh process, then its MLflow child runs.

The worker process itself measures nothing: it writes the shard's payload to a temporary file,
starts ``python -m bench_pipeline.fanout.shard`` in the project directory (shared storage on
several hosts: the model, the ONNX files and the journal live there) with the worker's own
``CUDA_VISIBLE_DEVICES``, and reads the rows back. A shard process that fails raises, so the
scheduler retries it (``retries=1``); a worker that dies is rescheduled by the scheduler
(``allowed-failures``).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_pipeline
from bench_pipeline.fanout.tracking import log_child_runs, without_mlflow, writer_env


class ShardFailed(RuntimeError):
    """The shard's process could not measure (it exited with an error): retried once, then its cells are errors."""


def shard_env(tracking: dict[str, Any] | None) -> dict[str, str]:
    """The shard process's environment, explicit rather than inherited: this worker's, without
    any ``MLFLOW_*`` variable it took from the driver's process (a stray store or active run),
    with the sweep's tracking server, and importing the very ``bench_pipeline`` this worker runs
    (a project's ``src`` added by Kedro, not whatever an editable install points at)."""
    here = str(Path(bench_pipeline.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    return without_mlflow(os.environ) | writer_env(tracking and tracking["url"]) | {"PYTHONPATH": path}


def run_shard(payload: bytes, project_dir: str, tracking: dict[str, Any] | None) -> dict[str, Any]:
    from distributed import get_worker

    if not Path(project_dir).is_dir():
        raise ShardFailed(f"the project directory {project_dir} is not on this host: put the project on storage "
                          "every worker can reach, at the same path")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-shard-") as tmp:
        source, target, errors = Path(tmp, "in.pkl"), Path(tmp, "out.pkl"), Path(tmp, "stderr.log")
        source.write_bytes(payload)
        with errors.open("w") as stderr:
            done = subprocess.run([sys.executable, "-m", "bench_pipeline.fanout.shard", str(source), str(target)],
                                  cwd=project_dir, stderr=stderr, check=False, env=shard_env(tracking))
        if done.returncode != 0:
            tail = errors.read_text(errors="replace")[-2000:]
            raise ShardFailed(f"the shard process exited with {done.returncode}: {tail}")
        result = pickle.loads(target.read_bytes())
    result |= {"worker": get_worker().address, "start": started, "end": time.time()}
    if tracking:
        log_child_runs(tracking, result)
    return result

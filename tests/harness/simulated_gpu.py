"""The test backend of the fan-out tests, in a module of its own: the fan-out's shard processes
import it by name (``simulated_gpu:SimBackend``) in fresh interpreters that have only the project's
``src`` and this directory on their path, so it imports nothing a test module needs (pytest,
``tests/`` helpers).

Eager, with knobs: ``provider: cpu`` makes it a CPU-only unit (as ONNX Runtime CPU is),
``kill_marker`` makes its first open kill the Dask worker that runs its shard, ``kill_always``
every open, ``record_dir`` gets what the unit's process saw (its GPU id, its MLflow variables).
Kills happen only inside a fan-out worker (CUDA_VISIBLE_DEVICES set), never under a plain run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench_pipeline.backends.base import Backend
from bench_pipeline.backends.eager.runtime import EagerBackend

SEEN = ("CUDA_VISIBLE_DEVICES", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")  # what record_dir gets


class SimBackend(Backend):
    name = "sim"

    def open(self, ctx, variant, precision, options):
        if options.get("record_dir"):
            seen = {name: os.environ.get(name) for name in SEEN}
            Path(options["record_dir"], f"{variant}-{os.getpid()}.json").write_text(json.dumps(seen))
        marker = options.get("kill_marker")
        first = marker and not Path(marker).exists()
        if (first or options.get("kill_always")) and "CUDA_VISIBLE_DEVICES" in os.environ:
            import psutil

            if first:
                Path(marker).write_text("killed once")
            psutil.Process().parent().parent().kill()  # unit worker -> shard process -> Dask worker
        return EagerBackend().open(ctx, variant, precision, {})

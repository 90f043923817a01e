"""Run a backend's cells in a child process, so a hard crash or a hang costs one cell, not the run.

A segfault in a native library (an execution provider, an engine runtime) kills the process
it happens in; a deadlocked kernel never returns. Here the child does the work and sends each
finished cell back at once; the parent waits at most ``timeout_s`` for each, records the cell
in flight as ``crashed`` (with the signal) or ``timeout``, and starts a fresh child for the
cells that remain.
"""

from __future__ import annotations

import multiprocessing
import signal
from typing import Any, Iterator

import numpy as np

from bench_pipeline.results import make_row

_SPAWN = multiprocessing.get_context("spawn")  # a clean interpreter: no forked CUDA state


def run_isolated(
    payload: dict[str, Any], cells: list[Any], timeout_s: float | None
) -> Iterator[tuple[dict[str, Any], np.ndarray | None]]:
    """Yield (row, raw times) per cell, in order; ``payload`` is what ``sweep.run_variant_here``
    needs besides the cells, and must pickle."""
    remaining = list(cells)
    while remaining:
        parent, child = _SPAWN.Pipe(duplex=False)
        process = _SPAWN.Process(target=_child_main, args=(child, payload, remaining), daemon=True)
        process.start()
        child.close()
        finished = 0
        try:
            for _ in remaining:
                if not parent.poll(timeout_s):
                    process.kill()
                    failure = ("timeout", f"no result within cell_timeout_s={timeout_s} s; the worker was killed")
                    break
                try:
                    row, times = parent.recv()
                except EOFError:
                    process.join()
                    failure = ("crashed", f"the worker process died ({_describe_exit(process.exitcode)})")
                    break
                finished += 1
                yield row, times
            else:
                failure = None
        finally:
            parent.close()
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        remaining = remaining[finished:]
        if failure:
            cell = remaining.pop(0)
            yield make_row(**payload["base"], batch=cell.batch, seq=cell.seq, status=failure[0], reason=failure[1]), None


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


def _child_main(conn, payload: dict[str, Any], cells: list[Any]) -> None:
    from bench_pipeline.sweep import configure_torch, run_variant_here

    configure_torch(payload["config"].threads)  # a fresh interpreter: TF32 off and threads fixed again

    for row, times in run_variant_here(payload, cells):
        conn.send((row, times))
    conn.close()

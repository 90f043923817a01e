"""Where a unit's session lives: its own worker process (the default), or this process.

Measured on the H200, backends timed one after another in one process disturbed each other:
launch-bound cells came out up to 2.2x slower among earlier backends' leftovers (compiled
modules, CUDA-graph pools, compile workers, thread pools) than in a fresh process. So each unit
gets a fresh spawned interpreter (no forked CUDA state) that keeps its session open across
rounds and answers one command at a time; only the unit being timed runs, the others wait
idle in their own processes.

The worker also contains faults: a segfault in a native library kills only the worker (the cell
in flight is ``crashed``, with the signal), a hang past ``cell_timeout_s`` is a ``timeout`` cell;
either way a fresh worker is started for the unit's next cell.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any

from bench_pipeline.backends.base import Cell
from bench_pipeline.harness.status import Status
from bench_pipeline.harness.unit import UnitSession
from bench_pipeline.system.device import configure_torch

_SPAWN = multiprocessing.get_context("spawn")


class LocalUnit:
    """The unit's session in this process (``isolation: none``): no protection, no fresh start."""

    def __init__(self, payload: dict[str, Any], timeout_s: float | None = None, open_timeout_s: float | None = None):
        self.session = UnitSession(payload)

    def open(self) -> dict[str, Any]:
        return self.session.open()

    def measure(self, cell: Cell, round_index: int) -> dict[str, Any]:
        return self.session.measure(cell, round_index)

    def close(self) -> None:
        self.session.close()


class WorkerUnit:
    """The unit's session in its own worker process, driven over a pipe."""

    def __init__(self, payload: dict[str, Any], timeout_s: float | None = None, open_timeout_s: float | None = None):
        self.payload = payload
        self.timeout_s = timeout_s
        self.open_timeout_s = open_timeout_s
        self.process: Any = None
        self.conn: Any = None
        self._start()

    def _start(self) -> None:
        self.conn, child = _SPAWN.Pipe()
        self.process = _SPAWN.Process(target=_worker_main, args=(child, self.payload), daemon=True)
        self.process.start()
        child.close()

    def open(self) -> dict[str, Any]:
        """Wait for the worker to open its session (it started at construction, so several
        workers load and compile at once; none is timed before every unit is open). A worker that
        has not opened ``open_timeout_s`` after being asked is killed: its unit's cells are ``timeout``
        rows instead of a sweep that waits forever."""
        if not self.conn.poll(self.open_timeout_s):
            self.process.kill()
            self._forget()
            return {"status": Status.TIMEOUT, "reason": "the worker had not opened (loaded, compiled) within "
                    f"open_timeout_s={self.open_timeout_s} s; it was killed"}
        try:
            return self.conn.recv()
        except EOFError:
            return {"status": Status.CRASHED, "reason": f"the worker process died while opening ({self._exit()})"}

    def measure(self, cell: Cell, round_index: int) -> dict[str, Any]:
        if self.process is None:  # the last cell killed it: a fresh worker for this one
            self._start()
            opened = self.open()
            if opened["status"] != "open":
                self.close()
                return opened
        self.conn.send(("measure", cell, round_index))
        if not self.conn.poll(self.timeout_s):
            self.process.kill()
            self._forget()
            return {"status": Status.TIMEOUT,
                    "reason": f"no result within cell_timeout_s={self.timeout_s} s; the worker was killed"}
        try:
            return self.conn.recv()
        except EOFError:
            reason = f"the worker process died ({self._exit()})"
            self._forget()
            return {"status": Status.CRASHED, "reason": reason}

    def close(self) -> None:
        if self.process is None:
            return
        try:
            self.conn.send(("close",))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
        self._forget()

    def _exit(self) -> str:
        self.process.join(timeout=30)
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def _forget(self) -> None:
        self.process.join(timeout=30)
        self.conn.close()
        self.process = self.conn = None


def _worker_main(conn, payload: dict[str, Any]) -> None:
    # compile in this process: a pool of compile workers would stay behind, sharing the CPU
    # with the timed calls (the worker's compiles hit the dynamo stage's cache anyway)
    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    configure_torch(payload["ctx"].threads)  # a fresh interpreter: TF32 off and threads fixed again
    session = UnitSession(payload)
    conn.send(session.open())
    try:
        while True:
            command = conn.recv()
            if command[0] == "close":
                break
            _, cell, round_index = command
            conn.send(session.measure(cell, round_index))
    finally:
        session.close()
        conn.close()

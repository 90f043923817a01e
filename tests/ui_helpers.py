"""Loopback servers for the UI tests (MLflow server, the static kedro-viz site).

Each server runs in its own process group, so stopping it also stops what it spawned (uvicorn
workers, a leftover child) even when the test fails half-way. Readiness is polled with a
deadline: a slow 2-core CI machine gets time, a server that died or never answers fails the test
with its own log instead of hanging it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it; the tiny race is acceptable in tests)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def http_get(url: str, timeout_s: float = 30) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; HTTP errors come back as their status, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode(errors="replace")


def get_json(base_url: str, endpoint: str, /, **query: Any) -> dict[str, Any]:
    """GET ``endpoint`` with ``query`` as its query string (positional-only, so ``path=`` is a query key)."""
    url = f"{base_url}{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    status, _, body = http_get(url)
    assert status == 200, f"GET {url} -> {status}: {body[:500]}"
    return json.loads(body)


def post_json(base_url: str, endpoint: str, payload: dict[str, Any], timeout_s: float = 30) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base_url}{endpoint}", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"POST {endpoint} {payload} -> {error.code}: {error.read()[:500]!r}") from error


def log_tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:] if log_path.exists() else "(no log)"


def wait_until_serving(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail early if the server exits, and at the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited with {process.returncode}:\n{log_tail(log_path)}")
        try:
            status, _, _ = http_get(url, timeout_s=5)
            if status == 200:
                return
            last_error = f"HTTP {status}"
        except (urllib.error.URLError, OSError) as error:
            last_error = repr(error)
        time.sleep(0.5)
    raise AssertionError(f"{url} not serving after {timeout_s:.0f} s ({last_error}):\n{log_tail(log_path)}")


def stop_process_group(process: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after ``grace_s``."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@contextmanager
def background_server(
    command: list[str], cwd: Path, ready_url: str, log_path: Path, env: dict[str, str] | None = None,
    timeout_s: float = 180,
) -> Iterator[subprocess.Popen]:
    """Start ``command`` in its own session (hence process group), yield once ``ready_url`` answers 200."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until_serving(ready_url, process, log_path, timeout_s)
        yield process
    finally:
        stop_process_group(process)

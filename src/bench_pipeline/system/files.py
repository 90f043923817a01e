"""The files layer: content hashes that every cache key and fingerprint (models, ONNX exports, engines) share,
the one atomic write, and the one way a name becomes part of a path."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 23), b""):
            digest.update(chunk)
    return digest.hexdigest()


def json_sha256(payload: Any, default: Any = None) -> str:
    """The sha256 of ``payload`` as sorted-key JSON: a cache or journal key that does not depend on dict order."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=default).encode()).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file, so an interrupted run never leaves a half-written engine, cache or manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def slug(text: str, keep: str = "") -> str:
    """``text`` as one path component: every run of characters other than letters, digits and ``keep``
    becomes one ``_``, with none at either end (a GPU name, a model name, a variant)."""
    return re.sub(rf"[^A-Za-z0-9{re.escape(keep)}]+", "_", text).strip("_")

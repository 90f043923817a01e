"""The base of every typed stage record (the export's ``ExportRecord``, ``backends/<name>/records.py``): frozen, no
unknown keys, ``status`` ok (an artifact that could not be made is a ``results.status_record`` instead), and the
facts every file of the export's verified cache carries. Pydantic only: no torch, no pandas."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from bench_pipeline.harness.status import Status


class OkRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal[Status.OK] = Status.OK


class FileRecord(OkRecord):
    """A file from ``onnx.export``'s content-hashed cache (``cached``: reused after its hashes were checked)."""

    path: str
    sha256: str
    size_bytes: int
    cached: bool

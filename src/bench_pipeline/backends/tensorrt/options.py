"""The tensorrt backend's variant ``options``, checked without torch or TensorRT (``config.py`` runs this before
any node; the runtime again before it opens an engine)."""

from __future__ import annotations

from typing import Any

OPTIONS = ("cuda_graph",)


def check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown tensorrt option(s) {unknown}; allowed: {list(OPTIONS)}")

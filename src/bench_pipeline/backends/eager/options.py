"""The eager backend's variant ``options``, checked without torch (``config.py`` runs this before any node)."""

from __future__ import annotations

from typing import Any

OPTIONS = ("attn_implementation",)


def check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown eager option(s) {unknown}; allowed: {list(OPTIONS)}")

"""Short, stable text for numbers and names, shared by figures and both report forms."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd


def config_label(backend: str, variant: str, precision: str) -> str:
    """Name of a backend configuration: 'eager fp32', 'onnxruntime:cuda_graph fp16'."""
    name = backend if variant in (None, "", "default") else f"{backend}:{variant}"
    return f"{name} {precision}"


def cell_label(batch: int, seq: int) -> str:
    return f"{int(batch)}×{int(seq)}"


def fmt(value: Any, spec: str, suffix: str = "") -> str:
    """``format(value, spec) + suffix``, or '' for a missing value."""
    return "" if value is None or pd.isna(value) else format(value, spec) + suffix


def fmt_ms(value: float) -> str:
    """Three significant digits without scientific notation: 0.512, 3.21, 31.0, 702."""
    if value is None or pd.isna(value):
        return ""
    for limit, digits in ((100, 0), (10, 1), (1, 2)):
        if abs(value) >= limit:
            return f"{value:.{digits}f}"
    return f"{value:.3f}"


def fmt_calls(value: float) -> str:
    """Inferences to break even, readable at a glance: '42', '3.2k', '1.1M', 'never (not faster)'."""
    if value is None or pd.isna(value):
        return ""
    if math.isinf(value):
        return "never (not faster)"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{math.ceil(value):d}"


def fmt_ci(value: Any, low: Any, high: Any, render: Callable[[float], str], unit: str = "") -> str:
    """A number with its 95 % interval, '4.09 ms [4.01–4.20]', '8.90× [8.61–9.22]'; the bare
    number where the interval is unknown, '' where the number is."""
    if value is None or pd.isna(value):
        return ""
    text = f"{render(value)}{unit}"
    if any(v is None or pd.isna(v) for v in (low, high)):
        return text
    return f"{text} [{render(low)}–{render(high)}]"


def fmt_speedup(value: Any, low: Any = None, high: Any = None) -> str:
    """A speedup with two decimals and its interval where known: '8.90× [8.61–9.22]'."""
    return fmt_ci(value, low, high, lambda v: format(v, ".2f"), "×")

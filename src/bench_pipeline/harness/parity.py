"""Compare a cell's outputs with the FP32 eager reference: a fast wrong answer is not a result.

Only real tokens count: positions the attention mask pads out carry no meaning and differ
freely between backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bench_pipeline.config import Tolerance

HIDDEN, POOLED = "last_hidden_state", "pooler_output"


def compare(
    outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], attention_mask: np.ndarray
) -> dict[str, float]:
    """max/mean absolute difference and cosine similarity, per output, as result columns."""
    if HIDDEN not in outputs:
        raise KeyError(f"backend produced no {HIDDEN!r}; outputs: {sorted(outputs)}")
    real = attention_mask.astype(bool)
    result = differences(outputs[HIDDEN][real], reference[HIDDEN][real], prefix="")
    if POOLED in reference and POOLED in outputs:
        result |= differences(outputs[POOLED], reference[POOLED], prefix="pooled_")
    return result


def differences(actual: np.ndarray, expected: np.ndarray, prefix: str) -> dict[str, float]:
    """Max abs, mean abs and cosine of ``actual`` against ``expected``, keys prefixed (the generation scenario's
    logits parity uses the same measures as the forward one)."""
    if actual.shape != expected.shape:
        raise ValueError(f"output shape {actual.shape} differs from the reference {expected.shape}")
    a = actual.astype(np.float64).ravel()
    e = expected.astype(np.float64).ravel()
    diff = np.abs(a - e)
    norms = np.linalg.norm(a) * np.linalg.norm(e)
    cosine = float(a @ e / norms) if norms > 0 else (1.0 if not diff.any() else 0.0)
    if not np.isfinite(a).all():
        cosine = float("nan")  # NaN or inf in the outputs never passes
    return {f"{prefix}max_abs": float(diff.max()), f"{prefix}mean_abs": float(diff.mean()), f"{prefix}cosine": cosine}


def violation(parity: dict[str, float], tolerance: Tolerance) -> str | None:
    """Why the cell fails its precision's tolerance, or None when it passes."""
    problems = []
    for prefix in ("", "pooled_"):
        cosine = parity.get(f"{prefix}cosine")
        if cosine is None:
            continue
        name = "pooled output" if prefix else "last hidden state"
        mean_abs = parity[f"{prefix}mean_abs"]
        if not cosine >= tolerance.min_cosine:  # also catches NaN
            problems.append(f"{name} cosine {cosine:.6f} < {tolerance.min_cosine}")
        if not mean_abs <= tolerance.max_mean_abs:
            problems.append(f"{name} mean abs diff {mean_abs:.3g} > {tolerance.max_mean_abs}")
    return "; ".join(problems) or None

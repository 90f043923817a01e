"""Greedy token parity against the FP32 eager generation (dynamic cache), step by step.

FP32 must generate exactly the reference's ids: the first step where any row differs makes the cell
``fail_accuracy`` and the reason names it. FP16/BF16 round differently, so after a near tie their greedy
paths may part: they record the first divergent step and the cosine of step 1's logits (computed from
the same prompt, so comparable whatever happened later), and fail only below the precision's
``min_cosine``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench_pipeline.harness.parity import differences


def first_divergent_step(tokens: np.ndarray, reference: np.ndarray) -> int | None:
    """The 1-based step where any row's token first differs from the reference (None: none does)."""
    if tokens.shape != reference.shape:
        raise ValueError(f"generated ids of shape {tokens.shape} differ from the reference's {reference.shape}")
    differing = np.flatnonzero((tokens != reference).any(axis=0))
    return int(differing[0]) + 1 if differing.size else None


def token_parity(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], precision: str,
                 tolerance: Any) -> tuple[dict[str, Any], str | None]:
    """(result columns, why the cell fails or None)."""
    step = first_divergent_step(outputs["token_ids"], reference["token_ids"])
    columns: dict[str, Any] = {"first_divergent_step": step, "tokens_match": step is None}
    logits, expected = outputs["step1_logits"], reference["step1_logits"]
    if logits.shape != expected.shape:
        raise ValueError(f"step-1 logits of shape {logits.shape} differ from the reference's {expected.shape}")
    # ids masked to -inf on both sides (EOS while min_new_tokens holds) carry no number to compare
    compared = ~(np.isneginf(logits) & np.isneginf(expected))
    columns |= differences(logits[compared], expected[compared], prefix="")
    if precision == "fp32" and step is not None:
        row = int(np.flatnonzero(outputs["token_ids"][:, step - 1] != reference["token_ids"][:, step - 1])[0])
        return columns, (f"generated ids differ from FP32 eager greedy from step {step} of "
                         f"{reference['token_ids'].shape[1]} (row {row}: {int(outputs['token_ids'][row, step - 1])} "
                         f"instead of {int(reference['token_ids'][row, step - 1])})")
    if not columns["cosine"] >= tolerance.min_cosine:  # also NaN
        return columns, f"step-1 logits cosine {columns['cosine']:.6f} < {tolerance.min_cosine}"
    return columns, None

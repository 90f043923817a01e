"""Greedy token parity: FP32 must match step for step; lower precisions report where they part."""

import numpy as np

from bench_pipeline.config import Tolerance
from bench_pipeline.generation.parity import first_divergent_step, token_parity

STRICT = Tolerance(min_cosine=0.99999, max_mean_abs=1e-3)
LOGITS = np.array([[1.0, 2.0, -np.inf, 0.5], [0.1, 0.3, -np.inf, 0.2]], dtype=np.float32)  # id 2 = EOS, masked


def test_first_divergent_step_is_one_based_over_all_rows():
    reference = np.array([[5, 6, 7, 8], [1, 2, 3, 4]])
    assert first_divergent_step(reference.copy(), reference) is None
    changed = reference.copy()
    changed[1, 2] = 9
    assert first_divergent_step(changed, reference) == 3


def test_fp32_mismatch_fails_naming_the_step_row_and_ids():
    reference = {"token_ids": np.array([[5, 6, 7]]), "step1_logits": LOGITS[:1]}
    outputs = {"token_ids": np.array([[5, 4, 7]]), "step1_logits": LOGITS[:1]}
    columns, why = token_parity(outputs, reference, "fp32", STRICT)
    assert columns["first_divergent_step"] == 2 and columns["tokens_match"] is False
    assert why == "generated ids differ from FP32 eager greedy from step 2 of 3 (row 0: 4 instead of 6)"


def test_masked_eos_logits_compare_as_equal_not_nan():
    reference = {"token_ids": np.array([[1], [3]]), "step1_logits": LOGITS}
    columns, why = token_parity({"token_ids": np.array([[1], [3]]), "step1_logits": LOGITS.copy()}, reference,
                                "fp32", STRICT)
    assert why is None and columns["cosine"] == 1.0 and columns["tokens_match"] is True


def test_fp16_divergence_is_reported_and_judged_by_the_step1_cosine():
    reference = {"token_ids": np.array([[1, 2, 3]]), "step1_logits": LOGITS[:1]}
    diverged = {"token_ids": np.array([[1, 2, 9]]), "step1_logits": LOGITS[:1] * 1.001}
    columns, why = token_parity(diverged, reference, "fp16", Tolerance(min_cosine=0.999, max_mean_abs=1))
    assert columns["first_divergent_step"] == 3 and why is None
    wrong = {"token_ids": np.array([[1, 2, 3]]), "step1_logits": np.array([[0.0, -2.0, -np.inf, 3.0]])}
    _, why = token_parity(wrong, reference, "fp16", Tolerance(min_cosine=0.999, max_mean_abs=1))
    assert why.startswith("step-1 logits cosine ") and why.endswith("< 0.999")

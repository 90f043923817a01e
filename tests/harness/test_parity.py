import numpy as np

from bench_pipeline.config import Tolerance
from bench_pipeline.harness.parity import compare, violation

TOL = Tolerance(min_cosine=0.999, max_mean_abs=0.01)


def hidden(values):
    return {"last_hidden_state": np.asarray(values, dtype=np.float32)}


def test_identical_outputs_pass_with_zero_difference():
    rng = np.random.default_rng(0)
    ref = hidden(rng.normal(size=(2, 4, 8)))
    parity = compare(ref, ref, np.ones((2, 4)))
    assert parity == {"max_abs": 0.0, "mean_abs": 0.0, "cosine": 1.0}
    assert violation(parity, TOL) is None


def test_padding_positions_are_ignored():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(1, 4, 8))
    out = ref.copy()
    out[0, 3] += 100.0  # garbage at a padded position
    mask = np.array([[1, 1, 1, 0]])
    assert compare(hidden(out), hidden(ref), mask)["max_abs"] == 0.0
    assert compare(hidden(out), hidden(ref), np.ones((1, 4)))["max_abs"] > 99


def test_a_wrong_output_fails_with_a_reason_naming_the_metric():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(2, 4, 8))
    parity = compare(hidden(ref + 0.5), hidden(ref), np.ones((2, 4)))
    reason = violation(parity, TOL)
    assert "last hidden state mean abs diff" in reason and "> 0.01" in reason


def test_nan_never_passes():
    ref = np.ones((1, 2, 4))
    out = ref.copy()
    out[0, 0, 0] = np.nan
    parity = compare(hidden(out), hidden(ref), np.ones((1, 2)))
    assert "cosine nan" in violation(parity, TOL)


def test_pooled_output_is_compared_where_the_reference_has_it():
    rng = np.random.default_rng(3)
    ref = {"last_hidden_state": rng.normal(size=(1, 2, 4)), "pooler_output": rng.normal(size=(1, 4))}
    out = {**ref, "pooler_output": -ref["pooler_output"]}
    parity = compare(out, ref, np.ones((1, 2)))
    assert parity["pooled_cosine"] < -0.99
    assert "pooled output cosine" in violation(parity, TOL)
    no_pooler_ref = {"last_hidden_state": ref["last_hidden_state"]}
    assert "pooled_cosine" not in compare(out, no_pooler_ref, np.ones((1, 2)))

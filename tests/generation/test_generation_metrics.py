"""TTFT and per-token latency from step stamps: token 1 is the prefill, the gaps after it the decode steps."""

import pytest

from bench_pipeline.generation.metrics import generation_fields


def test_ttft_is_the_first_stamp_and_decode_steps_are_the_gaps():
    rounds = [[[10.0, 12.0, 14.0, 16.0]] * 3, [[10.0, 12.0, 14.0, 16.0]] * 3]
    fields = generation_fields(rounds, batch=4, e2e_p50_ms=16.0, seed=0)
    assert fields["new_tokens"] == 4
    assert fields["ttft_ms"] == pytest.approx(10.0)
    assert fields["tpot_p50_ms"] == pytest.approx(2.0) and fields["tpot_mean_ms"] == pytest.approx(2.0)
    assert fields["throughput_tok_s"] == pytest.approx(4 * 4 * 1000 / 16.0)  # generated tokens of the batch per s


def test_one_new_token_has_a_ttft_and_no_decode_steps():
    fields = generation_fields([[[5.0]], [[6.0]]], batch=1, e2e_p50_ms=6.0, seed=0)
    assert fields["new_tokens"] == 1 and "tpot_p50_ms" not in fields

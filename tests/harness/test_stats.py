"""Rounds, their agreement, and the bootstrap intervals of latencies and speedups."""

import numpy as np
import pytest

from bench_pipeline.harness.stats import (
    agreeing_rounds,
    faster_round_left_out,
    latency_interval,
    paired_speedup,
    robust_cov,
    round_spread,
    unpaired_speedup,
)


def rounds(medians, rng, calls=200, noise=0.01):
    return [m * (1 + noise * rng.standard_normal(calls)) for m in medians]


def test_latency_is_the_median_of_round_medians_inside_its_interval():
    rng = np.random.default_rng(0)
    data = rounds([10.0, 10.2, 9.9], rng)
    estimate = latency_interval(data)
    assert estimate.value == pytest.approx(np.median([np.median(r) for r in data]))
    assert estimate.low < estimate.value < estimate.high
    assert estimate.high - estimate.low < 0.5  # three close rounds: a tight interval


def test_rounds_that_disagree_widen_the_interval():
    rng = np.random.default_rng(0)
    close = latency_interval(rounds([10.0, 10.1, 9.9], rng))
    apart = latency_interval(rounds([10.0, 13.0, 8.0], rng))
    assert (apart.high - apart.low) > 5 * (close.high - close.low)


def test_a_paired_speedup_cancels_drift_that_hit_both_sides():
    rng = np.random.default_rng(1)
    drift = [10.0, 13.0, 8.0]  # the host slowed down and sped up; both backends felt it
    baseline = rounds(drift, rng)
    candidate = rounds([d / 2 for d in drift], rng)
    paired = paired_speedup(baseline, candidate)
    unpaired = unpaired_speedup(baseline, candidate)
    assert paired.value == pytest.approx(2.0, rel=0.02)
    assert paired.low < 2.0 < paired.high
    assert (paired.high - paired.low) < 0.25 * (unpaired.high - unpaired.low)


def test_paired_rounds_must_match_in_number():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="paired rounds differ in number: 3 baseline, 2 candidate"):
        paired_speedup(rounds([1, 1, 1], rng), rounds([1, 1], rng))


def test_the_agreeing_rounds_leave_an_outlying_round_out():
    data = {0: np.array([15.0]), 1: np.array([10.0]), 2: np.array([10.3]), 3: np.array([10.1])}
    assert agreeing_rounds(data, 3) == [1, 2, 3]
    assert agreeing_rounds(data, 4) == [0, 1, 2, 3]
    assert round_spread([data[r] for r in (1, 2, 3)]) == pytest.approx(0.3 / 10.1)


def test_every_round_that_agrees_counts_not_only_the_closest_few():
    # a stable baseline re-measured beside two retries: five rounds within 3 %, all of them count
    stable = {i: np.array([m]) for i, m in enumerate([10.0, 10.2, 10.1, 10.3, 10.05])}
    assert agreeing_rounds(stable, 3, max_spread=0.10) == [0, 1, 2, 3, 4]
    # an outlier still stays out, and the widest agreeing window wins
    one_off = {i: np.array([m]) for i, m in enumerate([15.0, 10.0, 10.3, 10.1, 10.9])}
    assert agreeing_rounds(one_off, 3, max_spread=0.10) == [1, 2, 3, 4]
    # widening keeps the closest three: a wider window of slower rounds elsewhere never replaces them
    slowed = {i: np.array([m]) for i, m in enumerate([9.8, 10.0, 10.02, 10.9, 11.0])}
    assert agreeing_rounds(slowed, 3, max_spread=0.10) == [0, 1, 2]
    # where even the closest three disagree, they are what is judged (the cell is unstable)
    scattered = {i: np.array([m]) for i, m in enumerate([4.9, 9.5, 7.9, 7.7, 4.6])}
    assert agreeing_rounds(scattered, 3, max_spread=0.10) == agreeing_rounds(scattered, 3) == [1, 2, 3]


def test_a_faster_round_left_out_is_found_a_slower_one_is_not():
    # the H200's dynamo inductor FP16 32x128: three rounds near 5.5 ms agreed, two faster ones were left out
    data = {i: np.array([m]) for i, m in enumerate([3.867, 5.794, 5.243, 2.909, 5.578])}
    counted = agreeing_rounds(data, 3)
    assert counted == [1, 2, 4]
    assert faster_round_left_out(data, counted, 0.10) == pytest.approx(2.909)
    slow_outlier = {0: np.array([15.0]), 1: np.array([10.0]), 2: np.array([10.3]), 3: np.array([10.1])}
    assert faster_round_left_out(slow_outlier, [1, 2, 3], 0.10) is None  # a cold or disturbed round: slower


def test_robust_cov_ignores_a_few_preempted_calls():
    times = np.full(100, 1.0) + np.linspace(-0.01, 0.01, 100)
    preempted = times.copy()
    preempted[:3] = 50.0  # the OS ran something else
    assert robust_cov(preempted) < 0.02
    assert np.std(preempted) / np.mean(preempted) > 1.0  # the plain CoV says "noisy" for nothing

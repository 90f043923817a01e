"""The harness's stop rule and statistics, driven by a controllable clock."""

import numpy as np
import pytest

from bench_pipeline.harness.timing import StopRule, measure, summarize


class FakeClock:
    """A clock that only moves when the timed function runs: each call costs ``durations`` in turn."""

    def __init__(self, durations_ms):
        self.now = 0
        self.durations = iter(durations_ms)
        self.calls = 0

    def now_ns(self):
        return self.now

    def fn(self):
        self.calls += 1
        self.now += int(next(self.durations) * 1e6)


def constant(ms):
    while True:
        yield ms


def test_stops_only_when_both_min_iters_and_min_time_are_reached():
    clock = FakeClock(constant(10.0))  # 10 ms a call
    rule = StopRule(warmup_iters=0, warmup_s=0, min_iters=5, min_time_s=0.2, max_time_s=10)
    m = measure(clock.fn, rule, now_ns=clock.now_ns)
    assert len(m.times_ms) == 20  # time, not count, was the binding limit: 0.2 s / 10 ms
    rule = StopRule(warmup_iters=0, warmup_s=0, min_iters=30, min_time_s=0.2, max_time_s=10)
    m = measure(clock.fn, rule, now_ns=clock.now_ns)
    assert len(m.times_ms) == 30  # now the count is
    assert m.notes == []


def test_first_call_is_recorded_apart_and_warmup_by_count_and_time():
    clock = FakeClock(iter([500.0] + [10.0] * 10_000))
    rule = StopRule(warmup_iters=3, warmup_s=0.05, min_iters=5, min_time_s=0, max_time_s=10)
    m = measure(clock.fn, rule, now_ns=clock.now_ns)
    assert m.first_call_ms == 500.0
    assert m.warmup_calls == 5  # 0.05 s of warm-up at 10 ms a call beats the count of 3
    assert np.all(m.times_ms == 10.0)


def test_warmup_goes_on_while_times_still_fall():
    falling = [100.0 - i for i in range(60)] + [10.0] * 10_000
    clock = FakeClock(iter([1.0] + falling))
    rule = StopRule(warmup_iters=20, warmup_s=0, min_iters=5, min_time_s=0, max_time_s=100)
    m = measure(clock.fn, rule, now_ns=clock.now_ns)
    assert m.warmup_calls > 20


def test_ceiling_stops_a_slow_cell_and_says_so():
    clock = FakeClock(constant(400.0))
    rule = StopRule(warmup_iters=0, warmup_s=0, min_iters=100, min_time_s=0, max_time_s=1.0)
    m = measure(clock.fn, rule, now_ns=clock.now_ns)
    assert len(m.times_ms) == 3
    assert "stopped at max_time_s=1.0" in m.notes[0]


def test_a_warm_up_cut_short_by_the_ceiling_says_so():
    clock = FakeClock(constant(300.0))
    rule = StopRule(warmup_iters=10, warmup_s=0, min_iters=1, min_time_s=0, max_time_s=1.0)
    m = measure(clock.fn, rule, now_ns=clock.now_ns)
    assert m.warmup_calls == 2  # 0.5 s of warm-up budget at 300 ms a call
    assert "warm-up cut at max_time_s/2 after 2 calls (warmup_iters=10)" in m.notes[0]


def test_statistics_of_known_times():
    times = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    stats = summarize(times)
    assert stats["mean_ms"] == pytest.approx(5.5)
    assert stats["p50_ms"] == pytest.approx(5.5)
    assert stats["p90_ms"] == pytest.approx(9.1)
    assert stats["p99_ms"] == pytest.approx(9.91)
    assert stats["std_ms"] == pytest.approx(np.std(times, ddof=1))
    assert stats["cov"] == pytest.approx(np.std(times, ddof=1) / 5.5)
    assert stats["cov_flag"] is True  # robust CoV 1.4826 * 2.5 / 5.5 = 67 %
    assert stats["iterations"] == 10


def test_steady_times_are_not_flagged_noisy():
    stats = summarize(np.array([10.0, 10.1, 9.9, 10.0, 10.05]))
    assert stats["cov"] < 0.025
    assert stats["cov_flag"] is False

"""How sure a latency or a speedup is: rounds, their agreement, and bootstrap intervals.

A cell is measured in several rounds, each a run of the stop rule in the unit's own worker
process, interleaved with the other units. Its latency is the median of the round medians.
The interval comes from a two-level bootstrap: rounds are resampled (the drift between them is
the larger part of the uncertainty on a shared host), then calls within each drawn round.
``scipy.stats.bootstrap`` resamples one level only, hence the few lines of numpy here.

A speedup pairs the baseline's and the candidate's rounds of the same index (measured seconds
apart): resampling the same round indices for both keeps that pairing, so slow drift that hit
both cancels in the ratio instead of widening it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
# Calls per round that the call-level resampling draws from. A GPU round has thousands of calls;
# every k-th of them (in time order) keeps the cost bounded and the interval, if anything, wider.
MAX_CALLS = 400


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


def median_of_medians(rounds: list[np.ndarray]) -> float:
    return float(np.median([np.median(r) for r in rounds]))


def round_spread(rounds: list[np.ndarray]) -> float:
    """(slowest - fastest round median) / median of round medians: how much the rounds disagree."""
    medians = [float(np.median(r)) for r in rounds]
    return (max(medians) - min(medians)) / float(np.median(medians))


def agreeing_rounds(rounds: dict[int, np.ndarray], count: int, max_spread: float | None = None) -> list[int]:
    """The rounds that agree: the ``count`` whose medians lie closest together (all of them if there are no
    more), widened by the neighbouring rounds that keep the spread within ``max_spread``: the widest such
    window around the closest ``count``, never one that drops them (which could trade the fastest agreeing
    round for slowed ones).

    A retried cell has more rounds than it needs; an outlying round (a burst of load, the first
    round of a cold process) is then left out instead of averaged in, while a round that agrees is
    counted, not set aside (a stable baseline re-measured beside every retry kept 3 of 5 rounds and
    was marked as having set rounds aside). The rounds left out stay on record (journal, raw
    times); only the agreeing ones count.
    """
    if len(rounds) <= count:
        return sorted(rounds)
    ordered = sorted(rounds, key=lambda r: float(np.median(rounds[r])))
    medians = [float(np.median(rounds[r])) for r in ordered]
    start = min(range(len(ordered) - count + 1), key=lambda i: medians[i + count - 1] - medians[i])
    end = start + count
    if max_spread is not None and round_spread([rounds[r] for r in ordered[start:end]]) <= max_spread:
        windows = [(i, j) for i in range(start + 1) for j in range(end, len(ordered) + 1)
                   if round_spread([rounds[r] for r in ordered[i:j]]) <= max_spread]
        start, end = max(windows, key=lambda w: (w[1] - w[0], -(medians[w[1] - 1] - medians[w[0]])))
    return sorted(ordered[start:end])


def faster_round_left_out(rounds: dict[int, np.ndarray], counted: list[int], max_spread: float) -> float | None:
    """The median of a round left out that ran more than ``max_spread`` faster than the counted ones (the
    fastest such; None: there is none).

    Interference from the host or the GPU slows calls down, it does not speed them up: a round well below
    the agreeing ones says that they may all have been slowed (on the H200, dynamo inductor FP16 32x128
    counted 5.2-5.8 ms rounds and left out 2.9 and 3.9 ms ones), so such a cell has not settled."""
    fastest_counted = min(float(np.median(rounds[r])) for r in counted)
    faster = [float(np.median(t)) for r, t in rounds.items()
              if r not in counted and float(np.median(t)) < fastest_counted * (1 - max_spread)]
    return min(faster) if faster else None


def latency_interval(rounds: list[np.ndarray], seed: int = 0) -> Estimate:
    """Median of round medians with its two-level bootstrap interval."""
    draws = _resampled_medians(rounds, np.random.default_rng(seed), _round_draws(len(rounds), seed))
    return Estimate(median_of_medians(rounds), *_percentiles(draws))


def paired_speedup(baseline: list[np.ndarray], candidate: list[np.ndarray], seed: int = 0) -> Estimate:
    """baseline / candidate latency; ``baseline[i]`` and ``candidate[i]`` are the same round."""
    if len(baseline) != len(candidate):
        raise ValueError(f"paired rounds differ in number: {len(baseline)} baseline, {len(candidate)} candidate")
    picks = _round_draws(len(baseline), seed)
    base = _resampled_medians(baseline, np.random.default_rng(seed), picks)
    cand = _resampled_medians(candidate, np.random.default_rng(seed + 1), picks)
    return Estimate(median_of_medians(baseline) / median_of_medians(candidate), *_percentiles(base / cand))


def unpaired_speedup(baseline: list[np.ndarray], candidate: list[np.ndarray], seed: int = 0) -> Estimate:
    """The same ratio when the rounds were not measured side by side (e.g. one side reused from
    an earlier run): both sides resampled independently, so the interval is honestly wider."""
    base = _resampled_medians(baseline, np.random.default_rng(seed), _round_draws(len(baseline), seed))
    cand = _resampled_medians(candidate, np.random.default_rng(seed + 1), _round_draws(len(candidate), seed + 1))
    return Estimate(median_of_medians(baseline) / median_of_medians(candidate), *_percentiles(base / cand))


def robust_cov(times: np.ndarray) -> float:
    """Scatter of one round's calls that a few preempted calls cannot dominate: 1.4826·MAD/median
    (equal to std/mean for normal noise). On a CPU the plain CoV is ruled by rare long calls
    (the OS scheduling something else), so a flag on it marked every cell and meant nothing."""
    median = float(np.median(times))
    return 1.4826 * float(np.median(np.abs(times - median))) / median if median > 0 else float("nan")


def _round_draws(n_rounds: int, seed: int) -> np.ndarray:
    """Which rounds each bootstrap replicate takes: ``RESAMPLES`` x ``n_rounds`` indices."""
    return np.random.default_rng(seed + 7919).integers(0, n_rounds, size=(RESAMPLES, n_rounds))


def _resampled_medians(rounds: list[np.ndarray], rng: np.random.Generator, picks: np.ndarray) -> np.ndarray:
    """For each replicate: the median over its drawn rounds of a resample of that round's calls."""
    # one set of call-level resamples per round, drawn once and indexed by the round draws
    thinned = [r[:: -(-len(r) // MAX_CALLS)] for r in rounds]
    per_round = np.stack(
        [np.median(rng.choice(r, size=(RESAMPLES, len(r)), replace=True), axis=1) for r in thinned]
    )  # (n_rounds, RESAMPLES)
    replicate = np.arange(RESAMPLES)[:, None]
    return np.median(per_round[picks, replicate], axis=1)


def _percentiles(draws: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)

"""The dispatch-share probe's arithmetic (the probe itself needs a GPU: it runs on the device with every GPU
sweep). What matters on CPU: a call that waited for the GPU inside is no number, not a share of 0."""

import pytest

from bench_pipeline.harness.dispatch import share_from


def test_a_call_that_queues_freely_gets_the_share_the_gpu_idled():
    # p50 4.0 ms, kernels 1.0 ms back to back behind the spin, the host returned after 3.9 ms: 75 % idle
    assert share_from([1.0, 1.1, 0.9], [3.9, 4.0, 3.8], p50_ms=4.0, spin_ms=13.0) == pytest.approx(0.75)
    assert share_from([4.4], [1.0], p50_ms=4.0, spin_ms=13.0) == 0.0  # GPU-bound: clamped, never negative


def test_a_call_that_synchronizes_inside_has_no_share_rather_than_zero():
    # the host came back only after the 13 ms spin: its kernels after the wait were never queued behind it
    assert share_from([4.6, 4.5, 4.7], [13.2, 13.4, 13.1], p50_ms=4.0, spin_ms=13.0) is None

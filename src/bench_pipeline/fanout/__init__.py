"""Fan a sweep out over the GPUs of one host or several, on Dask (``benchmark.scale``).

A Dask task is a *shard*: a few units of the plan plus the FP32 eager baseline, measured by the
ordinary ``sweep.run_units`` in a fresh ``python -m bench_pipeline.fanout.shard`` process on a
worker that owns one GPU (``CUDA_VISIBLE_DEVICES``, resource ``GPU=1``, one thread), so every
speedup is paired with a baseline measured on the same GPU in the same rounds. Nothing here
imports Dask until a fan-out starts: it is the optional ``scale`` extra.
"""

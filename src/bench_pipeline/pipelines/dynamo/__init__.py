"""Dynamo stage: torch.compile every dynamo variant x precision for the grid, modules kept in memory."""

from bench_pipeline.pipelines.dynamo.pipeline import create_pipeline

__all__ = ["create_pipeline"]

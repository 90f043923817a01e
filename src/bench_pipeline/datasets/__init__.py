"""Kedro datasets for artifacts the catalog must persist."""

from bench_pipeline.datasets.tensor_dict import TensorDictDataset

__all__ = ["TensorDictDataset"]

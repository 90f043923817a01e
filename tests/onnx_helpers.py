"""Helpers the ONNX export and ONNX Runtime optimizer tests share: run a graph on ONNX Runtime's CPU EP, the same
inputs through PyTorch, compare, and a small benchmark config to decide which graphs get built."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from bench_pipeline.config import BenchmarkConfig
from bench_pipeline.model.source import load_model


def run_onnx(path: str, inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {meta.name: inputs[meta.name].numpy() for meta in session.get_inputs()}
    names = [meta.name for meta in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def run_torch(model_dir: Path, inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    model = load_model(model_dir, "fp32", torch.device("cpu"))
    with torch.no_grad():
        out = model(**inputs)
    return {"last_hidden_state": out.last_hidden_state.numpy(), "pooler_output": out.pooler_output.numpy()}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def benchmark_config(device="cpu", **backends) -> BenchmarkConfig:
    return BenchmarkConfig(
        device=device,
        grid={"batch_sizes": [1], "sequence_lengths": [16]},
        precisions=["fp32", "fp16"],
        backends={"eager": {}, **backends},
    )

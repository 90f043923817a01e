"""How close a measured latency comes to what the GPU could do at best.

The bound is a two-sided roofline over the forward pass: the time the tensor (or FP32)
cores need for its matmul FLOPs, or the time the memory needs to read the weights once,
whichever is longer. Both sides are lower bounds, so ``roofline_pct`` (bound / measured)
reads as "share of the GPU's best case reached"; 100 % is unreachable in practice. The
bound ignores softmax, layer norm, GELU and activations traffic: small next to the matmuls
for BERT-like encoders, and leaving them out keeps the bound a true lower bound.

Peaks are the vendors' spec-sheet numbers (dense, no sparsity), not measured ones, so the
percentages of two runs on the same GPU model compare directly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

# Config keys the FLOP count needs, with the Hugging Face names (DistilBERT's dim/n_layers/
# hidden_dim must be mapped to these by whoever builds ``model_info``).
ARCHITECTURE_KEYS = ("hidden_size", "num_hidden_layers", "intermediate_size")

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class GpuPeak:
    """Spec-sheet peaks of one GPU model; ``None`` where the GPU has no such unit."""

    name: str
    fp32_tflops: float  # FP32 on CUDA cores (what FP32 with TF32 off can use)
    fp16_tflops: float  # FP16 tensor cores, dense, FP32 accumulate
    bf16_tflops: float | None
    memory_tb_s: float
    source: str

    def tflops(self, precision: str) -> float | None:
        return {"fp32": self.fp32_tflops, "fp16": self.fp16_tflops, "bf16": self.bf16_tflops}.get(precision)


# Matched against the name CUDA/NVML reports (e.g. "NVIDIA H100 80GB HBM3"), first match wins,
# so the specific forms (PCIe, NVL, L40S) come before the general ones.
# Sources (spec sheets; dense = half the "with sparsity" figure):
#   H100/H100 NVL: https://www.nvidia.com/en-us/data-center/h100/
#   H200/H200 NVL: https://www.nvidia.com/en-us/data-center/h200/
#   A100:          https://www.nvidia.com/en-us/data-center/a100/ (datasheet linked there)
#   L4:            https://www.nvidia.com/en-us/data-center/l4/
#   L40S / L40:    https://www.nvidia.com/en-us/data-center/l40s/ , https://www.nvidia.com/en-us/data-center/l40/
#   A10:           https://www.nvidia.com/en-us/data-center/products/a10-gpu/
#   T4:            https://www.nvidia.com/en-us/data-center/tesla-t4/
#   RTX 4090:      https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf (appendix
#                  table; GeForce runs FP16 tensor math with FP32 accumulate at half rate: 165.2, not 330.3)
_H100 = "https://www.nvidia.com/en-us/data-center/h100/"
_H200 = "https://www.nvidia.com/en-us/data-center/h200/"
_A100 = "https://www.nvidia.com/en-us/data-center/a100/"
GPU_PEAKS: tuple[tuple[str, GpuPeak], ...] = (
    (r"H100.*PCIe", GpuPeak("H100 PCIe", 51.2, 756.5, 756.5, 2.0, _H100)),
    (r"H100.*NVL", GpuPeak("H100 NVL", 60.0, 835.0, 835.0, 3.9, _H100)),
    (r"\bH100\b", GpuPeak("H100 SXM", 66.9, 989.4, 989.4, 3.35, _H100)),
    (r"\bH200\b.*NVL", GpuPeak("H200 NVL", 60.0, 835.0, 835.0, 4.8, _H200)),
    (r"\bH200\b", GpuPeak("H200 SXM", 66.9, 989.4, 989.4, 4.8, _H200)),
    (r"A100.*SXM.*40GB", GpuPeak("A100 SXM 40GB", 19.5, 312.0, 312.0, 1.555, _A100)),
    (r"A100.*SXM", GpuPeak("A100 SXM 80GB", 19.5, 312.0, 312.0, 2.039, _A100)),
    (r"A100.*80GB.*PCI", GpuPeak("A100 PCIe 80GB", 19.5, 312.0, 312.0, 1.935, _A100)),
    (r"A100.*PCI", GpuPeak("A100 PCIe 40GB", 19.5, 312.0, 312.0, 1.555, _A100)),
    (r"\bL40S\b", GpuPeak("L40S", 91.6, 362.05, 362.05, 0.864, "https://www.nvidia.com/en-us/data-center/l40s/")),
    (r"\bL40\b", GpuPeak("L40", 90.5, 181.05, 181.05, 0.864, "https://www.nvidia.com/en-us/data-center/l40/")),
    (r"\bL4\b", GpuPeak("L4", 30.3, 121.0, 121.0, 0.3, "https://www.nvidia.com/en-us/data-center/l4/")),
    (r"\bA10\b", GpuPeak("A10", 31.2, 125.0, 125.0, 0.6, "https://www.nvidia.com/en-us/data-center/products/a10-gpu/")),
    (r"\bT4\b", GpuPeak("T4", 8.1, 65.0, None, 0.32, "https://www.nvidia.com/en-us/data-center/tesla-t4/")),
    (
        r"RTX 4090",
        GpuPeak(
            "RTX 4090",
            82.6,
            165.2,
            165.2,
            1.008,
            "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf",
        ),
    ),
)


def gpu_peak(gpu_name: str | None) -> GpuPeak | None:
    """The peaks of the GPU the run used, or None for a GPU not in the table (or no GPU)."""
    if not gpu_name:
        return None
    for pattern, peak in GPU_PEAKS:
        if re.search(pattern, gpu_name, flags=re.IGNORECASE):
            return peak
    return None


def _architecture(model_info: Mapping[str, Any]) -> dict[str, int] | None:
    values = {key: model_info.get(key) for key in ARCHITECTURE_KEYS}
    if any(not isinstance(value, int) or value <= 0 for value in values.values()):
        return None
    return values


def matmul_parameters(model_info: Mapping[str, Any]) -> int:
    """Weights the encoder layers multiply with (Q, K, V, O and the two FFN matrices); the
    embeddings are a table lookup, and biases are too small to matter."""
    arch = _require_architecture(model_info)
    h, i = arch["hidden_size"], arch["intermediate_size"]
    per_layer = 4 * h * h + 2 * h * i
    pooler = h * h if model_info.get("has_pooler") else 0
    return arch["num_hidden_layers"] * per_layer + pooler


def forward_flops(model_info: Mapping[str, Any], batch: int, seq: int) -> float:
    """FLOPs of one forward pass of a BERT-like encoder over a padded (batch, seq) input.

    2 FLOPs per multiply-add: every token goes through each weight matrix once
    (2 * tokens * matmul parameters), and attention adds QK^T and AV, each
    2 * batch * seq^2 * hidden per layer (heads split ``hidden``, so their count drops out).
    Padding is computed like any token, as the engines do.
    """
    if batch <= 0 or seq <= 0:
        raise ValueError(f"batch and seq must be positive, got batch={batch!r}, seq={seq!r}")
    arch = _require_architecture(model_info)
    h, layers = arch["hidden_size"], arch["num_hidden_layers"]
    tokens = batch * seq
    layer_weights = matmul_parameters({**model_info, "has_pooler": False})
    weights = 2 * tokens * layer_weights
    attention = layers * 2 * (2 * batch * seq * seq * h)
    pooler = 2 * batch * h * h if model_info.get("has_pooler") else 0
    return float(weights + attention + pooler)


def _require_architecture(model_info: Mapping[str, Any]) -> dict[str, int]:
    arch = _architecture(model_info)
    if arch is None:
        shown = {key: model_info.get(key) for key in ARCHITECTURE_KEYS}
        raise ValueError(f"model_info needs positive integers for {list(ARCHITECTURE_KEYS)}; got {shown}")
    return arch


def roofline_ms(model_info: Mapping[str, Any], peak: GpuPeak, precision: str, batch: int, seq: int) -> float:
    """Lower bound on one call's latency: compute time or weight-read time, the longer one."""
    tflops = peak.tflops(precision)
    if tflops is None or precision not in BYTES_PER_ELEMENT:
        return math.nan
    compute_s = forward_flops(model_info, batch, seq) / (tflops * 1e12)
    memory_s = matmul_parameters(model_info) * BYTES_PER_ELEMENT[precision] / (peak.memory_tb_s * 1e12)
    return 1e3 * max(compute_s, memory_s)


def add_roofline(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> pd.DataFrame:
    """The frame with ``gflops`` (per call), ``achieved_tflops``, ``roofline_ms`` and
    ``roofline_pct`` columns.

    ``roofline_*`` stay empty (NaN) on rows that did not run on a GPU of the table, for a
    precision the GPU lacks, or when ``model_info`` lacks the architecture; ``gflops`` and
    ``achieved_tflops`` need only the architecture, so CPU runs get them too.
    """
    missing = [c for c in ("precision", "batch", "seq", "p50_ms") if c not in df.columns]
    if missing:
        raise ValueError(f"results frame lacks columns {missing}; see bench_pipeline.harness.results.COLUMNS")
    out = df.copy()
    for column in ("gflops", "achieved_tflops", "roofline_ms", "roofline_pct"):
        out[column] = math.nan
    if out.empty or _architecture(model_info) is None:
        return out
    peak = gpu_peak(env.get("gpu.name"))
    p50 = pd.to_numeric(out["p50_ms"], errors="coerce")
    out["gflops"] = [forward_flops(model_info, int(b), int(s)) / 1e9 for b, s in zip(out["batch"], out["seq"])]
    out["achieved_tflops"] = out["gflops"] / p50  # GFLOP per ms == TFLOP per s
    if peak is None:
        return out
    if "device" in out.columns:
        on_gpu = out["device"].astype(str).str.startswith("cuda")
    else:  # older frames without the column: trust the environment
        on_gpu = pd.Series(True, index=out.index)
    out["roofline_ms"] = [
        roofline_ms(model_info, peak, str(precision), int(b), int(s)) if gpu else math.nan
        for precision, b, s, gpu in zip(out["precision"], out["batch"], out["seq"], on_gpu)
    ]
    out["roofline_pct"] = 100 * out["roofline_ms"] / p50
    return out


def roofline_basis(env: Mapping[str, Any], model_info: Mapping[str, Any]) -> str:
    """One sentence for the report: what the roofline column is based on, or why it is empty."""
    if _architecture(model_info) is None:
        return f"% of roofline not computed: model_info lacks {list(ARCHITECTURE_KEYS)}."
    gpu_name = env.get("gpu.name")
    if not gpu_name:
        return "% of roofline not computed: no GPU in this run (peaks are known for GPUs only)."
    peak = gpu_peak(gpu_name)
    if peak is None:
        known = ", ".join(p.name for _, p in GPU_PEAKS)
        return f"% of roofline not computed: GPU {gpu_name!r} is not in the peak table (known: {known})."
    bf16 = f"{peak.bf16_tflops:g}" if peak.bf16_tflops else "n/a"
    return (
        f"% of roofline: lower-bound latency max(matmul FLOPs / peak, weight bytes / bandwidth) over measured p50, "
        f"with {peak.name} spec-sheet peaks (dense): FP32 {peak.fp32_tflops:g}, FP16 {peak.fp16_tflops:g}, "
        f"BF16 {bf16} TFLOP/s, {peak.memory_tb_s:g} TB/s ({peak.source}). FP32 uses the CUDA-core peak "
        f"(TF32 off); a backend that uses TF32 for FP32 can exceed 100 %."
    )

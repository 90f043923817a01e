"""The torch device a run measures on, and the torch settings every process of it shares.

Every process that times or compiles (the main one, each unit's worker) calls
``configure_torch``, so FP32 means the same strict FP32 everywhere.
"""

from __future__ import annotations

import torch


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def configure_torch(threads: int | None) -> int:
    """FP32 means FP32: TF32 off for the reference and every FP32 cell. Threads fixed and returned."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()

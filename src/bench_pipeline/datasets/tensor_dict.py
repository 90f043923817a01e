"""A dict of named arrays in one safetensors file: reference outputs without pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset
from safetensors.numpy import load_file, save_file


class TensorDictDataset(AbstractDataset[dict[str, np.ndarray], dict[str, np.ndarray]]):
    """safetensors holds only tensors and a JSON header, so loading a file cannot run code."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata  # kedro-viz reads its layer from here

    def _load(self) -> dict[str, np.ndarray]:
        return load_file(self._filepath)

    def _save(self, data: dict[str, np.ndarray]) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: np.ascontiguousarray(v) for k, v in data.items()}, self._filepath)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

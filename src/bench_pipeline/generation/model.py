"""Which decoder to generate with, checked before any node runs, and the prompts it is given.

Like the forward scenario, every later step loads the model from one local directory
(``model_info["path"]``): the embedded tiny default, a preset with random weights, a hub id or a
local directory. Prompts are seeded random token ids below the vocabulary size: the timing of a
greedy generation does not depend on what the tokens say, so no tokenizer is needed (nor shipped
for the presets), and every backend gets exactly the same ids.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from bench_pipeline.config import ModelSpec

_PRESET_DIR = Path(__file__).parent / "presets"
#: random-weight architectures for timing-only runs; ``tiny-llama`` is the offline default
GENERATION_PRESETS = {path.stem: path for path in sorted(_PRESET_DIR.glob("*.json"))}
DEFAULT_PRESET = "tiny-llama"
# the config keys different architectures use for their context length
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx", "seq_length")


def generation_config_dict(spec: ModelSpec) -> dict[str, Any] | None:
    """The model's config.json as a dict, without weights; None for a hub id not in the local cache."""
    if spec.source == "default":
        return json.loads(GENERATION_PRESETS[DEFAULT_PRESET].read_text())
    if spec.source == "preset":
        return json.loads(GENERATION_PRESETS[spec.name].read_text())
    if spec.source == "local":
        return json.loads((Path(spec.name) / "config.json").read_text())
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(spec.name, "config.json", revision=spec.revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (or offline): checked again once the model is resolved
        return None
    return json.loads(Path(path).read_text())


def context_length(config: dict[str, Any]) -> int | None:
    return next((int(config[key]) for key in _CONTEXT_KEYS if config.get(key)), None)


def check_generation_model(spec: ModelSpec, prompt_lengths: list[int], new_tokens: int) -> None:
    """A clear error for a model that cannot generate (an encoder) or a prompt + new tokens beyond its context."""
    if spec.source == "preset" and spec.name not in GENERATION_PRESETS:
        raise ValueError(f"model preset {spec.name!r} is an encoder preset; scenario generate allows the decoder "
                         f"presets {sorted(GENERATION_PRESETS)}")
    config = generation_config_dict(spec)
    if config is not None:
        check_generation_config(config, prompt_lengths, new_tokens, spec.name or DEFAULT_PRESET)


def check_generation_config(config: dict[str, Any], prompt_lengths: list[int], new_tokens: int, name: str) -> None:
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = config.get("model_type", "")
    causal_classes = {c for c in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() if isinstance(c, str)}
    architectures = config.get("architectures") or []
    # BERT has a causal-LM class too, but a checkpoint saved as an encoder (BertModel) is not one
    decoder = (model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not config.get("is_encoder_decoder")
               and (config.get("is_decoder") or not architectures or any(a in causal_classes for a in architectures)))
    if not decoder:
        raise ValueError(
            f"model {name!r} (model_type {model_type!r}, architectures {architectures}) is not a decoder-only "
            "causal LM, so scenario generate cannot run it; use a causal LM (e.g. gpt2, llama), or scenario: "
            "forward for an encoder"
        )
    limit = context_length(config) or context_length(AutoConfig.for_model(**config).to_dict())
    longest = max(prompt_lengths)
    if limit is not None and longest + new_tokens > limit:
        raise ValueError(
            f"prompt length {longest} + generate.new_tokens {new_tokens} = {longest + new_tokens} tokens exceed "
            f"the model's context of {limit} tokens; lower grid.sequence_lengths or generate.new_tokens"
        )


def resolve_generation_model(spec: ModelSpec, models_dir: Path, seed: int) -> dict[str, Any]:
    """The decoder as a local directory and the facts the report needs (``model_info``)."""
    from bench_pipeline.model.source import hub_snapshot, weights_digest

    if spec.source in ("default", "preset"):
        name = spec.name if spec.source == "preset" else DEFAULT_PRESET
        path = materialize_preset(name, models_dir, seed)
    elif spec.source == "local":
        name, path = spec.name, Path(spec.name)
    else:
        name, path = spec.name, hub_snapshot(spec.name, spec.revision)
    config = json.loads((path / "config.json").read_text())
    return {
        "name": name if spec.source != "default" else f"{name} (embedded, random weights)",
        "path": str(path),
        "source": spec.source,
        "model_type": config.get("model_type"),
        "context_length": context_length(config),
        "vocab_size": int(config["vocab_size"]),
        "num_hidden_layers": config.get("num_hidden_layers", config.get("n_layer")),
        "hidden_size": config.get("hidden_size", config.get("n_embd")),
        "num_parameters": _num_parameters(path),
        "weights_sha256": weights_digest(path),
        "trust_remote_code": spec.trust_remote_code,
        "scenario": "generate",
    }


def materialize_preset(name: str, models_dir: Path, seed: int) -> Path:
    """Save a preset decoder with seeded random weights once; reused while its config and seed are unchanged."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    text = GENERATION_PRESETS[name].read_text()
    target = models_dir / f"{name}-{hashlib.sha256(f'{text}|seed={seed}'.encode()).hexdigest()[:16]}"
    if (target / "model.safetensors").is_file():
        return target
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**json.loads(text)))
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _num_parameters(path: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            total += sum(_product(f.get_slice(key).get_shape()) for key in f.keys())
    return total


def _product(shape: list[int]) -> int:
    result = 1
    for size in shape:
        result *= size
    return result


def load_causal_lm(model_dir: str | Path, precision: str, device: torch.device, *, trust_remote_code: bool = False,
                   attn_implementation: str | None = None) -> torch.nn.Module:
    import torch
    from transformers import AutoModelForCausalLM

    from bench_pipeline.model.source import DTYPES

    kwargs: dict[str, Any] = {"dtype": DTYPES[precision], "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(model_dir, **kwargs).eval().to(device)


def eos_ids(model_dir: str | Path) -> list[int]:
    """The ids HF's ``generate`` keeps from being picked while ``min_new_tokens`` are not reached (its model's
    generation config, else config.json): our own loops suppress the same ones, so they pick the same ids."""
    for name in ("generation_config.json", "config.json"):
        path = Path(model_dir) / name
        if path.is_file():
            eos = json.loads(path.read_text()).get("eos_token_id")
            if eos is not None:
                return [int(e) for e in (eos if isinstance(eos, list) else [eos])]
    return []


def prompt_ids(vocab_size: int, batch: int, prompt_length: int, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random prompt ids (no padding: every row is ``prompt_length`` real tokens)."""
    import torch

    generator = torch.Generator().manual_seed(hash((seed, batch, prompt_length)) % 2**31)
    # ids from 3 up: clear of the usual special ids (pad/bos/eos) of small vocabularies
    ids = torch.randint(3, vocab_size, (batch, prompt_length), generator=generator, dtype=torch.int64)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

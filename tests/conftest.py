"""Shared fixtures: real (tiny) models on disk, no hub access."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]


def save_tiny_bert(target: Path, *, seed: int = 0, **overrides) -> Path:
    """A 2-layer random BERT with the embedded model's real tokenizer: a model directory like any other."""
    return save_tiny_encoder(target, "bert", seed=seed, **overrides)


#: a DeBERTa-v2 (v3) shaped encoder: relative attention with position buckets, no absolute positions
DEBERTA_V2 = dict(relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=32, max_relative_positions=-1,
                  norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False, type_vocab_size=0)


def save_tiny_encoder(target: Path, model_type: str, *, seed: int = 0, **overrides) -> Path:
    """A 2-layer, hidden-32 encoder of ``model_type`` with seeded random weights, saved with
    ``save_pretrained``, plus the embedded model's tokenizer (its ids fit the 30522 vocabulary)."""
    import torch
    from transformers import AutoConfig, AutoModel

    from bench_pipeline.models import default_model_dir

    settings = dict(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=128,
    ) | overrides
    torch.manual_seed(seed)
    AutoModel.from_config(AutoConfig.for_model(model_type, **settings)).save_pretrained(target)
    for name in TOKENIZER_FILES:
        shutil.copy(default_model_dir() / name, target / name)
    return target


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))

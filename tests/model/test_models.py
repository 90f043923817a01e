"""Model sources and realistic inputs, on real models that live on this machine."""

import shutil

import pytest
import torch

from bench_pipeline.config import ModelSpec
from bench_pipeline.model.source import load_model, make_inputs, precision_unsupported, resolve_model


def test_embedded_default_resolves_offline(tmp_path):
    info = resolve_model(ModelSpec(), tmp_path, seed=0)
    assert info["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["model_type"] == "bert" and info["hidden_size"] == 384 and info["num_hidden_layers"] == 6
    assert info["num_parameters"] == 22_713_216
    assert info["max_position_embeddings"] == 512
    assert info["has_pooler"] is True


def test_local_directory_is_used_in_place(tiny_bert_dir, tmp_path):
    info = resolve_model(ModelSpec(source="local", name=str(tiny_bert_dir)), tmp_path, seed=0)
    assert info["path"] == str(tiny_bert_dir.resolve())
    assert info["hidden_size"] == 32 and info["max_position_embeddings"] == 128


def test_hub_id_goes_through_the_hub_and_says_what_failed(tmp_path):
    # HF_HUB_OFFLINE=1 and an empty cache: the real snapshot_download path runs and its error is kept.
    with pytest.raises(FileNotFoundError, match="hub model 'someorg/not-cached'.*could not be fetched"):
        resolve_model(ModelSpec(source="hub", name="someorg/not-cached"), tmp_path, seed=0)


def test_preset_is_materialized_once_with_random_weights(tmp_path):
    info = resolve_model(ModelSpec(source="preset", name="distilbert-base-uncased"), tmp_path, seed=0)
    assert info["model_type"] == "distilbert" and info["name"] == "distilbert-base-uncased (random weights)"
    assert info["hidden_size"] == 768 and info["num_hidden_layers"] == 6
    weights = next(tmp_path.glob("distilbert-base-uncased-*/model.safetensors"))
    mtime = weights.stat().st_mtime_ns
    again = resolve_model(ModelSpec(source="preset", name="distilbert-base-uncased"), tmp_path, seed=0)
    assert again["path"] == info["path"] and weights.stat().st_mtime_ns == mtime


def test_inputs_are_real_token_ids_of_the_exact_shape_and_seeded(tiny_bert_dir):
    a = make_inputs(tiny_bert_dir, 3, 20, seed=0)
    assert set(a) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(t.shape == (3, 20) and t.dtype == torch.int64 for t in a.values())
    assert (a["input_ids"][:, 0] == 101).all() and (a["input_ids"][:, -1] == 102).all()  # [CLS] ... [SEP]
    assert len(set(a["input_ids"][0].tolist())) > 10  # words, not padding
    assert torch.equal(a["input_ids"], make_inputs(tiny_bert_dir, 3, 20, seed=0)["input_ids"])
    assert not torch.equal(a["input_ids"], make_inputs(tiny_bert_dir, 3, 20, seed=1)["input_ids"])


def test_long_sequences_are_filled_with_text(tiny_bert_dir):
    inputs = make_inputs(tiny_bert_dir, 2, 128, seed=0)
    assert inputs["attention_mask"].sum().item() == 2 * 128


def test_fp16_on_cpu_is_unsupported_with_a_reason():
    assert "FP16" in precision_unsupported(torch.device("cpu"), "fp16")
    assert precision_unsupported(torch.device("cpu"), "fp32") is None


def test_load_model_in_bf16(tiny_bert_dir):
    model = load_model(tiny_bert_dir, "bf16", torch.device("cpu"))
    assert next(model.parameters()).dtype == torch.bfloat16 and not model.training


def test_a_copied_model_directory_loads_like_the_original(tiny_bert_dir, tmp_path):
    copy = shutil.copytree(tiny_bert_dir, tmp_path / "copy")
    a = load_model(tiny_bert_dir, "fp32", torch.device("cpu"))
    b = load_model(copy, "fp32", torch.device("cpu"))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

"""Real ONNX exports (tiny random BERT, all-MiniLM-L6-v2) run by ONNX Runtime on CPU, the
content-hashed cache, and the export stage's Kedro pipeline (ONNX Runtime's fusions: tests/backends/onnxruntime)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from pydantic import ValidationError

from bench_pipeline.backends.onnx.export import (
    OnnxExportError,
    artifact_sha256,
    cached_artifact,
    export_onnx,
    manifest_path,
)
from bench_pipeline.backends.onnx.stage import ExportConfig, ExportRecord, export_onnx_node
from bench_pipeline.backends.onnxruntime.optimize import optimize_onnx
from bench_pipeline.model.limits import default_model_dir
from bench_pipeline.model.source import make_inputs, weights_digest
from bench_pipeline.pipelines.benchmark import backend_pipeline
from bench_pipeline.system.files import file_sha256
from conftest import save_tiny_bert
from onnx_helpers import benchmark_config, run_onnx, run_torch

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# --- export ------------------------------------------------------------------------------------


def test_tiny_export_has_named_dynamic_inputs_and_outputs(tiny_export):
    model = onnx.load(tiny_export["path"])
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert inputs == {name: ["batch", "sequence"] for name in ("input_ids", "attention_mask", "token_type_ids")}
    assert outputs == {"last_hidden_state": ["batch", "sequence", 32], "pooler_output": ["batch", 32]}
    assert tiny_export["opset"] == 17 and tiny_export["exporter"] == "torchscript"
    assert tiny_export["sha256"] == file_sha256(tiny_export["path"])
    assert tiny_export["size_bytes"] == os.path.getsize(tiny_export["path"])
    assert tiny_export["export_s"] > 0 and tiny_export["cached"] is False


@pytest.mark.parametrize(("batch", "seq"), [(1, 7), (3, 64)])
def test_tiny_export_matches_pytorch_at_other_shapes(tiny_export, tiny_bert_dir, batch, seq):
    inputs = make_inputs(tiny_bert_dir, batch, seq, seed=1)
    got, expected = run_onnx(tiny_export["path"], inputs), run_torch(tiny_bert_dir, inputs)
    for name in ("last_hidden_state", "pooler_output"):
        np.testing.assert_allclose(got[name], expected[name], atol=1e-4, rtol=1e-4)


def test_minilm_export_matches_pytorch_on_real_tokens(minilm_export):
    inputs = make_inputs(default_model_dir(), 4, 48, seed=0)
    got, expected = run_onnx(minilm_export["path"], inputs), run_torch(default_model_dir(), inputs)
    real = inputs["attention_mask"].numpy().astype(bool)
    np.testing.assert_allclose(got["last_hidden_state"][real], expected["last_hidden_state"][real], atol=1e-4)
    np.testing.assert_allclose(got["pooler_output"], expected["pooler_output"], atol=1e-4)


def test_second_export_with_the_same_key_reuses_the_file(tiny_bert_dir, tmp_path):
    out = tmp_path / "model.onnx"
    first = export_onnx(tiny_bert_dir, out)
    mtime = out.stat().st_mtime_ns
    second = export_onnx(tiny_bert_dir, out)
    assert first["cached"] is False and second["cached"] is True
    assert out.stat().st_mtime_ns == mtime  # not written again
    assert second["sha256"] == first["sha256"] and second["export_s"] == first["export_s"]


def test_changed_export_options_rebuild(tiny_bert_dir, tmp_path):
    out = tmp_path / "model.onnx"
    export_onnx(tiny_bert_dir, out, opset=17)
    again = export_onnx(tiny_bert_dir, out, opset=18)
    assert again["cached"] is False and again["opset"] == 18


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "delete"])
def test_corrupt_cached_file_is_detected_and_rebuilt(tiny_bert_dir, tmp_path, damage):
    out = tmp_path / "model.onnx"
    first = export_onnx(tiny_bert_dir, out)
    if damage == "truncate":
        with open(out, "r+b") as handle:
            handle.truncate(out.stat().st_size // 2)
    elif damage == "flip_byte":  # same size, one byte different: only the hash can tell
        data = bytearray(out.read_bytes())
        data[len(data) // 2] ^= 0xFF
        out.write_bytes(bytes(data))
    else:
        out.unlink()
    rebuilt = export_onnx(tiny_bert_dir, out)
    assert rebuilt["cached"] is False
    assert file_sha256(out) == rebuilt["sha256"] == first["sha256"]  # the export is deterministic
    assert export_onnx(tiny_bert_dir, out)["cached"] is True


def test_unreadable_manifest_is_not_trusted(tiny_bert_dir, tmp_path):
    out = tmp_path / "model.onnx"
    export_onnx(tiny_bert_dir, out)
    manifest_path(out).write_text("{not json")
    assert export_onnx(tiny_bert_dir, out)["cached"] is False
    assert json.loads(manifest_path(out).read_text())["files"]["model.onnx"] == file_sha256(out)


def test_model_without_pooler_or_token_types_exports_what_it_has(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    model_dir = tmp_path / "distilbert"
    config = DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2, hidden_dim=20, max_position_embeddings=32)
    DistilBertModel(config).save_pretrained(model_dir)
    info = export_onnx(model_dir, tmp_path / "onnx" / "model.onnx")
    assert info["inputs"] == ["input_ids", "attention_mask"] and info["outputs"] == ["last_hidden_state"]
    graph = onnx.load(info["path"]).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.output] == ["last_hidden_state"]


def test_dynamo_exporter_matches_pytorch(tiny_bert_dir, tmp_path):
    info = export_onnx(tiny_bert_dir, tmp_path / "model.onnx", exporter="dynamo")
    inputs = make_inputs(tiny_bert_dir, 2, 24, seed=0)
    got, expected = run_onnx(info["path"], inputs), run_torch(tiny_bert_dir, inputs)
    np.testing.assert_allclose(got["last_hidden_state"], expected["last_hidden_state"], atol=1e-4, rtol=1e-4)
    assert info["exporter"] == "dynamo" and info["opset"] == 17


def test_export_failure_raises_with_the_exporters_message(tiny_bert_dir, tmp_path):
    with pytest.raises(OnnxExportError, match=r"torchscript export failed: .*opset"):
        export_onnx(tiny_bert_dir, tmp_path / "model.onnx", opset=6)
    assert not (tmp_path / "model.onnx").exists() and not manifest_path(tmp_path / "model.onnx").exists()


def test_bad_arguments_fail_early(tiny_bert_dir, tmp_path):
    with pytest.raises(ValueError, match=r"unknown exporter 'jit'.*torchscript.*dynamo"):
        export_onnx(tiny_bert_dir, tmp_path / "m.onnx", exporter="jit")
    with pytest.raises(ValueError, match="no config.json"):
        export_onnx(tmp_path, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"unknown optimizer model_type 'deberta-v2'; allowed: \['bart'"):
        optimize_onnx(tmp_path / "m.onnx", tmp_path / "o.onnx", model_type="deberta-v2", num_heads=2,
                      hidden_size=32, float16=True, use_gpu=False)


# --- cache folders keyed by content (issue 11, item 5) -----------------------------------------


def test_two_models_in_directories_of_one_name_keep_their_own_exports(tmp_path):
    first = tiny_model_info(save_tiny_bert(tmp_path / "a" / "model", seed=1), name="model")
    second = tiny_model_info(save_tiny_bert(tmp_path / "b" / "model", seed=2), name="model")
    benchmark, export = benchmark_config(onnxruntime={}), ExportConfig(cache_dir=str(tmp_path / "onnx"))
    exported = [export_onnx_node(info, benchmark, export) for info in (first, second)]
    assert exported[0]["path"] != exported[1]["path"]
    again = export_onnx_node(first, benchmark, export)  # the second did not evict the first...
    assert again["cached"] is True and again["sha256"] == exported[0]["sha256"]
    assert file_sha256(exported[1]["path"]) == exported[1]["sha256"]  # ...nor overwrite its file
    # the typed record (ExportRecord) is persisted as the same JSON dict as before: keys, order, values
    assert list(again) == ["status", "path", "sha256", "size_bytes", "cached", "exporter", "opset", "export_s",
                           "validate_max_rel", "inputs", "outputs"]
    assert json.loads(json.dumps(again))["status"] == "ok" and again["inputs"][0] == "input_ids"


def test_an_export_record_with_a_missing_or_mistyped_fact_fails_at_the_stage():
    facts = {"path": "m.onnx", "sha256": "ab", "size_bytes": 10, "cached": False, "exporter": "torchscript",
             "opset": 17, "export_s": 1.0, "validate_max_rel": 1e-6, "inputs": ["input_ids"], "outputs": ["x"]}
    assert ExportRecord(**facts).model_dump() == {"status": "ok", **facts}
    with pytest.raises(ValidationError, match="opset"):
        ExportRecord(**facts | {"opset": "seventeen"})
    with pytest.raises(ValidationError, match="sha256"):
        ExportRecord(**{k: v for k, v in facts.items() if k != "sha256"})


# --- the Kedro stage ---------------------------------------------------------------------------


def tiny_model_info(model_dir: Path, name: str = "tiny/bert") -> dict:
    config = json.loads((model_dir / "config.json").read_text())
    return {"path": str(model_dir), "name": name, "model_type": config["model_type"], "hidden_size": 32,
            "num_attention_heads": 2, "has_pooler": True, "weights_sha256": weights_digest(model_dir)}


def test_export_pipeline_writes_fp32_and_fused_graphs(tiny_bert_dir, tmp_path):
    benchmark = benchmark_config(onnxruntime={"variants": [
        {"name": "cpu", "options": {"provider": "cpu"}},
        {"name": "cpu-fused", "precisions": ["fp32"], "options": {"provider": "cpu", "fused": True}},
        {"name": "cuda", "options": {"provider": "cuda"}},  # no CUDA EP here: no FP16 graph for it
    ]})
    export = ExportConfig(cache_dir=str(tmp_path / "onnx"))
    catalog = DataCatalog({
        "model_info": MemoryDataset(tiny_model_info(tiny_bert_dir)),
        "params:benchmark": MemoryDataset(benchmark),
        "params:export": MemoryDataset(export),
        "export_artifacts": MemoryDataset(),
    })
    SequentialRunner().run(backend_pipeline("onnx") + backend_pipeline("onnxruntime", plan=False), catalog)
    artifacts = catalog.load("export_artifacts")
    assert set(artifacts) == {"fp32", "fp32_fused"}
    assert all(a["status"] == "ok" for a in artifacts.values())
    folder = tmp_path / "onnx" / f"tiny_bert-{weights_digest(tiny_bert_dir)[:16]}" / "torchscript-opset17-eager"
    assert Path(artifacts["fp32"]["path"]).parent == folder
    assert not (folder / "model.opt.fp16.onnx").exists()
    assert artifacts["fp32_fused"]["fusions"]["SkipLayerNormalization"] == 4
    assert artifacts["fp32_fused"]["fusion_error"] is None
    json.dumps(artifacts)  # plain JSON for the catalog's JSONDataset


def test_artifact_sha256_is_the_file_hash_or_one_over_file_and_weights(tiny_export, tmp_path):
    assert artifact_sha256(Path(tiny_export["path"])) == tiny_export["sha256"] == file_sha256(tiny_export["path"])
    model = tmp_path / "model.onnx"
    model.write_bytes(b"graph")
    alone = artifact_sha256(model)
    (tmp_path / "model.onnx.data").write_bytes(b"weights")
    assert alone == file_sha256(model) != artifact_sha256(model)


def test_cached_artifact_reuses_verified_files_and_rebuilds_a_truncated_one(tmp_path):
    out = tmp_path / "copy.onnx"
    writes = []

    def write(tmp_file: Path) -> dict:
        writes.append(tmp_file)
        tmp_file.write_bytes(b"x" * 1000)
        return {"source": "made here"}

    first = cached_artifact(out, "key-1", write, elapsed_as="convert_s")
    assert first["cached"] is False and first["source"] == "made here" and first["convert_s"] >= 0
    assert first["sha256"] == file_sha256(out) and json.loads(manifest_path(out).read_text())["key"] == "key-1"
    again = cached_artifact(out, "key-1", write, elapsed_as="convert_s")
    assert again["cached"] is True and again["source"] == "made here" and len(writes) == 1

    out.write_bytes(b"x" * 10)  # truncated: must not be trusted
    rebuilt = cached_artifact(out, "key-1", write, elapsed_as="convert_s")
    assert rebuilt["cached"] is False and len(writes) == 2 and out.stat().st_size == 1000
    assert cached_artifact(out, "key-2", write, elapsed_as="convert_s")["cached"] is False  # a new key rebuilds


def test_export_node_records_fail_export_instead_of_raising(tiny_bert_dir, tmp_path):
    benchmark = benchmark_config(onnxruntime={})
    export = ExportConfig(cache_dir=str(tmp_path), opset=14, exporter="torchscript")
    broken = tmp_path / "broken"
    save_tiny_bert(broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    result = export_onnx_node(tiny_model_info(broken), benchmark, export)
    assert result["status"] == "fail_export" and "could not load" in result["reason"]


def test_export_node_skips_when_no_backend_reads_onnx(tiny_bert_dir, tmp_path):
    result = export_onnx_node(tiny_model_info(tiny_bert_dir), benchmark_config(), ExportConfig(cache_dir=str(tmp_path)))
    assert result["status"] == "skipped" and "onnxruntime" in result["reason"]
    assert not any(tmp_path.iterdir())


def test_export_config_rejects_unknown_values():
    with pytest.raises(ValueError, match="exporter"):
        ExportConfig(exporter="jit")
    with pytest.raises(ValueError, match="optimise"):
        ExportConfig(optimise=True)


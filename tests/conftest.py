"""Shared fixtures: real (tiny) models on disk, no hub access."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FAST_TIMING = {"warmup_iters": 5, "warmup_s": 0.05, "min_iters": 5, "min_time_s": 0}
# The noise gate has its own tests (test_noise_gate.py); elsewhere a shared test machine must not
# make the cells under test unstable, so only a spread of 5x or every core busy elsewhere does; one
# thread, since a 2-thread team on a shared 2-core machine waits for its preempted thread at every op.
LOOSE_GATE = {"rounds": {"count": 2, "max_spread": 5.0, "retries": 0}, "noise": {"max_other_cpu": 1.0}, "threads": 1}
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

    from bench_pipeline.model.limits import default_model_dir

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


def copy_project(target: Path, benchmark: dict | None = None) -> Path:
    """The project in ``target``; ``benchmark`` values go to conf/local, which overrides conf/base
    (with the noise gate loosened, ``LOOSE_GATE``, unless ``benchmark`` sets it)."""
    for name in ["conf", "pyproject.toml", ".telemetry", "README.md"]:
        source = PROJECT_ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target / name)
    shutil.copytree(PROJECT_ROOT / "src", target / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.rmtree(target / "conf" / "local", ignore_errors=True)
    (target / "conf" / "local").mkdir()
    if benchmark:
        base = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_benchmark.yml").read_text())["benchmark"]
        # parameters merge softly: a backend left out of ``benchmark["backends"]`` is switched off
        wanted = benchmark.get("backends", base["backends"])
        backends = {name: {"enabled": False} for name in base["backends"] if name not in wanted} | wanted
        local = {"benchmark": base | LOOSE_GATE | benchmark | {"backends": backends}}
        (target / "conf/local/parameters_benchmark.yml").write_text(yaml.safe_dump(local))
    return target


def kedro_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `kedro` subprocess. mlflow.set_tracking_uri in an earlier test sets
    MLFLOW_TRACKING_URI in this process: a run in another project must not inherit it (and log to
    that test's store) unless a test says so in ``extra``."""
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return inherited | {"KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"} | (extra or {})


def kedro(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = kedro_env(env)
    kedro_cli = Path(sys.executable).with_name("kedro")
    return subprocess.run([str(kedro_cli), *args], cwd=project, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def two_eager_ort_runs(tiny_bert_dir, tmp_path_factory) -> Path:
    """A project that ran the benchmark twice (eager and ONNX Runtime CPU only, so it is quick):
    its results table, ONNX files and two MLflow runs to compare."""
    project = copy_project(tmp_path_factory.mktemp("project"), {
        "model": {"source": "local", "name": str(tiny_bert_dir)},
        "grid": {"batch_sizes": [1, 2], "sequence_lengths": [16]},
        "precisions": ["fp32"],
        "timing": FAST_TIMING,
        "threads": 1,
        "backends": {"eager": {}, "onnxruntime": {"variants": [{"name": "cpu", "options": {"provider": "cpu"}}]}},
    })
    for params in ("benchmark.resume=true", "benchmark.resume=false"):  # the second run measures again
        result = kedro(project, "run", "--pipelines=benchmark", "--params", params)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project


@pytest.fixture(scope="module")
def tiny_export(tiny_bert_dir, tmp_path_factory) -> dict:
    """The tiny BERT exported to ONNX (the export and optimizer tests' input)."""
    from bench_pipeline.backends.onnx.export import export_onnx

    return export_onnx(tiny_bert_dir, tmp_path_factory.mktemp("tiny-onnx") / "model.onnx")


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory) -> dict:
    """all-MiniLM-L6-v2 exported to ONNX."""
    from bench_pipeline.backends.onnx.export import export_onnx
    from bench_pipeline.model.limits import default_model_dir

    return export_onnx(default_model_dir(), tmp_path_factory.mktemp("minilm-onnx") / "model.onnx")

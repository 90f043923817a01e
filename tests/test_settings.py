"""Configuration environments merge softly: conf/gpu (or conf/local) holds only what differs from conf/base."""

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from bench_pipeline.backends.dynamo.stage import DynamoStageConfig
from bench_pipeline.backends.onnx.stage import ExportConfig
from bench_pipeline.backends.tensorrt.build import TensorRTBuildSpec
from bench_pipeline.config import BenchmarkConfig, PathsConfig
from bench_pipeline.settings import CONFIG_LOADER_ARGS
from conftest import FAST_TIMING, PROJECT_ROOT, copy_project, kedro


def test_the_gpu_environment_keeps_base_settings_it_does_not_repeat():
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env="gpu", **CONFIG_LOADER_ARGS)
    gpu = loader["parameters"]["benchmark"]
    assert "tolerances" not in (PROJECT_ROOT / "conf/gpu/parameters_benchmark.yml").read_text()
    assert gpu["tolerances"]["fp16"] == {"min_cosine": 0.999, "max_mean_abs": 2.0e-2}  # from conf/base
    assert gpu["model"]["name"] == "bert-base-uncased"  # from conf/gpu


def test_every_setting_is_listed_in_the_base_parameters():
    parameters = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS)["parameters"]
    models = {"benchmark": BenchmarkConfig, "export": ExportConfig, "dynamo_compile": DynamoStageConfig,
              "tensorrt_build": TensorRTBuildSpec, "paths": PathsConfig}
    for name, model in models.items():
        assert set(model.model_fields) == set(parameters[name]), name
        model.model_validate(parameters[name])


def _repeated(delta: dict, base: dict, path: str = "") -> list[str]:
    """Keys of ``delta`` whose value is the one ``base`` already has (a dict compared key by key)."""
    found = []
    for key, value in delta.items():
        where = f"{path}.{key}" if path else key
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            found += _repeated(value, base[key], where)
        elif key in base and base[key] == value:
            found.append(where)
    return found


def test_the_gpu_parameters_hold_only_what_differs_from_base():
    base, gpu = (yaml.safe_load((PROJECT_ROOT / f"conf/{env}/parameters_benchmark.yml").read_text())
                 for env in ("base", "gpu"))
    assert _repeated(gpu, base) == []


@pytest.mark.slow  # a real `kedro run`
def test_the_journal_and_work_folders_come_from_the_paths_parameters(tiny_bert_dir, tmp_path):
    project = copy_project(tmp_path, {
        "model": {"source": "local", "name": str(tiny_bert_dir)},
        "grid": {"batch_sizes": [1], "sequence_lengths": [16]},
        "precisions": ["fp32"],
        "timing": FAST_TIMING,
        "backends": {"eager": {}},
    })
    result = kedro(project, "run", "--pipelines=benchmark", "--params", "paths.journal_dir=elsewhere/journal")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line for line in (project / "elsewhere/journal/eager.jsonl").read_text().splitlines() if line]
    assert not (project / "data/07_model_output/journal").exists()

"""Bad generation input fails at config validation, naming the value and what is allowed."""

import pytest
from pydantic import ValidationError

from bench_pipeline.backends.tensorrt.build import TensorRTBuildSpec
from bench_pipeline.config import BenchmarkConfig, ModelSpec, PathsConfig
from bench_pipeline.generation.model import resolve_generation_model
from bench_pipeline.generation.plan import plan_generation
from bench_pipeline.model.source import default_model_dir
from bench_pipeline.pipelines.model.nodes import resolve_model_node


def generate(**overrides) -> dict:
    config = {"scenario": "generate", "grid": {"batch_sizes": [1], "sequence_lengths": [32]},
              "generate": {"new_tokens": 8}}
    return config | overrides


def test_the_embedded_tiny_decoder_is_the_offline_default():
    config = BenchmarkConfig(**generate())
    assert config.model.source == "default"
    assert list(config.enabled_backends()) == ["eager"]


def test_prompt_plus_new_tokens_above_the_context_names_both_and_the_limit():
    with pytest.raises(ValidationError, match=r"prompt length 1000 \+ generate.new_tokens 32 = 1032 tokens exceed "
                                              r"the model's context of 1024 tokens"):
        BenchmarkConfig(**generate(grid={"batch_sizes": [1], "sequence_lengths": [16, 1000]},
                                   generate={"new_tokens": 32}))


def test_gpt2_preset_context_is_read_from_n_positions():
    with pytest.raises(ValidationError, match="context of 1024 tokens"):
        BenchmarkConfig(**generate(model={"source": "preset", "name": "gpt2"},
                                   grid={"batch_sizes": [1], "sequence_lengths": [1024]}))


def test_zero_new_tokens_is_refused():
    with pytest.raises(ValidationError, match="generate.new_tokens is 0"):
        BenchmarkConfig(**generate(generate={"new_tokens": 0}))


def test_an_encoder_directory_in_the_generation_scenario_is_refused():
    with pytest.raises(ValidationError, match=r"model_type 'bert', architectures \['BertModel'\]\) is not a "
                                              r"decoder-only causal LM"):
        BenchmarkConfig(**generate(model={"source": "local", "name": str(default_model_dir())}))


def test_an_encoder_preset_in_the_generation_scenario_is_refused():
    with pytest.raises(ValidationError, match="'bert-base-uncased' is an encoder preset.*'gpt2', 'llama-250m'"):
        BenchmarkConfig(**generate(model={"source": "preset", "name": "bert-base-uncased"}))


def test_an_unknown_generation_option_names_the_allowed_ones():
    backends = {"eager": {"variants": [{"name": "x", "options": {"cache": "paged"}}]}}
    with pytest.raises(ValidationError, match=r"generate.backends.eager.variants\[x\].options: cache='paged' is not "
                                              r"allowed; allowed: \['dynamic', 'static'\]"):
        BenchmarkConfig(**generate(generate={"backends": backends}))


@pytest.mark.parametrize("env", ["generate", "gpu_generate"])
def test_generation_envs_hold_only_deltas_and_validate(env):
    import yaml
    from kedro.config import OmegaConfigLoader

    from bench_pipeline.settings import CONFIG_LOADER_ARGS
    from conftest import PROJECT_ROOT
    from test_settings import _repeated

    base, delta = (yaml.safe_load((PROJECT_ROOT / f"conf/{e}/parameters_benchmark.yml").read_text())
                   for e in ("base", env))
    assert _repeated(delta, base) == []
    merged = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **(CONFIG_LOADER_ARGS | {"default_run_env": env}))
    params = merged["parameters"]["benchmark"] | {"device": "cpu"}  # this machine has no GPU
    config = BenchmarkConfig(**params)
    assert config.scenario == "generate" and set(config.enabled_backends()) == {"eager", "dynamo", "onnxruntime",
                                                                                 "tensorrt"}


def test_a_precision_without_a_generation_path_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValidationError, match=r"precision\(s\) \['int8', 'fp8'\] have no path in the generation "
                                              r"scenario; allowed there: \['fp32', 'fp16', 'bf16'\]"):
        BenchmarkConfig(**generate(precisions=["fp32", "int8", "fp8"]))


def test_a_decoder_preset_in_the_forward_scenario_is_refused_naming_the_forward_presets():
    with pytest.raises(ValidationError, match=r"model preset 'tiny-llama' is a decoder for the generation scenario"):
        BenchmarkConfig(grid={"batch_sizes": [1], "sequence_lengths": [32]},
                        model={"source": "preset", "name": "tiny-llama"})


def test_the_forward_pipeline_refuses_a_generation_config_before_building_anything(tmp_path):
    paths = PathsConfig(models_dir=tmp_path / "m", journal_dir=tmp_path / "j", work_dir=tmp_path / "w",
                        fanout_dir=tmp_path / "f")
    with pytest.raises(ValueError, match=r"benchmark.scenario is 'generate': run `kedro run --pipelines=generate`"):
        resolve_model_node(BenchmarkConfig(**generate()), paths)
    assert not (tmp_path / "m").exists()


def test_a_generation_of_other_length_is_another_journal_cell(tmp_path):
    """Resume must not serve a row of 8 new tokens to a run of 16: the journal key holds new_tokens."""
    paths = PathsConfig(models_dir=tmp_path / "m", journal_dir=tmp_path / "j", work_dir=tmp_path / "w",
                        fanout_dir=tmp_path / "f")
    info = resolve_generation_model(ModelSpec(source="default"), paths.models_dir, seed=0)
    tensorrt = TensorRTBuildSpec(engine_dir=str(tmp_path / "e"), timing_cache_dir=str(tmp_path / "t"))

    def keys(new_tokens: int) -> set[str]:
        config = BenchmarkConfig(**generate(generate={"new_tokens": new_tokens}))
        return {k for u in plan_generation(info, {}, {}, config, paths, tensorrt) for k in u.keys.values()}

    assert keys(8) == keys(8) and not keys(8) & keys(16)

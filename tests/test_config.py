"""Every bad input a user can type fails early with the value and what is allowed."""

import ast
import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from bench_pipeline.config import BenchmarkConfig

GRID = {"batch_sizes": [1], "sequence_lengths": [16]}


def error_of(**fields) -> str:
    with pytest.raises(ValidationError) as caught:
        BenchmarkConfig(**({"grid": GRID} | fields))
    return str(caught.value)


def test_defaults_are_valid_and_lists_are_sorted_and_deduplicated():
    config = BenchmarkConfig(grid={"batch_sizes": [8, 1, 8], "sequence_lengths": [128, 32]})
    assert config.grid.batch_sizes == [1, 8]
    assert config.grid.sequence_lengths == [32, 128]
    assert list(config.enabled_backends()) == ["eager"]


def test_unknown_backend_lists_the_allowed_ones():
    message = error_of(backends={"tensorflow": {}})
    assert "unknown backend(s) ['tensorflow']" in message
    assert "'eager'" in message and "'onnxruntime'" in message and "'tensorrt'" in message


def test_unknown_precision_lists_the_allowed_ones():
    message = error_of(precisions=["fp32", "int4"])
    assert "unknown precision(s) ['int4']" in message and "['fp32', 'tf32', 'fp16', 'bf16', 'int8', 'fp8']" in message


def test_unknown_precision_in_a_variant_names_where():
    message = error_of(backends={"eager": {"variants": [{"name": "x", "precisions": ["fp4"]}]}})
    assert "backends.eager.variants.0.precisions" in message and "unknown precision(s) ['fp4']" in message


def test_a_precision_listed_twice_in_a_variant_runs_once():
    config = BenchmarkConfig(grid=GRID, backends={"eager": {"variants": [{"precisions": ["fp32", "fp32"]}]}})
    assert config.backends["eager"].variants[0].precisions == ["fp32"]


def test_a_variant_name_that_cannot_be_a_file_or_metric_name_is_refused():
    message = error_of(backends={"eager": {"variants": [{"name": "cuda/graph"}]}})
    assert "variants.0.name" in message and "[A-Za-z0-9_.-]" in message


def test_setting_one_tolerance_keeps_the_other_defaults():
    config = BenchmarkConfig(grid=GRID, tolerances={"fp16": {"min_cosine": 0.99, "max_mean_abs": 0.1}})
    assert config.tolerances["fp16"].min_cosine == 0.99
    assert config.tolerances["fp32"].min_cosine == 0.99999 and "bf16" in config.tolerances
    assert "tolerances for unknown precision(s) ['int4']" in error_of(
        tolerances={"int4": {"min_cosine": 0.9, "max_mean_abs": 1}})


@pytest.mark.parametrize("grid", [
    {"batch_sizes": [], "sequence_lengths": [16]},
    {"batch_sizes": [1], "sequence_lengths": []},
    {"batch_sizes": [0], "sequence_lengths": [16]},
    {"batch_sizes": [1], "sequence_lengths": [-8]},
])
def test_empty_or_non_positive_grid_values_are_rejected(grid):
    message = error_of(grid=grid)
    assert "grid" in message
    assert "at least 1 item" in message or "greater than 0" in message


def test_sequence_longer_than_the_model_accepts_names_the_limit():
    message = error_of(grid={"batch_sizes": [1], "sequence_lengths": [128, 1024]})
    assert "sequence length(s) [1024]" in message and "max_position_embeddings (512)" in message


def test_roberta_preset_limit_accounts_for_its_position_offset():
    message = error_of(model={"source": "preset", "name": "roberta-base"},
                       grid={"batch_sizes": [1], "sequence_lengths": [513]})
    assert "limit of 512 tokens" in message


def test_xlm_roberta_limit_names_the_514_of_its_config_and_the_position_offset(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "xlm-roberta", "max_position_embeddings": 514}))
    message = error_of(model={"source": "local", "name": str(tmp_path)},
                       grid={"batch_sizes": [1], "sequence_lengths": [128, 513]})
    assert "sequence length(s) [513] exceed the model's limit of 512 tokens" in message
    assert "config.json says max_position_embeddings 514" in message and "position offset" in message


def test_model_directory_that_does_not_exist(tmp_path):
    message = error_of(model={"source": "local", "name": str(tmp_path / "nope")})
    assert "no such directory" in message and "nope" in message


def test_model_directory_without_config(tmp_path):
    message = error_of(model={"source": "local", "name": str(tmp_path)})
    assert "has no config.json" in message


def test_unknown_preset_lists_the_presets():
    message = error_of(model={"source": "preset", "name": "gpt-7"})
    assert "unknown model preset 'gpt-7'" in message and "bert-base-uncased" in message


def test_hub_source_needs_a_name():
    assert "model.name is required" in error_of(model={"source": "hub"})


def test_unknown_device():
    assert "unknown device 'tpu'" in error_of(device="tpu")


def test_variant_listed_twice():
    message = error_of(backends={"eager": {"variants": [{"name": "a"}, {"name": "a"}]}})
    assert "variant names listed twice: ['a']" in message


def test_unknown_option_key_is_rejected_not_ignored():
    message = error_of(precission=["fp32"])
    assert "unknown key(s) ['precission'] (did you mean 'precisions'?)" in message and "'timing'" in message


def test_timing_ceiling_below_floor():
    assert "max_time_s" in error_of(timing={"min_time_s": 5, "max_time_s": 1})


def test_unknown_dynamo_backend_lists_the_registered_ones():
    message = error_of(backends={"dynamo": {"variants": [{"name": "x", "options": {"backend": "nvfuser"}}]}})
    assert "backends.dynamo.variants[x].options" in message and "'nvfuser'" in message and "inductor" in message


def test_conflicting_onnxruntime_options_are_rejected():
    variant = {"name": "g", "options": {"provider": "cpu", "cuda_graph": True}}
    message = error_of(backends={"onnxruntime": {"variants": [variant]}})
    assert "cuda_graph needs provider 'cuda' or 'tensorrt'" in message


def test_unknown_onnxruntime_provider():
    message = error_of(backends={"onnxruntime": {"variants": [{"options": {"provider": "rocm"}}]}})
    assert "unknown onnxruntime provider 'rocm'" in message and "'cuda'" in message


def test_unknown_tensorrt_option():
    message = error_of(backends={"tensorrt": {"variants": [{"options": {"int8": True}}]}})
    assert "unknown tensorrt option(s) ['int8']" in message


def test_a_backend_listed_twice_in_yaml_is_refused_naming_the_file(tmp_path):
    from bench_pipeline.settings import CONFIG_LOADER_CLASS

    (tmp_path / "base").mkdir()
    (tmp_path / "local").mkdir()
    (tmp_path / "base" / "parameters.yml").write_text(
        "benchmark:\n  backends:\n    eager: {}\n    eager: {enabled: false}\n")
    with pytest.raises(Exception, match="duplicate key eager") as caught:
        CONFIG_LOADER_CLASS(str(tmp_path), base_env="base", default_run_env="local")["parameters"]
    assert f'"{tmp_path / "base" / "parameters.yml"}", line 4' in str(caught.value)


def test_an_unknown_key_in_a_section_lists_the_allowed_keys():
    message = error_of(grid={"batch_size": [4], "sequence_lengths": [16]})
    assert "grid" in message and "unknown key(s) ['batch_size'] (did you mean 'batch_sizes'?)" in message
    assert "allowed: ['batch_sizes', 'sequence_lengths']" in message


def test_lists_from_the_command_line_are_space_separated_and_one_value_is_a_list_of_one():
    config = BenchmarkConfig(grid={"batch_sizes": "8 1 32", "sequence_lengths": 128}, precisions="fp32 bf16")
    assert config.grid.batch_sizes == [1, 8, 32] and config.grid.sequence_lengths == [128]
    assert config.precisions == ["fp32", "bf16"]


def test_a_grid_too_large_for_the_gpu_is_a_warning_naming_the_cell():
    from bench_pipeline.pipelines.model.nodes import warn_if_grid_may_not_fit

    bert_base = {"num_parameters": 109_482_240, "hidden_size": 768, "num_attention_heads": 12,
                 "intermediate_size": 3072}
    config = BenchmarkConfig(grid={"batch_sizes": [1, 256], "sequence_lengths": [128, 512]})
    assert warn_if_grid_may_not_fit(bert_base, config, free_bytes=80 * 2**30) is None
    message = warn_if_grid_may_not_fit(bert_base, config, free_bytes=2 * 2**30)
    assert "batch 256, seq 512" in message and "2.0 GiB free" in message


def test_a_cuda_device_on_a_machine_without_one_is_refused_early():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    message = error_of(device="cuda")
    assert "device 'cuda': this machine has 0 visible CUDA device(s)" in message and "'auto'" in message


TORCH_FREE_CHECK = """
import sys
from bench_pipeline.config import BenchmarkConfig
BenchmarkConfig(
    model={"source": "preset", "name": "roberta-base"},
    grid={"batch_sizes": [1], "sequence_lengths": [16, 128]},
    precisions=["fp32", "fp16"],
    backends={
        "eager": {"variants": [{"name": "sdpa", "options": {"attn_implementation": "sdpa"}}]},
        "onnxruntime": {"variants": [{"name": "cuda-graph", "options": {"provider": "cuda", "fused": True,
                                                                        "cuda_graph": True}}]},
        "tensorrt": {"variants": [{"name": "cuda-graph", "options": {"cuda_graph": True}}]},
    },
)
BenchmarkConfig(grid={"batch_sizes": [1], "sequence_lengths": [16]})  # the default model
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnxruntime", "tensorrt", "transformers")))
print(sorted(m for m in sys.modules if m.startswith("bench_pipeline.")))
"""


def test_config_validates_without_torch_a_backend_library_or_a_backend_runtime():
    """Validation runs before any node, in every `kedro run` and in tools that only read a config: it must
    not pay for (or need) torch. Only dynamo's options, which are torch.compile's, and a CUDA device ask torch."""
    out = subprocess.run([sys.executable, "-c", TORCH_FREE_CHECK], capture_output=True, text=True, check=True).stdout
    libraries, project = (ast.literal_eval(line) for line in out.splitlines())
    assert libraries == []
    runtime_modules = [m for m in project if m.startswith(("bench_pipeline.model.source", "bench_pipeline.harness.",
                                                           "bench_pipeline.system.", "bench_pipeline.pipelines"))
                       or m.endswith((".runtime", ".stage", ".build", ".compile", ".export", ".base"))]
    assert runtime_modules == []
    assert "bench_pipeline.model.limits" in project  # the torch-free model facts it validates with

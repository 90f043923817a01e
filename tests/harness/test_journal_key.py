"""The journal key: a cell is reused only where everything its row depends on is the same, the rules that
turn rounds into a row included (a row made by older rules is measured again, never served as current)."""

from bench_pipeline.config import BenchmarkConfig
from bench_pipeline.harness import journal

MODEL = {"path": "/m", "name": "tiny", "weights_sha256": "ab"}
ENV = {"lib.torch": "2.13.0", "cpu.model": "x", "gpu.temperature_c": 40}


def key(config: BenchmarkConfig, environment: dict = ENV) -> str:
    return journal.cell_key(journal.key_context(MODEL, environment, config), "eager", "default", {}, "fp32", 1, 16)


def test_the_key_changes_with_the_measurement_rules_and_settings_not_with_drifting_facts(monkeypatch):
    config = BenchmarkConfig(grid={"batch_sizes": [1], "sequence_lengths": [16]})
    current = key(config)
    assert key(config, ENV | {"gpu.temperature_c": 71}) == current  # clocks and heat drift: same cell
    assert key(config, ENV | {"lib.torch": "2.14.0"}) != current
    assert key(config.model_copy(update={"seed": 1})) != current
    monkeypatch.setattr(journal, "MEASUREMENT_RULES", journal.MEASUREMENT_RULES - 1)
    assert key(config) != current  # a row made under the old rules is not this run's row

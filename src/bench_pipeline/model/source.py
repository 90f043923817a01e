"""Find a model and make realistic inputs for it.

Every later stage loads the model from one local directory (``model_info["path"]``), so
export, engine build and the backends all see exactly the same weights and tokenizer,
whatever the source was: the packaged default, a hub id, a local directory, or a preset
architecture with random weights.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench_pipeline.model.limits import PRESETS, default_model_dir, sequence_limit
from bench_pipeline.system.files import file_sha256

if TYPE_CHECKING:
    from bench_pipeline.config import ModelSpec

#: the dtype weights load in: TF32 and INT8 start from FP32 weights (TF32 changes the matmuls, INT8 quantizes
#: them after loading); FP8 from BF16, the dtype torchao's float8 matmuls take and return
DTYPES = {
    "fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
    "int8": torch.float32, "fp8": torch.bfloat16,
}
#: the least compute capability with tensor cores for the precision (TF32: Ampere; FP8: Ada / Hopper)
MIN_CAPABILITY = {"tf32": (8, 0), "fp8": (8, 9)}
_CAPABILITY_NAMES = {"tf32": "TF32", "fp8": "FP8"}

# Files a Hugging Face model directory needs for a model and its tokenizer; weights from
# safetensors only where a checkpoint offers them (no pickle from the hub).
_HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]
# The uncased WordPiece tokenizer of bert-base-uncased (as shipped with all-MiniLM-L6-v2), kept in
# the package so presets need neither the hub nor the embedded model package.
PRESET_TOKENIZER = Path(__file__).parents[1] / "resources" / "tokenizer"


def weights_digest(path: Path) -> str:
    """One hash over the config and weight files: a model changed in place is a different model."""
    files = sorted(p for p in path.iterdir() if p.name == "config.json" or p.suffix in (".safetensors", ".bin"))
    return hashlib.sha256("".join(f"{p.name}:{file_sha256(p)}" for p in files).encode()).hexdigest()


def resolve_model(spec: ModelSpec, models_dir: Path, seed: int) -> dict[str, Any]:
    """Return ``model_info``: a local model directory with tokenizer, plus the facts reports need."""
    if spec.source == "default":
        path, name = default_model_dir(), "sentence-transformers/all-MiniLM-L6-v2"
    elif spec.source == "local":
        path, name = Path(spec.name).resolve(), Path(spec.name).name
    elif spec.source == "hub":
        path, name = hub_snapshot(spec.name, spec.revision), spec.name
    else:
        path, name = _materialize_preset(spec.name, models_dir, seed), f"{spec.name} (random weights)"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model directory {path} has no config.json")

    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    model = load_model(path, "fp32", torch.device("cpu"), trust_remote_code=spec.trust_remote_code)
    return {
        "path": str(path),
        "name": name,
        "source": spec.source,
        "model_type": config.model_type,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "max_position_embeddings": sequence_limit(config.to_dict()),
        "hidden_size": _first_attr(config, "hidden_size", "dim"),
        "num_attention_heads": _first_attr(config, "num_attention_heads", "n_heads"),
        "num_hidden_layers": _first_attr(config, "num_hidden_layers", "n_layers"),
        "intermediate_size": _first_attr(config, "intermediate_size", "hidden_dim"),
        "has_pooler": getattr(model, "pooler", None) is not None and _checkpoint_has_pooler(path),
        "weights_sha256": weights_digest(path),
        "trust_remote_code": spec.trust_remote_code,
    }


def _first_attr(config: Any, *names: str) -> Any:
    return next((getattr(config, n) for n in names if getattr(config, n, None) is not None), None)


def _checkpoint_has_pooler(path: Path) -> bool:
    """A pooler whose weights are not in the checkpoint is random at load: nothing to compare."""
    from safetensors import safe_open

    for weights in path.glob("*.safetensors"):
        with safe_open(weights, "pt") as f:
            if any("pooler" in key for key in f.keys()):
                return True
    return False


def hub_snapshot(repo_id: str, revision: str | None) -> Path:
    """Download (or find in the normal hub cache) a model repository's config, tokenizer and weights."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=_HUB_PATTERNS))
    except Exception as error:  # offline, unknown repo, gated: the hub's own message says which
        raise FileNotFoundError(
            f"hub model {repo_id!r} (revision {revision or 'main'}) could not be fetched or found in the "
            f"hub cache: {type(error).__name__}: {error}"
        ) from error


def _materialize_preset(preset: str, models_dir: Path, seed: int) -> Path:
    """Save a preset architecture with seeded random weights (once; reused while the config is unchanged)."""
    from transformers import AutoConfig, AutoModel

    config_text = PRESETS[preset].read_text()
    key = hashlib.sha256(f"{config_text}|seed={seed}".encode()).hexdigest()[:16]
    target = models_dir / f"{preset}-{key}"
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    config_dict = json.loads(config_text)
    config = AutoConfig.for_model(**config_dict)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    # Random weights need no matching vocabulary: the uncased WordPiece tokenizer gives real
    # token ids, all below every preset's vocab size.
    for tokenizer_file in PRESET_TOKENIZER.iterdir():
        shutil.copy(tokenizer_file, tmp / tokenizer_file.name)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def load_model(
    model_dir: Path | str,
    precision: str,
    device: torch.device,
    *,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> torch.nn.Module:
    """The model in eval mode, in ``precision``, on ``device``.

    Seeded so weights missing from a checkpoint (e.g. an untrained pooler) are the same in
    every stage that loads the model.
    """
    from transformers import AutoModel

    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"dtype": DTYPES[precision], "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModel.from_pretrained(model_dir, **kwargs)
    return model.eval().to(device)


@lru_cache(maxsize=4)
def load_tokenizer(model_dir: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@lru_cache(maxsize=1)
def _sample_sentences() -> tuple[str, ...]:
    text = resources.files("bench_pipeline").joinpath("resources/sample_text.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def make_inputs(model_dir: str | Path, batch: int, seq: int, seed: int) -> dict[str, torch.Tensor]:
    """Real token ids for one (batch, seq) cell: sentences of the shipped sample text, each row
    starting at a seeded random sentence, truncated (or padded) to exactly ``seq`` tokens."""
    tokenizer = load_tokenizer(str(model_dir))
    sentences = _sample_sentences()
    rng = random.Random(f"{seed}-{batch}-{seq}")
    rows = []
    for _ in range(batch):
        start = rng.randrange(len(sentences))
        # At least `seq` words: every word is one token or more, so truncation fills the row.
        words, row = 0, []
        while words < seq:
            sentence = sentences[(start + len(row)) % len(sentences)]
            row.append(sentence)
            words += len(sentence.split())
        rows.append(" ".join(row))
    encoded = tokenizer(rows, padding="max_length", truncation=True, max_length=seq, return_tensors="pt")
    return {name: tensor.to(torch.int64) for name, tensor in encoded.items()}


def precision_unsupported(device: torch.device, precision: str) -> str | None:
    """Why ``precision`` cannot run on ``device``, or None when it can (as far as the hardware goes: whether
    a backend has a path for it, e.g. INT8, is the backend's own answer)."""
    if precision in ("fp32", "int8"):
        return None
    if precision in MIN_CAPABILITY:
        return _capability_unsupported(device, precision)
    if device.type == "cpu":
        if precision == "fp16":
            return "FP16 is not a supported inference precision on CPU in this benchmark (no native FP16 matmul)"
        capability = torch.backends.cpu.get_cpu_capability()
        if not _cpu_has_native_bf16():
            return f"this CPU ({capability}) has no native BF16 (AVX512-BF16 or AMX): torch would emulate it"
        return None
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(device)} does not support BF16"
    return None


def _capability_unsupported(device: torch.device, precision: str) -> str | None:
    needed = MIN_CAPABILITY[precision]
    wanted = f"{_CAPABILITY_NAMES[precision]} needs an NVIDIA GPU of compute capability >= {needed[0]}.{needed[1]}"
    if device.type != "cuda":
        return f"{wanted}; this run's device is {device.type}"
    capability = torch.cuda.get_device_capability(device)
    if capability < needed:
        name = torch.cuda.get_device_name(device)
        return f"{wanted}; {name} has {capability[0]}.{capability[1]}"
    return None


@lru_cache(maxsize=1)
def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags

"""What a torch precision does beyond the dtype the weights load in (``model.source.DTYPES``).

``tf32``: FP32 weights, TF32 tensor-core matmuls. The switch is process-wide in torch, so it is thrown only
in the worker of the unit that runs TF32 (``harness/isolation.py`` starts one per unit, and every worker starts
strict: ``system.device.configure_torch``); in the dynamo stage, which compiles in the main process, only
inside ``matmul_precision`` and put back after it. ``config.py`` refuses tf32 with ``isolation: none``.

``int8`` (eager, CPU): torch's dynamic quantization of every ``nn.Linear`` (INT8 weights, activations quantized
per call). ``torch.ao.quantization.quantize_dynamic`` is deprecated in favour of torchao (pytorch/ao#2259) but is
what runs on a CPU build of torch here; torchao's INT8 path targets CUDA and inductor.

``fp8`` (dynamo, compute capability >= 8.9): torchao's float8 dynamic activation + weight quantization (rowwise
scales) on the BF16 model, compiled by inductor, which fuses the scaling into the matmuls.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from bench_pipeline.backends.base import CellFailure
from bench_pipeline.harness.status import Status

INT8_CUDA = (
    "torch's dynamic INT8 quantization runs on CPU only; INT8 on a GPU runs on onnxruntime "
    "(CUDA EP or TensorRT EP on the static QDQ graph)"
)


def use_matmul_precision(precision: str) -> None:
    """TF32 matmuls for ``tf32``, strict FP32 for every other precision, in this process."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """``use_matmul_precision`` for a block, then strict FP32 again (the dynamo stage compiles in the main
    process, whose reference and FP32 work must stay strict)."""
    use_matmul_precision(precision)
    try:
        yield
    finally:
        use_matmul_precision("fp32")


def quantize(module: torch.nn.Module, precision: str, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The module quantized for ``precision`` and the facts of it (``quantize_s``, the method); unchanged, with
    no facts, for a precision that quantizes nothing."""
    if precision not in ("int8", "fp8"):
        return module, {}
    started = time.perf_counter()
    if precision == "int8":
        module, method = _int8_dynamic(module, device)
    else:
        module, method = _float8(module)
    return module, {"quantize_s": time.perf_counter() - started, "quantization": method}


def _int8_dynamic(module: torch.nn.Module, device: torch.device) -> tuple[torch.nn.Module, str]:
    if device.type != "cpu":
        raise CellFailure(Status.UNSUPPORTED, INT8_CUDA)
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    linears = quantized_linears(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice, once per worker; the docstring says it
        quantized = quantize_dynamic(module, dict.fromkeys(linears, per_channel_dynamic_qconfig), dtype=torch.qint8)
    engine = torch.backends.quantized.engine
    return quantized, (f"torch.ao dynamic quantization, {len(linears)} nn.Linear -> per-channel qint8 weights "
                       f"(FFN output projections FP32), {engine} kernels")


def quantized_linears(module: torch.nn.Module) -> list[str]:
    """The ``nn.Linear`` modules INT8 quantizes: all but the FFN's output projection (``layer.N.output.dense``),
    whose input, after GELU, has a tail one activation scale per call cannot cover. Measured on
    all-MiniLM-L6-v2 at 8x128 (cosine of the last hidden state to FP32): 0.952 with it quantized, 0.977 without;
    per-tensor weight scales instead of per-channel: 0.93. ONNX Runtime's static recipe keeps the same FP32."""
    return [
        name for name, child in module.named_modules()
        if isinstance(child, torch.nn.Linear) and not (name.endswith(".output.dense") and ".attention." not in name)
    ]


def _float8(module: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    try:
        import torchao
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
    except ImportError as error:
        raise CellFailure(Status.SKIPPED, f"FP8 needs torchao (pip install --no-deps torchao): {error}") from error
    # set_inductor_config off: torchao's recommended settings (coordinate descent tuning, matmul precision "high")
    # are global and would change every later compile in the process, FP16 and FP32 ones included; FP8 compiles
    # with inductor's defaults like every other dynamo variant
    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), set_inductor_config=False)
    quantize_(module, config)
    return module, f"torchao {torchao.__version__} float8 e4m3 dynamic activation + weight, rowwise scales"

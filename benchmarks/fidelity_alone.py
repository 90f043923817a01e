"""Measure ONE cell alone, in this fresh process, with a deliberately plain loop.

    python benchmarks/fidelity_alone.py '<cell as JSON>'   (benchmarks/fidelity.py writes the JSON)

Nothing of the project's harness (timing.py, sweep.py, backends/) is used: only how the run
loaded the model and built its inputs (``bench_pipeline.model.source``) and its FP32-means-FP32 torch
settings, so a number that differs from the sweep's points at the harness or at what ran beside
the cell, not at a different model or input. The loop: ``warmup`` calls, then ``repeats`` times
``calls`` timed calls (CUDA events on the stream that does the work on GPU, ``perf_counter_ns``
on CPU); the result is the median of the repeats' medians and their spread. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench_pipeline.backends.eager.precision import quantize, use_matmul_precision
from bench_pipeline.model.source import load_model, make_inputs
from bench_pipeline.system.device import configure_torch


def main(cell: dict[str, Any]) -> dict[str, Any]:
    configure_torch(cell["threads"])
    device = torch.device(cell["device"])
    inputs = make_inputs(cell["model_dir"], cell["batch"], cell["seq"], cell["seed"])
    if cell["backend"] == "onnxruntime":
        call, stream = onnxruntime_call(cell, inputs, device)
    else:
        call, stream = torch_call(cell, {k: v.to(device) for k, v in inputs.items()}, device)
    medians = [float(np.median(times)) for times in timed_repeats(call, cell, device, stream)]
    p50 = float(np.median(medians))
    return {"alone_p50_ms": p50, "alone_spread": (max(medians) - min(medians)) / p50, "repeat_p50_ms": medians}


def torch_call(cell: dict[str, Any], inputs: dict[str, torch.Tensor], device: torch.device):
    """Eager: the model as the run loaded it; dynamo: that model through torch.compile with the
    variant's own arguments (the first warm-up calls compile)."""
    options = cell["options"]
    use_matmul_precision(cell["precision"])  # TF32 for tf32 cells, strict FP32 otherwise, as the unit's worker
    model = load_model(cell["model_dir"], cell["precision"], device,
                       attn_implementation=options.get("attn_implementation"))
    model, _ = quantize(model, cell["precision"], device)  # INT8 / FP8 as the unit quantized it
    if cell["backend"] == "dynamo":
        model = torch.compile(model, backend=options.get("backend", "inductor"), mode=options.get("mode"),
                              dynamic=options.get("dynamic", False), fullgraph=options.get("fullgraph", False),
                              options=options.get("options") or None)

    def call() -> None:
        with torch.inference_mode():
            model(**inputs)

    return call, None


def onnxruntime_call(cell: dict[str, Any], inputs: dict[str, torch.Tensor], device: torch.device):
    """``InferenceSession`` on the run's ONNX file. CPU: plain ``session.run``. GPU: inputs and outputs
    bound once on the device (as the sweep times it: no host copies) and ORT computing on a torch
    stream, so CUDA events on that stream time the work; CUDA graphs where the variant had them."""
    import onnxruntime as ort

    options = cell["options"]
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = cell["threads"]
    session_options.inter_op_num_threads = 1
    session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    on_gpu = options.get("provider", "cpu") == "cuda"
    stream = torch.cuda.Stream(device=device) if on_gpu else None
    providers = ["CPUExecutionProvider"]
    if on_gpu:
        cuda = {"device_id": str(device.index or 0), "has_user_compute_stream": "1",
                "user_compute_stream": str(stream.cuda_stream), "use_tf32": str(int(cell["precision"] == "tf32")),
                "enable_cuda_graph": str(int(bool(options.get("cuda_graph"))))}
        providers = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
    session = ort.InferenceSession(cell["onnx_path"], session_options, providers=providers)
    feeds = {meta.name: inputs[meta.name].numpy() for meta in session.get_inputs()}
    outputs = session.run(None, feeds)  # also gives the output shapes to bind
    if not on_gpu or options.get("io_binding") is False:
        return (lambda: session.run(None, feeds)), stream
    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", device.index or 0))
    for meta, array in zip(session.get_outputs(), outputs):
        binding.bind_ortvalue_output(meta.name, ort.OrtValue.ortvalue_from_numpy(np.zeros_like(array), "cuda",
                                                                                 device.index or 0))
    # as the sweep runs it: outputs stay in the bound buffers, so ORT does not synchronize the stream
    # after each run. A synchronizing run puts the host's return trip inside the CUDA events: the
    # likely reason why the H200's CUDA-graph FP16 1x128 cell read 0.53 ms alone, three times, against
    # the sweep's 0.459 [0.458-0.468] ms (to be confirmed on the device)
    run_options = ort.RunOptions()
    run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
    return (lambda: session.run_with_iobinding(binding, run_options)), stream


def timed_repeats(call: Callable[[], None], cell: dict[str, Any], device: torch.device, stream) -> list[list[float]]:
    for _ in range(cell["warmup"]):
        call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return [[time_one(call, device, stream) for _ in range(cell["calls"])] for _ in range(cell["repeats"])]


def time_one(call: Callable[[], None], device: torch.device, stream) -> float:
    """One call in ms: CUDA events on the working stream on GPU, the host clock on CPU."""
    if device.type != "cuda":
        start = time.perf_counter_ns()
        call()
        return (time.perf_counter_ns() - start) / 1e6
    stream = stream or torch.cuda.current_stream(device)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record(stream)
    call()
    end.record(stream)
    end.synchronize()
    return begin.elapsed_time(end)


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))

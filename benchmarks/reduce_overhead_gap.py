"""Why was the sweep's ``dynamo reduce-overhead`` slower than a plain ``torch.compile`` loop? (issue 10)

    python3 benchmarks/reduce_overhead_gap.py [--out DIR]   (GPU machine, after the `--env gpu` sweep: its model)

One process, BERT-base FP16, ``mode="reduce-overhead"`` (CUDA graphs). Each configuration starts
from ``torch._dynamo.reset()``, compiles what it names, then times the cells 1x128, 8x128 and
8x512 with CUDA events, the configurations interleaved over several repeats so host drift hits
all alike:

- ``plain/one``    ``torch.compile(model, mode=...)`` compiled for the timed shape only (the plain loop)
- ``project/one``  the project's ``compile_module`` (recompile limit, isolated recompiles), that shape only
- ``project/grid`` the project's ``compile_module`` with every shape of the GPU grid compiled first,
                   as the sweep's worker holds it (guards over six cache entries, six CUDA graphs)
- ``plain/grid``   the plain compile with every shape compiled first

It prints and writes (``--out``) the p50 per configuration and cell with the ratio to ``plain/one``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from bench_pipeline.backends.dynamo.compile import CompileSpec, compile_module
from bench_pipeline.backends.eager.runtime import TorchRunner
from bench_pipeline.model.source import load_model, make_inputs

GRID = [(b, s) for b in (1, 8, 32) for s in (128, 512)]
TIMED = [(1, 128), (8, 128), (8, 512)]
CONFIGS = ["plain/one", "project/one", "project/grid", "plain/grid"]


def compiled(model: torch.nn.Module, config: str, cells: int):
    torch._dynamo.reset()
    if config.startswith("plain"):
        return torch.compile(model, mode="reduce-overhead")
    return compile_module(model, CompileSpec.from_options({"backend": "inductor", "mode": "reduce-overhead"}), cells)


def time_cell(module, inputs: dict[str, torch.Tensor], calls: int = 200) -> float:
    runner = TorchRunner(module, inputs)
    for _ in range(50):
        runner.run()
    torch.cuda.synchronize()
    times = []
    for _ in range(calls):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        runner.run()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cuda")
    model_dir = json.loads(Path("data/06_models/model_info.json").read_text())["path"]  # the sweep's model
    model = load_model(model_dir, "fp16", device)
    inputs = {cell: {k: v.to(device) for k, v in make_inputs(model_dir, *cell, 0).items()} for cell in GRID}
    p50: dict[str, dict[str, list[float]]] = {c: {f"{b}x{s}": [] for b, s in TIMED} for c in CONFIGS}
    for repeat in range(args.repeats):
        for config in CONFIGS[repeat % 2:] + CONFIGS[:repeat % 2]:
            for cell in TIMED:
                module = compiled(model, config, len(GRID))
                for other in (GRID if config.endswith("grid") else [cell]):
                    TorchRunner(module, inputs[other]).run()
                p50[config][f"{cell[0]}x{cell[1]}"].append(time_cell(module, inputs[cell]))
                print(config, cell, round(p50[config][f"{cell[0]}x{cell[1]}"][-1], 4), flush=True)
    rows = ["| configuration | " + " | ".join(p50[CONFIGS[0]]) + " |", "|---" * (len(TIMED) + 1) + "|"]
    for config in CONFIGS:
        cells = []
        for name, values in p50[config].items():
            base = statistics.median(p50["plain/one"][name])
            med = statistics.median(values)
            cells.append(f"{med:.3f} ms ({med / base:.2f}x; {min(values):.3f}-{max(values):.3f})")
        rows.append(f"| {config} | " + " | ".join(cells) + " |")
    table = "\n".join(rows)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "reduce_overhead_gap.md").write_text(
            f"# reduce-overhead: plain loop vs the project's compile, BERT-base FP16, "
            f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n\n"
            "p50 of 200 calls (CUDA events) per repeat; median over repeats, ratio to plain/one, range.\n\n"
            + table + "\n")
        (args.out / "reduce_overhead_gap.json").write_text(json.dumps(p50, indent=1))


if __name__ == "__main__":
    main()

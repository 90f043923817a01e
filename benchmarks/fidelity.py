"""Fidelity check: do a sweep's numbers hold when a cell is measured alone?

    python benchmarks/fidelity.py [--results data/08_reporting/results.parquet] [--out DIR]
                                  [--cells eager/default/fp32/b1_s128 onnxruntime/cuda/fp16/b8_s512 ... | --all]
                                  [--list]   (only print the cells it would check)

Run it in the project that made the results, after the sweep. Each picked cell is measured
ALONE in a fresh ``python`` process by ``benchmarks/fidelity_alone.py`` (a plain loop, none of
the project's harness), and compared with the sweep's p50: ratio sweep / alone, and ``agrees``
when within ±5 % or when the alone p50 is inside the sweep's 95 % interval (``p50_ci_low_ms`` /
``p50_ci_high_ms``, where the results have them), else ``DISAGREES``.

Default cells: the smallest and largest ``ok`` cell (by batch × seq) of eager FP32 and of eager
FP16, and of every other backend the smallest and largest ``ok`` cell, there its fastest
variant/precision (the number a reader quotes). ``--all``: every ``ok`` cell (issue 10's must-show).
TensorRT cells are reported "not checked".

Exit status: 0 when every checked cell agrees, 1 when any disagrees or could not be measured,
2 on bad input (unknown cell, missing file).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from bench_pipeline.backends.onnxruntime.artifacts import ort_artifact_key
from bench_pipeline.harness.results import KEY_COLUMNS, cell_name
from bench_pipeline.reporting.markdown import markdown_table
from bench_pipeline.reporting.study import load_results
from bench_pipeline.system.environment import capture_environment

ALONE = Path(__file__).with_name("fidelity_alone.py")
TOLERANCE = 0.05
CELL_SPEC = re.compile(r"^([^/]+)/([^/]+)/([^/]+)/b(\d+)_s(\d+)$")
NOT_CHECKED = {
    "tensorrt": "not checked: no plain loop for TensorRT engines here (they run through the project's runtime)",
}
COLUMNS = ["cell", "sweep_p50_ms", "sweep_ci_low_ms", "sweep_ci_high_ms", "alone_p50_ms", "alone_spread",
           "ratio", "verdict"]


class BadInput(ValueError):
    """Input the check cannot use; the message names the value and what is allowed."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="the project that made the results")
    parser.add_argument("--results", type=Path, default=Path("data/08_reporting/results.parquet"),
                        help="results table, .parquet or .csv (relative to --project)")
    cells = parser.add_mutually_exclusive_group()
    cells.add_argument("--cells", nargs="+", metavar="BACKEND/VARIANT/PRECISION/bB_sS")
    cells.add_argument("--all", action="store_true", help="every ok cell of the results")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls first")
    parser.add_argument("--calls", type=int, default=100, help="timed calls per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; alone p50 = median of their medians")
    parser.add_argument("--seed", type=int, default=0, help="the run's benchmark.seed (inputs)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one cell may take")
    parser.add_argument("--list", action="store_true", help="only print the cells that would be checked")
    parser.add_argument("--out", type=Path, help="write fidelity.csv, fidelity.md and fidelity_environment.json here")
    return parser.parse_args(argv)


def name_of(row: Any) -> str:
    return f"{row.backend}/{row.variant}/{row.precision}/{cell_name(row.batch, row.seq)}"


def pick_cells(results: pd.DataFrame, specs: list[str] | None, every_ok: bool = False) -> pd.DataFrame:
    """The rows to check: every ok one, the ones named (each must exist and be ok), or the default pick."""
    if every_ok:
        return results[results.status == "ok"].sort_values(["backend", "variant", "precision", "batch", "seq"])
    if not specs:
        return default_cells(results)
    names = results.apply(name_of, axis=1)
    picked = []
    for spec in specs:
        if not CELL_SPEC.match(spec):
            raise BadInput(
                f"--cells {spec!r}: expected backend/variant/precision/bB_sS, e.g. eager/default/fp32/b1_s128")
        rows = results[names == spec]
        if rows.empty:
            raise BadInput(f"cell {spec} is not in the results; they hold: {', '.join(names[:12])}"
                           + (" …" if len(names) > 12 else ""))
        if rows.iloc[0].status != "ok":
            raise BadInput(f"cell {spec} has status {rows.iloc[0].status!r}: only ok cells have numbers to check")
        picked.append(rows.iloc[0])
    return pd.DataFrame(picked)


def default_cells(results: pd.DataFrame) -> pd.DataFrame:
    ok = results[results.status == "ok"]
    eager = ok[(ok.backend == "eager") & (ok.variant == "default")]
    groups = [eager[eager.precision == p] for p in ("fp32", "fp16")]
    groups += [rows for backend, rows in ok.groupby("backend") if backend != "eager"]
    picked = [row for rows in groups if not rows.empty for row in smallest_and_largest(rows)]
    return pd.DataFrame(picked).drop_duplicates(KEY_COLUMNS)


def smallest_and_largest(rows: pd.DataFrame) -> list[pd.Series]:
    """The fastest row at the fewest tokens per call and the fastest at the most."""
    tokens = rows.batch * rows.seq
    ends = [rows[tokens == tokens.min()], rows[tokens == tokens.max()]]
    return [end.loc[pd.to_numeric(end.p50_ms).idxmin()] for end in ends]


def cell_job(row: pd.Series, project: Path, model_dir: str, args: argparse.Namespace) -> dict[str, Any] | str:
    """What the fresh process needs for this cell, or why it is not checked."""
    if row.backend in NOT_CHECKED:
        return NOT_CHECKED[row.backend]
    extra = json.loads(row.extra) if isinstance(row.extra, str) and row.extra else {}
    job = {key: row[key] for key in KEY_COLUMNS} | {
        "batch": int(row.batch), "seq": int(row.seq), "device": str(row.device), "threads": int(row.threads),
        "model_dir": model_dir, "seed": args.seed, "options": extra,
        "warmup": args.warmup, "calls": args.calls, "repeats": args.repeats,
    }
    if row.backend == "onnxruntime":
        provider = extra.get("provider", "cpu")
        if provider == "tensorrt":
            return "not checked: ONNX Runtime's TensorRT EP has no plain loop here"
        key = ort_artifact_key(provider, row.precision, bool(extra.get("fused")))
        job["onnx_path"] = str(project / read_json(project / "data/06_models/export_artifacts.json")[key]["path"])
    return job


def measure_alone(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run the cell in a fresh python process; its last stdout line is the JSON result."""
    try:
        done = subprocess.run([sys.executable, str(ALONE), json.dumps(job)], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"verdict": f"ERROR: no result within {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"verdict": f"ERROR: the fresh process failed: {last}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def verdict(sweep: float, alone: float, low: float, high: float) -> str:
    inside = pd.notna(low) and pd.notna(high) and low <= alone <= high
    return "agrees" if abs(sweep / alone - 1) <= TOLERANCE or inside else "DISAGREES"


def check_row(row: pd.Series, project: Path, model_dir: str, args: argparse.Namespace) -> dict[str, Any]:
    low, high = (pd.to_numeric(row.get(c), errors="coerce") for c in ("p50_ci_low_ms", "p50_ci_high_ms"))
    out = {"cell": name_of(row), "sweep_p50_ms": float(row.p50_ms), "sweep_ci_low_ms": low, "sweep_ci_high_ms": high}
    job = cell_job(row, project, model_dir, args)
    if isinstance(job, str):
        return out | {"verdict": job}
    print(f"measuring {out['cell']} alone …", file=sys.stderr, flush=True)
    alone = measure_alone(job, args.timeout)
    if "verdict" in alone:
        return out | alone
    ratio = out["sweep_p50_ms"] / alone["alone_p50_ms"]
    return out | {"alone_p50_ms": alone["alone_p50_ms"], "alone_spread": alone["alone_spread"], "ratio": ratio,
                  "verdict": verdict(out["sweep_p50_ms"], alone["alone_p50_ms"], low, high)}


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BadInput(f"{path} does not exist: run the fidelity check in the project whose sweep made the results")
    return json.loads(path.read_text())


def run_model_dir(project: Path, results: pd.DataFrame) -> str:
    """The model directory the run loaded, from its model_info.json, checked against the results' model."""
    info = read_json(project / "data/06_models/model_info.json")
    models = set(results["model"].dropna().astype(str)) if "model" in results else set()
    if models and models != {info["name"]}:
        raise BadInput(f"the results are for {sorted(models)} but the run's model_info.json is for {info['name']!r}")
    return str(project / info["path"])


def header(env: dict[str, Any], results_path: Path) -> list[str]:
    versions = ", ".join(f"{k.removeprefix('lib.')} {v}" for k, v in env.items()
                         if k in ("lib.torch", "lib.transformers", "lib.onnxruntime") and v)
    return [
        f"Fidelity check of {results_path}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"machine: {env.get('host.name')} ({env.get('cpu.model')}); GPU: {env.get('gpu.name') or 'none'}"
        + (f", driver {env['gpu.driver_version']}" if env.get("gpu.driver_version") else ""),
        f"versions: python {env.get('python.version')}, {versions}",
    ]


def write_outputs(out: Path, table: pd.DataFrame, lines: list[str], env: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "fidelity.csv", index=False)
    shown = table.astype(object).map(lambda v: "" if pd.isna(v) else f"{v:.4g}" if isinstance(v, float) else v)
    (out / "fidelity.md").write_text("\n\n".join([f"# {lines[0]}", *lines[1:], markdown_table(shown)]) + "\n")
    (out / "fidelity_environment.json").write_text(json.dumps(env, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    project = args.project.resolve()
    results_path = project / args.results
    try:
        results = load_results(results_path)
        cells = pick_cells(results, args.cells, args.all)
        if args.list:
            print("\n".join(cells.apply(name_of, axis=1)))
            return 0
        model_dir = run_model_dir(project, results)
    except (BadInput, FileNotFoundError, ValueError) as error:
        print(f"fidelity: {error}", file=sys.stderr)
        return 2
    table = pd.DataFrame([check_row(row, project, model_dir, args) for _, row in cells.iterrows()], columns=COLUMNS)
    threads = int(cells.threads.max()) if len(cells) else 1
    env = capture_environment(str(cells.device.iloc[0]) if len(cells) else "cpu", threads)
    lines = header(env, results_path)
    print("\n".join(lines) + "\n\n" + table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.out:
        write_outputs(args.out, table, lines, env)
    failed = table.verdict.str.startswith(("DISAGREES", "ERROR"))
    return 1 if failed.any() else 0


if __name__ == "__main__":
    sys.exit(main())

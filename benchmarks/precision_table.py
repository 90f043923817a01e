"""The precisions must-show table (issue 15), from a run's results: p50 with its 95 % interval, speedup over FP32
eager (paired, with interval) and over FP16 (eager FP16 and the fastest ok FP16 cell), parity (cosine, max abs),
and the share of the FP16 roofline; then which cell, if any, reaches 60 % of it at the largest cell.

  python benchmarks/precision_table.py [--results data/08_reporting/results.parquet [more.csv ...]]
      [--model-info data/06_models/model_info.json] [--environment data/08_reporting/environment.json]
      [--out data/08_reporting/precisions]

The FP16 roofline of a cell is the project's bound (``reporting/roofline.py``): forward FLOPs over the GPU's dense
FP16 tensor peak, FLOPs = 2 * batch * seq * layers * (4 h^2 + 2 h i)  (Q, K, V, O and the FFN weights)
+ layers * 4 * batch * seq^2 * h  (QK^T and AV); embeddings are a lookup and count nothing. For BERT-base at
32x512 on an H200 (989.4 TFLOP/s) that is 3.09 TFLOP -> 3.12 ms. The issue's 3.9 ms counts every one of BERT-base's
110 M parameters as a matmul weight (embeddings included: 3.9 TFLOP); the table gives both thresholds for 60 %:
the issue's (3.9 ms / 0.6 = 6.4 ms, as stated there) and this formula's (3.12 ms / 0.6 = 5.2 ms).

The speedups over FP16 are ratios of p50s measured in the same interleaved rounds (not paired round by round);
the speedup over FP32 is the sweep's own: paired round by round unless marked °.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from bench_pipeline.reporting.markdown import markdown_table
from bench_pipeline.reporting.roofline import forward_flops, gpu_peak
from bench_pipeline.reporting.tables import UNPAIRED_LEGEND, UNPAIRED_MARK, unpaired_mark

ISSUE_BOUND_MS = 3.9  # the issue's FP16 bound at 32x512 on the H200 (embeddings counted as matmuls)
ISSUE_LIMIT_MS = 6.4  # the issue's 60 % threshold at 32x512
SHARE = 0.60
INTERVALS = ("p50_ci_low_ms", "p50_ci_high_ms", "speedup_ci_low", "speedup_ci_high")
COLUMNS = ["config", "cell", "status", "p50 ms [95 % CI]", "× FP32 [CI]", "× FP16 eager", "× best FP16",
           "cosine", "max abs", "FP16 bound ms", "% FP16 roofline"]


def _ci(value: float, low: float, high: float, digits: int = 3, unit: str = "") -> str:
    if pd.isna(value):
        return ""
    text = f"{value:.{digits}f}{unit}"
    return text + (f" [{low:.{digits}f}, {high:.{digits}f}]" if not (pd.isna(low) or pd.isna(high)) else "")


def must_show(results: pd.DataFrame, model_info: dict, gpu_name: str | None) -> tuple[pd.DataFrame, list[str]]:
    peak = gpu_peak(gpu_name)  # no assumed peak: a share of another GPU's roofline would be a wrong number
    measured = results[results["status"].isin(["ok", "unstable", "fail_accuracy"])]
    fp16 = measured[(measured["precision"] == "fp16") & (measured["status"] == "ok")]
    rows, notes = [], [f"GPU peaks: {peak.name}, FP16 dense {peak.fp16_tflops:g} TFLOP/s" if peak else
                       f"GPU {gpu_name!r} is not in the peak table (reporting/roofline.py): no roofline bound or share"]
    # older results have no intervals: their columns read empty
    results = results.reindex(columns=[*results.columns, *[c for c in INTERVALS if c not in results.columns]])
    for r in results.sort_values(["batch", "seq", "precision", "backend", "variant"]).itertuples():
        flops = forward_flops(model_info, int(r.batch), int(r.seq))
        bound_ms = 1e3 * flops / (peak.fp16_tflops * 1e12) if peak else math.nan
        cell_fp16 = fp16[(fp16["batch"] == r.batch) & (fp16["seq"] == r.seq)]
        eager16 = cell_fp16[cell_fp16["backend"] == "eager"]["p50_ms"]
        ok = r.status in ("ok", "unstable", "fail_accuracy") and not pd.isna(r.p50_ms)
        rows.append({
            "config": f"{r.backend}/{r.variant}/{r.precision}", "cell": f"{r.batch}x{r.seq}",
            "status": r.status,
            "p50 ms [95 % CI]": _ci(r.p50_ms, r.p50_ci_low_ms, r.p50_ci_high_ms) if ok
            else (r.reason if isinstance(r.reason, str) else ""),
            "× FP32 [CI]": _ci(r.speedup, r.speedup_ci_low, r.speedup_ci_high, 2)
            + unpaired_mark(r) if ok else "",
            "× FP16 eager": f"{eager16.iloc[0] / r.p50_ms:.2f}" if ok and len(eager16) else "",
            "× best FP16": f"{cell_fp16['p50_ms'].min() / r.p50_ms:.2f}" if ok and len(cell_fp16) else "",
            "cosine": f"{r.cosine:.5f}" if ok else "", "max abs": f"{r.max_abs:.2e}" if ok else "",
            "FP16 bound ms": f"{bound_ms:.2f}" if peak else "",
            "% FP16 roofline": f"{100 * bound_ms / r.p50_ms:.1f}" if ok and peak else "",
            "_p50": r.p50_ms if ok else math.nan, "_bound": bound_ms, "_ok": r.status == "ok",
        })
    table = pd.DataFrame(rows)
    largest = table[table["cell"] == f"{results['batch'].max()}x{results['seq'].max()}"]
    if len(largest) and peak:
        bound = largest["_bound"].iloc[0]
        limits = [("this formula", bound / SHARE)]
        notes.append(f"largest cell {largest['cell'].iloc[0]}: FP16 bound {bound:.2f} ms by this formula "
                     f"(60 %: <= {bound / SHARE:.2f} ms)")
        if largest["cell"].iloc[0] == "32x512":
            limits.insert(0, ("issue's threshold", ISSUE_LIMIT_MS))
            notes.append(f"the issue's bound at 32x512: {ISSUE_BOUND_MS} ms (embeddings counted; 60 %: <= "
                         f"{ISSUE_LIMIT_MS} ms)")
        for label, limit in limits:
            passing = largest[largest["_ok"] & (largest["_p50"] <= limit)].sort_values("_p50")
            names = ", ".join(f"{c} ({p:.2f} ms)" for c, p in zip(passing["config"], passing["_p50"]))
            notes.append(f"passes 60 % ({label}, <= {limit:.2f} ms, status ok only): {names or 'none'}")
    if table["× FP32 [CI]"].str.endswith(UNPAIRED_MARK).any():
        notes.append(UNPAIRED_LEGEND)
    return table[COLUMNS], notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", nargs="+", default=["data/08_reporting/results.parquet"],
                        help="one or more results tables (.parquet or .csv) of sweeps over different cells")
    parser.add_argument("--model-info", default="data/06_models/model_info.json")
    parser.add_argument("--environment", default="data/08_reporting/environment.json")
    parser.add_argument("--out", default=None, help="folder for precisions.md and precisions.csv")
    args = parser.parse_args()
    tables = [pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path) for path in args.results]
    results = pd.concat(tables, ignore_index=True)
    cells = results[["backend", "variant", "precision", "batch", "seq"]]
    if cells.duplicated().any():  # a cell from two sweeps: which one the table would show is arbitrary
        twice = cells[cells.duplicated()].astype(str).agg("/".join, axis=1)
        parser.error(f"--results {args.results}: cells in more than one table: {', '.join(twice[:5])}")
    model_info = json.loads(Path(args.model_info).read_text())
    env_path = Path(args.environment)
    env = json.loads(env_path.read_text()) if env_path.is_file() else {}
    table, notes = must_show(results, model_info, env.get("gpu.name"))
    text = "\n".join([markdown_table(table), "", *[f"- {note}" for note in notes]])
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "precisions.csv", index=False)
        facts = {k: v for k, v in env.items() if k.startswith(("gpu.name", "gpu.driver", "lib.", "torch.cud")) and v}
        (out / "precisions.md").write_text(f"# Precisions on {model_info.get('name')}\n\n{facts}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

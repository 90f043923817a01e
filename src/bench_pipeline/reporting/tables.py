"""Tables derived from the results frame: speedups, winners, failures, one-off cost and break-even.

Every function takes the frame as ``results.to_frame`` makes it (one row per cell, all of
``results.COLUMNS``) and returns a new frame; nothing here draws or formats, so the Markdown
and HTML reports and the MLflow metrics all read the same numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Mapping

import numpy as np
import pandas as pd

from bench_pipeline.reporting.formatting import config_label
from bench_pipeline.reporting.roofline import add_roofline
from bench_pipeline.results import KEY_COLUMNS

# The reference every speedup is measured against: what a user gets without trying.
BASELINE = {"backend": "eager", "variant": "default", "precision": "fp32"}
CELL = ["batch", "seq"]
CONFIG = ["backend", "variant", "precision"]
COST_COLUMNS = ["setup_s", "export_s", "build_s", "compile_s"]
# Statuses whose timing numbers were measured (fail_accuracy keeps them, but never wins).
MEASURED = ("ok", "fail_accuracy")

_REQUIRED = [*KEY_COLUMNS, "status", "reason"]


def check_frame(df: pd.DataFrame, needed: list[str] | tuple[str, ...] = ()) -> None:
    """Fail early, naming the missing columns, instead of a KeyError deep in a groupby."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"results must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in [*_REQUIRED, *needed] if c not in df.columns]
    if missing:
        raise ValueError(f"results frame lacks columns {missing}; see bench_pipeline.results.COLUMNS")
    if "model" in df.columns:
        models = sorted({str(m) for m in df["model"].dropna()})
        if len(models) > 1:
            raise ValueError(f"a report covers one model, the results hold {len(models)}: {models}")
    duplicated = df[df.duplicated(KEY_COLUMNS, keep=False)]
    if not duplicated.empty:
        keys = sorted({tuple(row) for row in duplicated[KEY_COLUMNS].itertuples(index=False)})
        raise ValueError(f"results hold more than one row for the cells {keys[:5]}; one row per {KEY_COLUMNS} allowed")


def is_true(value: Any) -> bool:
    """A flag that may arrive as True, numpy bool, None or NaN (after a Parquet round trip)."""
    return value is not None and not pd.isna(value) and bool(value)


def ordered_configs(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The frame's (backend, variant, precision) in a stable order, the baseline first so every
    table and figure starts from the reference."""
    keys = {tuple(str(v) for v in row) for row in df[CONFIG].itertuples(index=False)}
    baseline = tuple(BASELINE[c] for c in CONFIG)
    return sorted(keys, key=lambda k: (k != baseline, k))


def rows_of(df: pd.DataFrame, config: tuple[str, str, str]) -> pd.DataFrame:
    """The rows of one configuration."""
    return df[(df[CONFIG].astype(str) == pd.Series(config, index=CONFIG)).all(axis=1)]


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def _is_baseline(df: pd.DataFrame) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for column, value in BASELINE.items():
        mask &= df[column] == value
    return mask


def baseline_p50(df: pd.DataFrame) -> pd.DataFrame:
    """p50 and one-off cost of the FP32 eager baseline per (batch, seq); only its ok cells count."""
    check_frame(df, ["p50_ms"])
    baseline = _is_baseline(df)
    one_off = _one_off_s(df[baseline])
    base = df[baseline & (df["status"] == "ok")].copy()
    base["baseline_p50_ms"] = _numeric(base, "p50_ms")
    base["baseline_one_off_s"] = one_off.reindex(base.index)
    return base[[*CELL, "baseline_p50_ms", "baseline_one_off_s"]].drop_duplicates(CELL)


def add_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with ``baseline_p50_ms`` and ``speedup`` (baseline p50 / p50) for measured rows.

    ``fail_accuracy`` rows keep a speedup (a report may show how fast the wrong answer was);
    every other non-ok row, and cells whose baseline did not run, get NaN.
    """
    check_frame(df, ["p50_ms"])
    out = df.drop(columns=["baseline_p50_ms", "baseline_one_off_s", "speedup"], errors="ignore")
    base = baseline_p50(out)
    out = out.merge(base, on=CELL, how="left", validate="many_to_one")
    out.index = df.index
    measured = out["status"].isin(MEASURED)
    out["speedup"] = (out["baseline_p50_ms"] / _numeric(out, "p50_ms")).where(measured)
    return out


def winners(df: pd.DataFrame) -> pd.DataFrame:
    """The fastest ``ok`` configuration per (batch, seq), by p50.

    Every cell of the frame gets a row; where nothing ran ok the configuration columns are
    empty and ``note`` counts the statuses instead, so a report never drops a cell.
    ``fail_accuracy`` never wins: a fast wrong answer is not a result.
    """
    out = add_speedup(df)
    extra = [c for c in ("roofline_pct",) if c in out.columns]
    rows = []
    for (batch, seq), cell in out.groupby(CELL, sort=True):
        ok = cell[(cell["status"] == "ok") & _numeric(cell, "p50_ms").notna()]
        if ok.empty:
            counts = Counter(cell["status"])
            summary = ", ".join(f"{status} ×{n}" for status, n in sorted(counts.items()))
            rows.append({"batch": batch, "seq": seq, "note": f"no configuration ran ok ({summary})"})
            continue
        best = ok.loc[_numeric(ok, "p50_ms").idxmin()]
        row = {"batch": batch, "seq": seq, **{c: best[c] for c in [*CONFIG, "p50_ms", "speedup", *extra]}}
        row["config"] = config_label(best["backend"], best["variant"], best["precision"])
        row["note"] = ""
        rows.append(row)
    columns = [*CELL, *CONFIG, "config", "p50_ms", "speedup", *extra, "note"]
    return pd.DataFrame(rows, columns=columns)


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """Every row that is not ``ok``, with its status and reason (fail_accuracy included)."""
    check_frame(df)
    bad = df[df["status"] != "ok"]
    columns = [*KEY_COLUMNS, "status", "reason"]
    return bad[columns].sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def _one_off_s(df: pd.DataFrame) -> pd.Series:
    """Setup + export + build + compile seconds per row; NaN when no cost column has a value.

    ``compile_s`` is the first call of each cell's own shape, so with dynamic shapes only the
    first cell compiles and the later ones record about one call's time. The compile is paid
    once per configuration, so every row is charged the configuration's largest ``compile_s``
    (over the rows passed in): the same figure the cost table and cost figure show.
    """
    present = [c for c in COST_COLUMNS if c in df.columns]
    if not present:
        return pd.Series(np.nan, index=df.index, dtype=float)
    costs = pd.concat([_numeric(df, c).rename(c) for c in present], axis=1)
    if "compile_s" in present and not df.empty:
        per_config = [df[c].astype(str) for c in CONFIG]
        costs["compile_s"] = costs["compile_s"].groupby(per_config, dropna=False).transform("max")
    return costs.sum(axis=1, min_count=1)


def break_even(df: pd.DataFrame) -> pd.DataFrame:
    """Per ok row: one-off cost beyond the baseline's and how many calls repay it.

    ``one_off_s`` = setup + export + build + the configuration's largest compile time (see
    ``_one_off_s``: the compile is paid once, not per cell); ``extra_one_off_s`` = that minus
    the FP32 eager baseline's own one-off cost for that cell (never below 0); ``saving_ms`` =
    baseline p50 - p50; ``break_even_calls`` = extra / saving, ``inf`` when the configuration
    is not faster (it never pays off, whatever it cost), 0 when it is faster and costs nothing
    extra. NaN where costs or baseline are unknown and on the baseline itself.
    """
    out = add_speedup(df)
    out["one_off_s"] = _one_off_s(out)  # before dropping failed cells: a compile is paid even when a cell fails
    out = out[out["status"] == "ok"].copy()
    out["saving_ms"] = out["baseline_p50_ms"] - _numeric(out, "p50_ms")
    extra = (out["one_off_s"] - out["baseline_one_off_s"].fillna(0)).clip(lower=0)
    out["extra_one_off_s"] = extra
    calls = [_calls_to_repay(e, s) for e, s in zip(extra, out["saving_ms"])]
    out["break_even_calls"] = pd.Series(calls, index=out.index, dtype=float).where(~_is_baseline(out))
    columns = [*KEY_COLUMNS, "status", *[c for c in COST_COLUMNS if c in out.columns], "one_off_s"]
    columns += ["extra_one_off_s", "saving_ms", "break_even_calls"]
    return out[columns].sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def _calls_to_repay(extra_s: float, saving_ms: float) -> float:
    """Calls after which a per-call saving repays an extra one-off cost: NaN when either is
    unknown, inf when there is no saving (a slower configuration never repays, even for free),
    0 when there is nothing to repay."""
    if math.isnan(extra_s) or math.isnan(saving_ms):
        return math.nan
    if saving_ms <= 0:
        return math.inf
    if extra_s == 0:
        return 0.0
    return 1e3 * extra_s / saving_ms


def has_values(df: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> list[str]:
    """Which of ``columns`` are missing from the frame or hold no number at all."""
    return [c for c in columns if c not in df.columns or not _numeric(df, c).notna().any()]


DERIVED_COLUMNS = (
    "baseline_p50_ms",
    "baseline_one_off_s",
    "speedup",
    "one_off_s",
    "break_even_calls",
    "gflops",
    "achieved_tflops",
    "roofline_ms",
    "roofline_pct",
)


def results_table(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> pd.DataFrame:
    """The tidy table a user downloads: every result column plus ``baseline_p50_ms``,
    ``speedup``, ``one_off_s``, ``break_even_calls``, ``gflops``, ``achieved_tflops``,
    ``roofline_ms`` and ``roofline_pct`` (NaN where unknown). Safe to apply twice."""
    raw = df.drop(columns=list(DERIVED_COLUMNS), errors="ignore")
    out = add_roofline(add_speedup(raw), env, model_info)
    costs = break_even(raw)[[*KEY_COLUMNS, "one_off_s", "break_even_calls"]]
    merged = out.merge(costs, on=KEY_COLUMNS, how="left", validate="one_to_one")
    merged.index = out.index
    return merged[[*raw.columns, *DERIVED_COLUMNS]]

"""Tables derived from the results frame: speedups, winners, failures, one-off cost and break-even.

Every function takes the frame as ``results.to_frame`` makes it (one row per cell, all of
``results.COLUMNS``) and returns a new frame; nothing here draws or formats, so the Markdown
and HTML reports and the MLflow metrics all read the same numbers.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bench_pipeline.harness.results import KEY_COLUMNS, TRUSTED
from bench_pipeline.harness.status import Status
from bench_pipeline.reporting.formatting import cell_label, config_label, fmt_speedup
from bench_pipeline.reporting.roofline import add_roofline

# The reference every speedup is measured against: what a user gets without trying.
BASELINE = {"backend": "eager", "variant": "default", "precision": "fp32"}
CELL = ["batch", "seq"]
CONFIG = ["backend", "variant", "precision"]
COST_COLUMNS = ["setup_s", "export_s", "build_s", "compile_s", "quantize_s"]
# Statuses whose timing numbers were measured and are kept; only TRUSTED ones ever win.
MEASURED = (Status.OK, Status.FAIL_ACCURACY, Status.UNSTABLE)
SPEEDUP_COLUMNS = ["speedup", "speedup_ci_low", "speedup_ci_high"]
# A GPU call in which the GPU waited for the host more than this share is bound by host dispatch.
DISPATCH_BOUND = 0.5

_REQUIRED = [*KEY_COLUMNS, "status", "reason"]


def check_frame(df: pd.DataFrame, needed: list[str] | tuple[str, ...] = ()) -> None:
    """Fail early, naming the missing columns, instead of a KeyError deep in a groupby."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"results must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in [*_REQUIRED, *needed] if c not in df.columns]
    if missing:
        raise ValueError(f"results frame lacks columns {missing}; see bench_pipeline.harness.results.COLUMNS")
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
    base = df[baseline & (df["status"] == Status.OK)].copy()
    base["baseline_p50_ms"] = _numeric(base, "p50_ms")
    base["baseline_one_off_s"] = one_off.reindex(base.index)
    return base[[*CELL, "baseline_p50_ms", "baseline_one_off_s"]].drop_duplicates(CELL)


def add_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with ``baseline_p50_ms``, ``speedup`` and its interval for measured rows.

    A row's own ``speedup`` is the measuring side's paired ratio (FP32 eager in the same
    rounds), with its bootstrap interval: it is kept. Older results have no such column, or
    NaN in it: there the speedup is baseline p50 / p50 and its interval is unknown (NaN).
    ``fail_accuracy`` and ``unstable`` rows keep a speedup (a report may show how fast the
    wrong or unsure answer was); every other non-ok row gets NaN, and so does every row of a
    cell whose baseline is not ok: a ratio over an unsure baseline is no speedup.
    """
    check_frame(df, ["p50_ms"])
    out = df.drop(columns=["baseline_p50_ms", "baseline_one_off_s"], errors="ignore")
    base = baseline_p50(out)
    out = out.merge(base, on=CELL, how="left", validate="many_to_one")
    out.index = df.index
    # over a baseline cell that is not ok (unstable, failed) there is no speedup to trust
    measured = out["status"].isin(MEASURED) & out["baseline_p50_ms"].notna()
    paired = _numeric(out, "speedup")
    ratio = out["baseline_p50_ms"] / _numeric(out, "p50_ms")
    out["speedup"] = paired.where(paired.notna(), ratio).where(measured)
    for column in ("speedup_ci_low", "speedup_ci_high"):
        out[column] = _numeric(out, column).where(paired.notna() & measured)
    return out


# How a cell's winner was decided (the ``verdict`` column of ``winners``).
CLEAR, TIE, UNKNOWN, ALONE, NONE = "clear", "tie", "interval unknown", "only one ran ok", "none"


def decide_winner(cell: pd.DataFrame) -> tuple[str, list[Any]]:
    """The verdict for one grid cell (one batch, seq) and the index labels it names, fastest first.

    Only trustworthy rows (status in ``TRUSTED``, a p50) compete: a fast wrong answer
    (``fail_accuracy``) or a measurement whose rounds disagreed (``unstable``) never wins.
    The fastest by p50 is the winner (``clear``) only when the upper bound of its p50 interval
    lies below the runner-up's lower bound: a faster median alone may be noise. Otherwise the
    verdict is ``tie`` and every row whose lower bound (its p50 where it has no interval) does
    not clear the fastest's upper bound is named. Where the fastest or the runner-up has no
    interval (older results) the fastest wins as before, with the verdict ``interval unknown``.
    ``only one ran ok`` and ``none`` (nothing ran ok: no labels) complete the list.
    """
    p50 = _numeric(cell, "p50_ms")
    trusted = cell["status"].isin(TRUSTED) & p50.notna()
    if not trusted.any():
        return NONE, []
    ranked = cell[trusted].assign(_p50=p50[trusted]).sort_values("_p50", kind="stable")
    if len(ranked) == 1:
        return ALONE, [ranked.index[0]]
    low, high = _numeric(ranked, "p50_ci_low_ms"), _numeric(ranked, "p50_ci_high_ms")
    fastest_high, runner_up_low = high.iloc[0], low.iloc[1]
    if math.isnan(fastest_high) or math.isnan(runner_up_low):
        return UNKNOWN, [ranked.index[0]]
    if fastest_high < runner_up_low:
        return CLEAR, [ranked.index[0]]
    tied = low.fillna(ranked["_p50"]) <= fastest_high
    return TIE, list(ranked.index[tied])


def winners(df: pd.DataFrame) -> pd.DataFrame:
    """The winner per (batch, seq) as ``decide_winner`` rules, one row per cell.

    The configuration and number columns are the fastest trustworthy row's; ``verdict`` says
    how sure that is and ``tied`` names the configurations it cannot be told apart from (''
    unless the verdict is ``tie``). Where nothing ran ok the configuration columns are empty
    and ``note`` counts the statuses instead, so a report never drops a cell.
    """
    out = add_speedup(df)
    numbers = ["p50_ms", "p50_ci_low_ms", "p50_ci_high_ms", *SPEEDUP_COLUMNS]
    numbers += [c for c in ("roofline_pct",) if c in out.columns]
    rows = []
    for (batch, seq), cell in out.groupby(CELL, sort=True):
        verdict, named = decide_winner(cell)
        if verdict == NONE:
            counts = Counter(cell["status"])
            summary = ", ".join(f"{status} ×{n}" for status, n in sorted(counts.items()))
            rows.append({"batch": batch, "seq": seq, "verdict": verdict,
                         "note": f"no configuration ran ok ({summary})"})
            continue
        best = cell.loc[named[0]]
        row = {"batch": batch, "seq": seq, **{c: best.get(c) for c in [*CONFIG, *numbers]}}
        row["config"] = config_label(best["backend"], best["variant"], best["precision"])
        row["verdict"] = verdict
        row["tied"] = ", ".join(config_label(*cell.loc[i, CONFIG]) for i in named) if verdict == TIE else ""
        row["note"] = ""
        rows.append(row)
    columns = [*CELL, *CONFIG, "config", *numbers, "verdict", "tied", "note"]
    return pd.DataFrame(rows, columns=columns)


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """Every row that neither ran ok nor was measured unstable (``unstable_cells`` lists those),
    with its status and reason (fail_accuracy included)."""
    check_frame(df)
    bad = df[~df["status"].isin(["ok", "unstable"])]
    columns = [*KEY_COLUMNS, "status", "reason"]
    return bad[columns].sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def unstable_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Rows measured ``unstable`` or while something competed for the machine, with why:
    their numbers are in the tables, but none of them is a winner, a headline or a metric."""
    check_frame(df)
    contamination = df["contamination"] if "contamination" in df.columns else pd.Series(None, index=df.index)
    flagged = df[(df["status"] == Status.UNSTABLE) | contamination.notna()].copy()
    flagged["round_spread"] = _numeric(flagged, "round_spread")
    flagged["contamination"] = contamination.reindex(flagged.index)
    columns = [*KEY_COLUMNS, "status", "round_spread", "contamination", "reason"]
    return flagged[columns].sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def not_run_configs(df: pd.DataFrame) -> pd.DataFrame:
    """Configurations none of whose cells was measured (skipped, unsupported, failed at every
    shape), one row each with its status counts and reasons: a report lists them once instead of
    a row of 'skipped' per cell. ``reason`` is the one reason they share, or one line per cell."""
    check_frame(df)
    rows = []
    for config in ordered_configs(df):
        cells = rows_of(df, config)
        if cells["status"].isin(MEASURED).any():
            continue
        counts = Counter(cells["status"].astype(str))
        reasons = ["" if r is None or pd.isna(r) else str(r) for r in cells["reason"]]
        if len(set(reasons)) > 1:
            reasons = [f"{cell_label(b, s)}: {r}" for b, s, r in zip(cells["batch"], cells["seq"], reasons)]
        rows.append({**dict(zip(CONFIG, config)), "cells": len(cells),
                     "statuses": ", ".join(f"{status} ×{n}" for status, n in sorted(counts.items())),
                     "reason": "\n".join(dict.fromkeys(reasons))})
    return pd.DataFrame(rows, columns=[*CONFIG, "cells", "statuses", "reason"])


def without_configs(df: pd.DataFrame, configs: pd.DataFrame) -> pd.DataFrame:
    """``df`` less the rows of the configurations in ``configs`` (e.g. ``not_run_configs``)."""
    drop = {tuple(str(v) for v in key) for key in configs[CONFIG].itertuples(index=False)}
    keep = [tuple(str(v) for v in key) not in drop for key in df[CONFIG].itertuples(index=False)]
    return df[pd.Series(keep, index=df.index, dtype=bool)]


def is_dispatch_bound(value: Any) -> bool:
    """Whether a row's ``dispatch_share`` says host dispatch dominated its calls."""
    return value is not None and not pd.isna(value) and float(value) > DISPATCH_BOUND


# The marks a measured cell may carry in every table and figure, and what each means.
NOISY_MARK, DISPATCH_MARK, SET_ASIDE_MARK = "*", "†", "‡"
MARK_LEGENDS = {
    NOISY_MARK: f"{NOISY_MARK} the calls within a round scattered more than this device's noise bound",
    SET_ASIDE_MARK: f"{SET_ASIDE_MARK} some rounds were set aside (outlying or contaminated; extra.round_p50_ms "
    "lists every round): the number is what the agreeing rounds measured, not what every round did",
    DISPATCH_MARK: f"{DISPATCH_MARK} dominated by host dispatch: the GPU waited for the host for more than "
    f"{100 * DISPATCH_BOUND:.0f} % of each call",
}


# A speedup's own mark: the sweep pairs candidate and baseline round by round where both counted the same rounds
# of one sweep; otherwise (``extra.speedup_paired`` false) it resamples each side on its own.
UNPAIRED_MARK = "°"
UNPAIRED_LEGEND = (f"{UNPAIRED_MARK} a speedup not paired round by round (the cell and the FP32 eager baseline "
                   "counted different rounds, or come from different sweeps): the ratio of the two medians, "
                   "its interval from resampling each on its own")


def extra_of(row: Any) -> dict[str, Any]:
    """A row's ``extra`` JSON as a dict ({} where there is none)."""
    extra = getattr(row, "extra", None)
    return json.loads(extra) if isinstance(extra, str) and extra else {}


def unpaired_mark(row: Any) -> str:
    """``UNPAIRED_MARK`` for a row whose speedup was not paired round by round, else ''."""
    return UNPAIRED_MARK if extra_of(row).get("speedup_paired") is False else ""


def speedup_text(row: Any) -> str:
    """A row's speedup over FP32 eager with its interval ('' where none), marked where it is not paired."""
    text = fmt_speedup(getattr(row, "speedup", None), getattr(row, "speedup_ci_low", None),
                       getattr(row, "speedup_ci_high", None))
    return text + unpaired_mark(row) if text else text


def marks_of(row: Any) -> str:
    """The marks of one row (a namedtuple from ``itertuples``): noisy rounds, rounds set aside, dispatch-bound."""
    noisy = NOISY_MARK if is_true(getattr(row, "cov_flag", None)) else ""
    set_aside = getattr(row, "rounds_set_aside", None)
    aside = SET_ASIDE_MARK if set_aside is not None and not pd.isna(set_aside) and set_aside > 0 else ""
    return noisy + aside + (DISPATCH_MARK if is_dispatch_bound(getattr(row, "dispatch_share", None)) else "")


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
    "one_off_s",
    "break_even_calls",
    "gflops",
    "achieved_tflops",
    "roofline_ms",
    "roofline_pct",
)


def results_table(df: pd.DataFrame, env: Mapping[str, Any], model_info: Mapping[str, Any]) -> pd.DataFrame:
    """The tidy table a user downloads: every result column, ``speedup`` and its interval as
    ``add_speedup`` settles them (also for older results without them), plus ``baseline_p50_ms``,
    ``one_off_s``, ``break_even_calls``, ``gflops``, ``achieved_tflops``, ``roofline_ms`` and
    ``roofline_pct`` (NaN where unknown). Safe to apply twice."""
    raw = df.drop(columns=list(DERIVED_COLUMNS), errors="ignore")
    out = add_roofline(add_speedup(raw), env, model_info)
    costs = break_even(raw)[[*KEY_COLUMNS, "one_off_s", "break_even_calls"]]
    merged = out.merge(costs, on=KEY_COLUMNS, how="left", validate="one_to_one")
    merged.index = out.index
    added = [c for c in SPEEDUP_COLUMNS if c not in raw.columns]
    return merged[[*raw.columns, *added, *DERIVED_COLUMNS]]

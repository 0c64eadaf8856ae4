"""Checks: one pure function per standard gate, named by its gate id, returning its Finding.

No pytest and no MLflow here: the gate tests, `bench/minimal.py`, `run-pipeline compare`
and the report call these functions on the same rows, so each figure has one
implementation. `@check(lowest, highest)` declares the values a figure can take, so that a
threshold no figure could ever pass (R2 `min: 5`, MAE `max: -5`) is refused when the gates
are collected; a repository's own gate may use it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

import numpy as np
import pandas as pd

from pipeline import figures
from pipeline.config import fmt_number

INF = math.inf
F = TypeVar("F", bound=Callable[..., Any])

# Gate id -> (lowest, highest) value its figure can take.
DOMAINS: dict[str, tuple[float, float]] = {}


def check(lowest: float = -INF, highest: float = INF) -> Callable[[F], F]:
    """Register a check under its function's name (its gate id) with its figure's possible range."""

    def register(fn: F) -> F:
        DOMAINS[fn.__name__] = (float(lowest), float(highest))
        return fn

    return register


@dataclass(frozen=True)
class Finding:
    """A gate's figure with what a person needs to read it.

    `label` names the figure in messages ("MAE", "|residual skew|"); `detail` says how it was
    computed; `reported` holds further figures shown beside it, never judged; `plot` holds
    what the report draws (plain lists: it travels between processes under pytest-xdist).
    """

    value: float
    label: str
    detail: str = ""
    reported: Mapping[str, float] = field(default_factory=dict)
    plot: Mapping[str, Any] = field(default_factory=dict)


def _sample_positions(n: int, size: int, seed: int) -> np.ndarray:
    """A seeded sample of row positions, kept in data order; every row when n <= size."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


# ---------------------------------------------------------------- data


@check(0)
def data_contract(violation: str | None, rows: int, source: str) -> Finding:
    """0 when the evaluation file met the contract, else 1 with the violation."""
    if violation:
        return Finding(1, "contract violations", violation)
    return Finding(0, "contract violations", f"{rows} rows of {source}")


@check(0)
def train_eval_overlap(train: pd.DataFrame, evaluation: pd.DataFrame, columns: list[str], *, what: str = "feature columns") -> Finding:
    """Evaluation rows that are training rows too, compared on whole records: `columns` are
    the id columns when the data declares them, else every feature and the target (distinct
    sales of identical houses are not a leak)."""
    shared = figures.shared_rows(train, evaluation, columns)
    return Finding(shared, "evaluation rows also in training", f"{len(evaluation)} evaluation rows compared on {len(columns)} {what}")


def overlap_columns(frame: pd.DataFrame, features: list[str], target: str, id_columns: list[str]) -> tuple[list[str], str]:
    """What identifies a record for the overlap gate: (columns, how the message names them)."""
    ids = [c for c in id_columns if c in frame.columns]
    if ids:
        return ids, f"id column{'s' if len(ids) > 1 else ''} ({', '.join(ids)})"
    return [*features, target], "columns (every feature and the target)"


@check(0, 1)
def feature_drift(train: pd.DataFrame, evaluation: pd.DataFrame, numeric: list[str], categorical: list[str], min_rows: int) -> Finding:
    drift = figures.feature_drift(train, evaluation, numeric, categorical, min_rows)
    if not drift:
        return Finding(float("nan"), "drift", f"no column has {min_rows} non-missing rows on both sides")
    worst = drift[0]
    return Finding(worst.statistic, f"drift of {worst.column}", f"worst column {worst.column} (p={worst.p_value:.3g}); {len(drift)} columns compared")


# ---------------------------------------------------------------- metrics


@check(-INF, 1)
def r2(y: np.ndarray, p: np.ndarray) -> Finding:
    return Finding(figures.r2(y, p), "R2", f"{len(y)} evaluation rows")


# Error figures a threshold may bound relative to a baseline's (max_ratio_to_baseline): each
# check takes the baseline's predictions of the same rows and reports its figure and the ratio.
BASELINE_GATES = ("mae", "rmse", "mape")
BASELINE = "the training target's median"


def _against_baseline(name: str, label: str, metric: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray,
                      p: np.ndarray, baseline: np.ndarray | None) -> Finding:
    value = float(metric(y, p))
    if baseline is None:
        return Finding(value, label, f"{len(y)} evaluation rows")
    base = float(metric(y, baseline))
    ratio = value / base if base > 0 else float("nan")
    return Finding(value, label, f"{len(y)} evaluation rows; baseline ({BASELINE}) {label} {fmt_number(base)}, ratio {fmt_number(ratio)}",
                   reported={f"{name}_baseline": base, f"{name}_ratio_to_baseline": ratio})


@check(0)
def mae(y: np.ndarray, p: np.ndarray, baseline: np.ndarray | None = None) -> Finding:
    return _against_baseline("mae", "MAE", figures.mae, y, p, baseline)


@check(0)
def rmse(y: np.ndarray, p: np.ndarray, baseline: np.ndarray | None = None) -> Finding:
    return _against_baseline("rmse", "RMSE", figures.rmse, y, p, baseline)


@check(0)
def mape(y: np.ndarray, p: np.ndarray, baseline: np.ndarray | None = None) -> Finding:
    return _against_baseline("mape", "MAPE", figures.mape, y, p, baseline)


# ---------------------------------------------------------------- champion


# How the champion gate judges the paired bootstrap of the relative MAE change, candidate vs
# champion: the bound it reads, and how its message names it.
CHAMPION_TESTS = {
    # At most `margin` worse, shown with confidence: the upper bound must be within the margin.
    "non_inferiority": ("upper", "MAE change vs champion, upper bound"),
    # Fails only when confidently worse than the margin: a noisy, probably worse model passes.
    "not_confidently_worse": ("lower", "MAE worse than champion by at least"),
}


@check(-1)
def champion_mae(y: np.ndarray, p: np.ndarray, champion_p: np.ndarray, *, champion: str, resamples: int, confidence: float,
                 seed: int, max_rows: int, test: str = "non_inferiority") -> Finding:
    """The paired-bootstrap relative MAE change, candidate vs champion, judged by `test`
    (CHAMPION_TESTS): its upper confidence bound (non-inferiority) or its lower bound."""
    bound, label = CHAMPION_TESTS[test]
    boot = figures.paired_bootstrap_mae(y, p, champion_p, resamples=resamples, confidence=confidence, seed=seed, max_rows=max_rows)
    judged = boot.upper if bound == "upper" else boot.lower
    detail = (f"{test.replace('_', '-')} vs {champion}: MAE change {boot.delta:+.2%}, {confidence:.0%} one-sided bounds "
              f"[{boot.lower:+.2%}, {boot.upper:+.2%}] on {len(y)} rows"
              + (f", {max_rows} rows per resample" if len(y) > max_rows else ""))
    return Finding(judged, label, detail,
                   reported={"champion_mae_change": boot.delta, "champion_mae_lower": boot.lower, "champion_mae_upper": boot.upper},
                   plot={"samples": boot.samples.tolist(), "delta": boot.delta, "lower": boot.lower, "upper": boot.upper,
                         "bound": bound, "test": test, "confidence": confidence, "champion": champion})


def champion_absent(alias: str, test: str = "non_inferiority") -> Finding:
    """The champion gate's finding when no model holds the alias: nothing to compare with."""
    return Finding(float("nan"), CHAMPION_TESTS[test][1], f"no model holds @{alias}: nothing to compare with")


# ---------------------------------------------------------------- slices


# The family-wise error rate for "this slice's errors are larger than the other rows'" over all
# slices of one run (Holm's step-down correction keeps it at this level).
SLICE_ALPHA = 0.05


@check(0)
def slice_error(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, *, columns: list[str], target: str, target_bands: list[float],
                min_rows: int, metric: str) -> Finding:
    """Worst slice's error over the overall error (MAE or MAPE)."""
    slices = figures.slice_errors(frame, y, p, columns, target, target_bands, min_rows, metric)
    label = metric.upper()
    if not slices:
        return Finding(float("nan"), f"worst slice {label} / overall {label}", f"no slice of {columns} or target bands has {min_rows} rows or more")
    worst = slices[0]
    worse = [s for s in slices if s.p_holm < SLICE_ALPHA]
    named = "".join(f"{', ' if i else ': '}{s.column}={s.value} (x{s.ratio:.2f})" for i, s in enumerate(worse[:3])) + (", ..." if len(worse) > 3 else "")
    detail = (f"worst slice {worst.column}={worst.value} ({worst.rows} rows, {label} {worst.error:,.4g}, Holm-adjusted p {worst.p_holm:.2g}); "
              f"{len(slices)} slices judged, the smallest of {min(s.rows for s in slices)} rows; {len(worse)} with errors larger than "
              f"the other rows' at Holm-adjusted p < {SLICE_ALPHA:g} (one-sided Welch t-tests){named}")
    return Finding(worst.ratio, f"worst slice {label} / overall {label}", detail,
                   reported={"slices_judged": float(len(slices)), "slices_significantly_worse": float(len(worse))},
                   plot={"metric": metric, "slices": [[s.column, s.value, s.rows, s.ratio] for s in slices]})


# ---------------------------------------------------------------- residuals


@dataclass(frozen=True)
class ResidualSample:
    """Residuals on the judged scale for a bounded, seeded sample of rows, in data order."""

    resid: np.ndarray
    pred: np.ndarray  # predictions on the judged scale
    y: np.ndarray  # truth and predictions of the same rows, on the target's own scale
    p: np.ndarray
    scale: str

    def plot(self) -> dict[str, Any]:
        return {"y": self.y.tolist(), "p": self.p.tolist(), "resid": self.resid.tolist(), "pred": self.pred.tolist(), "scale": self.scale}


def residual_sample(y: np.ndarray, p: np.ndarray, scale: str, sample_size: int, seed: int) -> ResidualSample:
    at = _sample_positions(len(y), sample_size, seed)
    y, p = np.asarray(y, float)[at], np.asarray(p, float)[at]
    resid = figures.residuals(y, p, scale)
    pred = np.log(p) if scale == "log" else p
    return ResidualSample(resid, pred, y, p, scale)


@check(0)
def residual_skew(sample: ResidualSample) -> Finding:
    n = figures.normality(sample.resid)
    return Finding(abs(n.skew), "|residual skew|", f"Jarque-Bera p={n.jb_p_value:.3g}; {len(sample.resid)} rows",
                   reported={"residual_skew_signed": n.skew}, plot=sample.plot())


@check(-2)
def residual_kurtosis(sample: ResidualSample) -> Finding:
    n = figures.normality(sample.resid)
    return Finding(n.excess_kurtosis, "residual excess kurtosis", f"Jarque-Bera p={n.jb_p_value:.3g}; {len(sample.resid)} rows")


@check(1)
def residual_spread(sample: ResidualSample) -> Finding:
    s = figures.spread(sample.resid, sample.pred)
    return Finding(s.ratio, "residual spread ratio", f"top decile {s.top:.4g}, bottom decile {s.bottom:.4g}; Breusch-Pagan p={s.bp_p_value:.3g}")


@check(0, 4)
def residual_autocorrelation(sample: ResidualSample, order: str = "the data's order") -> Finding:
    a = figures.autocorrelation(sample.resid)
    return Finding(a.durbin_watson, "Durbin-Watson", f"Ljung-Box p={a.ljung_box_p_value:.3g} at lag {a.lags}, "
                   f"{len(sample.resid)} rows ordered by {order}")


# ---------------------------------------------------------------- robustness (one hypothesis example each)


@check(0)
def noise_stability(before: np.ndarray, after: np.ndarray, *, percentile: float, spec: Any) -> Finding:
    change = figures.relative_change(before, after)
    cols = getattr(spec, "columns", None)
    what = (f"{len(change)} rows, noise sd {spec.relative_sd:g} x spread on "
            + (cols[0] if len(cols) == 1 else f"{len(cols)} numeric columns")) if cols else str(spec)
    return Finding(float(np.percentile(change, percentile)), f"p{percentile:g} relative prediction change",
                   f"max {change.max():.3g}; {what}", reported={"max_single_row_change": float(change.max())})


def _nonfinite(predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame, spec: Any) -> Finding:
    try:
        bad = int((~np.isfinite(predict(rows))).sum())
    except Exception as e:  # a model that refuses the input fails the gate, with the reason
        return Finding(len(rows), "non-finite predictions", f"predict raised {type(e).__name__}: {str(e).splitlines()[0][:150]}; {spec}")
    return Finding(bad, "non-finite predictions", f"{spec}")


@check(0)
def missing_values(predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame, spec: Any) -> Finding:
    return _nonfinite(predict, rows, spec)


@check(0)
def unseen_categories(predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame, spec: Any) -> Finding:
    return _nonfinite(predict, rows, spec)


def _difference(label: str, reference: np.ndarray, again: Callable[[], np.ndarray], detail: str) -> Finding:
    try:
        diff = figures.answer_difference(reference, np.asarray(again(), float))
    except Exception as e:
        return Finding(INF, label, f"predict raised {type(e).__name__}: {str(e).splitlines()[0][:150]}; {detail}")
    return Finding(diff.value, label, detail + diff.note())


@check(0)
def column_order(model: Any, rows: pd.DataFrame, reference: np.ndarray, seed: int) -> Finding:
    order = list(np.random.default_rng(seed).permutation(rows.columns))
    return _difference("max prediction difference after reordering columns", reference,
                       lambda: model.predict(rows[order]), f"permutation seed {seed}; {len(rows)} rows")


@check(0)
def wider_dtypes(model: Any, wider: pd.DataFrame, reference: np.ndarray, spec: Any) -> Finding:
    return _difference("max prediction difference with wider dtypes", reference, lambda: model.predict(wider), f"{spec}; {len(wider)} rows")


@check(0)
def directional(before: np.ndarray, after: np.ndarray, *, direction: str, feature: str, spec: Any) -> Finding:
    """How far predictions moved against the expected direction, relative to themselves (worst row)."""
    sign = 1 if direction == "increasing" else -1
    against = np.maximum(0.0, -sign * (np.asarray(after, float) - np.asarray(before, float))) / np.abs(before)
    return Finding(float(against.max()), f"prediction drop against {direction} {feature}", f"{spec}")


# ---------------------------------------------------------------- determinism


@check(0)
def refit_identical(model: Any, X: pd.DataFrame, y: pd.Series, rows: pd.DataFrame) -> Finding:
    """Two fits of clones on the same rows with the same seed predict the same."""
    from sklearn.base import clone

    first = clone(model).fit(X, y).predict(rows)
    return _difference("max prediction difference between two refits", first, lambda: clone(model).fit(X, y).predict(rows),
                       f"two refits on {len(X)} rows with the same seed, compared on {len(rows)} rows")


@check(0)
def predict_twice_identical(model: Any, rows: pd.DataFrame, reference: np.ndarray) -> Finding:
    return _difference("max prediction difference between two predicts", reference, lambda: model.predict(rows), f"{len(rows)} rows predicted again")


@check(0)
def mlflow_roundtrip_identical(reloaded: Any, rows: pd.DataFrame, reference: np.ndarray, how: str) -> Finding:
    return _difference("max prediction difference after an MLflow save and load", reference, lambda: reloaded.predict(rows), f"{how}; {len(rows)} rows")


@check(0)
def batch_independent(model: Any, rows: pd.DataFrame, reference: np.ndarray, seed: int) -> Finding:
    """The same rows asked in another order and in uneven chunks answer the same."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    order = rng.permutation(n)

    def shuffled() -> np.ndarray:
        out = np.empty(n)
        out[order] = model.predict(rows.iloc[order])
        return out

    cuts = np.sort(rng.choice(np.arange(1, n), size=min(7, n - 1), replace=False)) if n > 1 else np.array([], int)
    bounds = [0, *cuts.tolist(), n]

    def chunked() -> np.ndarray:
        return np.concatenate([model.predict(rows.iloc[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])

    label, detail = "max prediction difference across batch compositions and row order", f"{n} rows shuffled, and predicted in uneven chunks"
    a, b = _difference(label, reference, shuffled, detail), _difference(label, reference, chunked, detail)
    return a if a.value >= b.value else b


# ---------------------------------------------------------------- latency


@check(0)
def single_row_latency(times_ms: np.ndarray) -> Finding:
    times_ms = np.asarray(times_ms, float)
    p99, p50 = float(np.percentile(times_ms, 99)), float(np.percentile(times_ms, 50))
    return Finding(p99, "single-row p99", f"p50 {p50:.2f} ms over {len(times_ms)} single-row predicts",
                   reported={"single_row_p50_ms": p50}, plot={"latency_ms": times_ms.tolist()})


@check(0)
def batch_throughput(seconds: np.ndarray, rows: int) -> Finding:
    median_s = float(np.median(np.asarray(seconds, float)))
    return Finding(rows / median_s, "batch throughput", f"median {median_s * 1000:.1f} ms per {rows}-row batch")


# ---------------------------------------------------------------- serving


@check(0)
def serving_matches_in_process(reference: np.ndarray, answered: np.ndarray) -> Finding:
    diff = figures.answer_difference(reference, answered)
    return Finding(diff.value, "max difference between served and in-process predictions", f"{len(answered)} rows over HTTP vs in process{diff.note()}")


@check(0)
def serving_rejects_malformed(statuses: Mapping[str, int]) -> Finding:
    """How many malformed requests were not answered 4xx (name -> HTTP status)."""
    bad = {k: v for k, v in statuses.items() if not 400 <= v < 500}
    return Finding(len(bad), "malformed requests not answered 4xx", f"{len(statuses)} malformed requests; not 4xx: {bad or 'none'}")


@check(0)
def serving_latency(times_ms: np.ndarray) -> Finding:
    times_ms = np.asarray(times_ms, float)
    p99, p50 = float(np.percentile(times_ms, 99)), float(np.percentile(times_ms, 50))
    return Finding(p99, "served single-row p99", f"p50 {p50:.1f} ms over {len(times_ms)} single-row HTTP requests on loopback",
                   reported={"serving_p50_ms": p50})

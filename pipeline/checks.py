"""Checks: one pure function per standard gate, named by its gate id, returning its Finding.

No pytest and no MLflow here: the gate tests, `bench/minimal.py`, `run-pipeline compare`
and the report call these functions on the same rows, so each figure has one
implementation. `@check(lowest, highest)` declares the values a figure can take, so that a
threshold no figure could ever pass (R2 `min: 5`, MAE `max: -5`) is refused when the gates
are collected; a repository's own gate may use it too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd

from pipeline import figures
from pipeline.config import LOSS_LABELS, fmt_number
from pipeline.timing import Rounds

# sklearn.base (0.1 s) is imported inside refit_identical: pytest loads the plugin, which imports this
# module, in every session (pytest11), gates or not.

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
    computed; `reported` holds further figures shown beside it; `plot` holds what the report
    draws (plain lists: it travels between processes under pytest-xdist). `baseline`,
    `baseline_ratio`: the baseline's figure on the same rows and the figure over it, where the
    check measured one (a max_ratio_to_baseline bound judges the ratio). `judged_on` tells pipeline.judge what decides:
    "figure" (the value), "interval" (a timing's interval, with the time waited for a core
    taken out: pipeline.judge) or "paired_interval" (a ratio of two timings taken in the same
    rounds, which load moves together: its interval alone).
    """

    value: float
    label: str
    detail: str = ""
    reported: Mapping[str, float] = field(default_factory=dict)
    plot: Mapping[str, Any] = field(default_factory=dict)
    baseline: float | None = None  # the baseline's own figure, beside the ratio
    baseline_ratio: float | None = None
    judged_on: Literal["figure", "interval", "paired_interval"] = "figure"


def sample_positions(n: int, size: int, seed: int) -> np.ndarray:
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
def train_eval_overlap(
    train: pd.DataFrame,
    evaluation: pd.DataFrame,
    columns: list[str],
    *,
    what: str = "feature columns",
    grouped: int = 0,
) -> Finding:
    """Evaluation rows that are training rows too, compared on whole records (`columns`:
    data.record_columns); `grouped` is how many rows the split kept beside a copy of their record."""
    shared = figures.shared_rows(train, evaluation, columns)
    return overlap_finding(shared, len(evaluation), len(columns), what=what, grouped=grouped)


def overlap_finding(shared: int, rows: int, columns: int, *, what: str, grouped: int = 0) -> Finding:
    """train_eval_overlap's finding from its figure (`shared` of `rows` evaluation rows), whichever engine counted it."""
    kept = f"; the split kept {grouped} rows that repeat a record on their record's side" if grouped else ""
    return Finding(
        shared, "evaluation rows also in training", f"{rows} evaluation rows compared on {columns} {what}{kept}"
    )


@check(-INF, 1)
def target_leak(
    train: pd.DataFrame,
    evaluation: pd.DataFrame,
    columns: list[str],
    target: str,
    *,
    log: bool = False,
    classes: int = 0,
) -> Finding:
    """The best R2 any one feature reaches alone (figures.one_feature_fits) on the scale the
    model fits (`log`: log(target)). Near 1, that column is the target in another form (a
    log of it, a row number of a file sorted by it, a figure known only afterwards): the
    model would read the answer off it. An absolute bound, not a share of the full model's
    R2: one honest, dominant feature beside noise reaches the full model's R2 too."""
    y_train, y_eval = train[target].to_numpy(float), evaluation[target].to_numpy(float)
    if log:
        y_train, y_eval = np.log(y_train), np.log(y_eval)
    if classes > 2:  # a multiclass target: one 0/1 column per class (R2 over them: the Brier skill)
        y_train, y_eval = np.eye(classes)[y_train.astype(int)], np.eye(classes)[y_eval.astype(int)]
    fits = figures.one_feature_fits(train, evaluation, columns, y_train, y_eval)
    if not fits or not math.isfinite(fits[0].r2):
        return Finding(
            float("nan"),
            "R2 of the best feature alone",
            f"no feature, or a constant target on {len(evaluation)} evaluation rows",
        )
    best = fits[0]
    nxt = f"; next {fits[1].column} {fits[1].r2:.3f}" if len(fits) > 1 else ""
    return Finding(
        best.r2,
        f"R2 of {best.column} alone",
        f"{best.column} alone explains {best.r2:.1%} of the {'log ' if log else ''}target's variance on "
        f"{len(evaluation)} evaluation rows (its training rows' mean target per bin){nxt}; {len(fits)} features tried",
        reported={"second_best_r2": fits[1].r2} if len(fits) > 1 else {},
    )


@check(0, 1)
def feature_drift(
    train: pd.DataFrame, evaluation: pd.DataFrame, numeric: list[str], categorical: list[str], min_rows: int
) -> Finding:
    return drift_finding(figures.feature_drift(train, evaluation, numeric, categorical, min_rows), min_rows)


def drift_finding(drift: list[figures.Drift], min_rows: int) -> Finding:
    """feature_drift's finding from the per-column drift (worst first), whichever engine measured it."""
    if not drift:
        return Finding(float("nan"), "drift", f"no column has {min_rows} non-missing rows on both sides")
    worst = drift[0]
    return Finding(
        worst.statistic,
        f"drift of {worst.column}",
        f"worst column {worst.column} (p={worst.p_value:.3g}); {len(drift)} columns compared",
    )


# ---------------------------------------------------------------- metrics


@check(-INF, 1)
def r2(y: np.ndarray, p: np.ndarray) -> Finding:
    return Finding(figures.r2(y, p), "R2", f"{len(y)} evaluation rows")


# Error figures a threshold may bound relative to a baseline's (max_ratio_to_baseline): each
# check takes the baseline's predictions of the same rows and reports its figure and the ratio.
# The error figures a max_ratio_to_baseline bound may judge: over the baseline's figure.
BASELINE_GATES = ("mae", "rmse", "mape", "log_loss", "brier")
BASELINE = "the training target's median"
PRIOR = "the training rows' class shares"  # a classifier's baseline


def _against_baseline(
    name: str,
    label: str,
    metric: Callable[[np.ndarray, np.ndarray], float],
    y: np.ndarray,
    p: np.ndarray,
    baseline: np.ndarray | None,
    *,
    what: str = BASELINE,
    ratio: bool = True,
) -> Finding:
    """The metric on the evaluation rows, with the baseline's (`what`) beside it and, for an
    error figure (`ratio`), the figure over the baseline's."""
    try:
        value = float(metric(y, p))
    except ValueError as e:  # scikit-learn: e.g. only one class among the evaluation rows
        return Finding(float("nan"), label, f"{len(y)} evaluation rows: {str(e).splitlines()[0][:160]}")
    base = None if baseline is None else float(metric(y, baseline))
    return baseline_finding(name, label, value, base, len(y), what=what, ratio=ratio)


def baseline_finding(
    name: str, label: str, value: float, base: float | None, rows: int, *, what: str = BASELINE, ratio: bool = True
) -> Finding:
    """A metric's finding from its figure and the baseline's on the same `rows`, whichever engine computed them."""
    if base is None:
        return Finding(value, label, f"{rows} evaluation rows")
    if not ratio:
        return Finding(
            value,
            label,
            f"{rows} evaluation rows; baseline ({what}) {label} {fmt_number(base)}",
            reported={f"{name}_baseline": base},
            baseline=base,
        )
    over = value / base if base > 0 else float("nan")
    return Finding(
        value,
        label,
        f"{rows} evaluation rows; baseline ({what}) {label} {fmt_number(base)}, ratio {fmt_number(over)}",
        reported={f"{name}_baseline": base, f"{name}_ratio_to_baseline": over},
        baseline=base,
        baseline_ratio=over,
    )


@check(0)
def mae(y: np.ndarray, p: np.ndarray, baseline: np.ndarray | None = None) -> Finding:
    return _against_baseline("mae", "MAE", figures.mae, y, p, baseline)


@check(0)
def rmse(y: np.ndarray, p: np.ndarray, baseline: np.ndarray | None = None) -> Finding:
    return _against_baseline("rmse", "RMSE", figures.rmse, y, p, baseline)


@check(0)
def mape(y: np.ndarray, p: np.ndarray, baseline: np.ndarray | None = None) -> Finding:
    return _against_baseline("mape", "MAPE", figures.mape, y, p, baseline)


# ---------------------------------------------------------------- classifier metrics
#
# `y`: class codes; `p`: scores (checks.scores); `baseline`: the class prior's scores on the
# same rows (a model that learnt nothing); `threshold`: model.decision_threshold.


@check(0, 1)
def roc_auc(y: np.ndarray, p: np.ndarray) -> Finding:
    label = "ROC AUC (macro one-vs-rest)" if np.asarray(p).ndim == 2 else "ROC AUC"
    found = _against_baseline("roc_auc", label, figures.roc_auc, y, p, None)
    return replace(found, detail=found.detail + "; chance 0.5") if math.isfinite(found.value) else found


@check(0, 1)
def pr_auc(y: np.ndarray, p: np.ndarray) -> Finding:
    """Average precision; a constant score's is the positive share (multiclass: 1 / classes)."""
    found = _against_baseline("pr_auc", "average precision", figures.pr_auc, y, p, None)
    if not math.isfinite(found.value):
        return found
    y = np.asarray(y, int)
    chance = float(np.mean(y == 1)) if np.asarray(p).ndim == 1 else 1.0 / np.asarray(p).shape[1]
    return replace(
        found,
        detail=f"{found.detail}; chance (a constant score) {fmt_number(chance)}",
        reported={"pr_auc_chance": chance},
        baseline=chance,
    )


@check(0)
def log_loss(y: np.ndarray, p: np.ndarray, baseline: np.ndarray | None = None) -> Finding:
    return _against_baseline("log_loss", "log loss", figures.log_loss, y, p, baseline, what=PRIOR)


@check(0, 2)
def brier(y: np.ndarray, p: np.ndarray, baseline: np.ndarray | None = None) -> Finding:
    return _against_baseline("brier", "Brier score", figures.brier, y, p, baseline, what=PRIOR)


def _decided(name: str, label: str, metric: Callable[..., float], y, p, baseline, threshold: float) -> Finding:
    found = _against_baseline(
        name, label, lambda a, b: metric(a, b, threshold), y, p, baseline, what=PRIOR, ratio=False
    )
    at = f"decided at probability {fmt_number(threshold)}" if np.asarray(p).ndim == 1 else "the likeliest class"
    return replace(found, detail=f"{found.detail}; {at}")


@check(0, 1)
def accuracy(y: np.ndarray, p: np.ndarray, baseline: np.ndarray | None = None, threshold: float = 0.5) -> Finding:
    return _decided("accuracy", "accuracy", figures.accuracy, y, p, baseline, threshold)


@check(0, 1)
def balanced_accuracy(
    y: np.ndarray, p: np.ndarray, baseline: np.ndarray | None = None, threshold: float = 0.5
) -> Finding:
    return _decided("balanced_accuracy", "balanced accuracy", figures.balanced_accuracy, y, p, baseline, threshold)


@check(0, 1)
def f1(y: np.ndarray, p: np.ndarray, baseline: np.ndarray | None = None, threshold: float = 0.5) -> Finding:
    label = "F1 of the positive class" if np.asarray(p).ndim == 1 else "F1 (macro)"
    return _decided("f1", label, figures.f1, y, p, baseline, threshold)


# ---------------------------------------------------------------- calibration


@check(-1, 1)
def calibration_error(y: np.ndarray, p: np.ndarray, *, seed: int) -> Finding:
    c = figures.calibration(y, p, seed=seed)
    what = "positive probability" if np.asarray(p).ndim == 1 else "top-label confidence"
    return Finding(
        c.excess,
        "calibration error beyond chance",
        f"expected calibration error {c.ece:.4f} of the {what} in {c.bins} bins of ~{c.rows // c.bins} rows; "
        f"a calibrated model shows {c.chance:.4f} on as many rows by chance ({c.draws} simulations)",
        reported={"expected_calibration_error": c.ece, "chance_calibration_error": c.chance},
        plot={"reliability": [list(point) for point in c.curve]},
    )


@check(-INF, INF)
def calibration_slope(y: np.ndarray, p: np.ndarray, confidence: float = 0.95) -> Finding:
    try:
        line = figures.calibration_line(y, p, confidence)
    except Exception as e:  # statsmodels: a perfect separation, a single class
        return Finding(float("nan"), "calibration slope", f"the recalibration fit failed: {type(e).__name__}: {e}")
    return Finding(
        line.slope,
        "calibration slope",
        f"{confidence:.0%} interval [{line.slope_lower:.3f}, {line.slope_upper:.3f}]; calibration in the large "
        f"(intercept at slope 1) {line.in_the_large:+.3f} on {len(y)} rows",
        reported={
            "slope_lower": line.slope_lower,
            "slope_upper": line.slope_upper,
            "calibration_in_the_large": line.in_the_large,
        },
    )


# ---------------------------------------------------------------- champion


# How the champion gates judge the paired bootstrap of the relative loss change (MAE, log
# loss), candidate vs champion: the bound each reads, and how its message names it.
CHAMPION_TESTS = {
    # At most `margin` worse, shown with confidence: the upper bound must be within the margin.
    "non_inferiority": ("upper", "{loss} change vs champion, upper bound"),
    # Fails only when confidently worse than the margin: a noisy, probably worse model passes.
    "not_confidently_worse": ("lower", "{loss} worse than champion by at least"),
}


def champion_finding(
    name: str, loss: str, boot: figures.Bootstrap, *, champion: str, rows: int, max_rows: int, test: str
) -> Finding:
    bound, label = CHAMPION_TESTS[test]
    confidence = boot.confidence
    judged = boot.upper if bound == "upper" else boot.lower
    detail = (
        f"{test.replace('_', '-')} vs {champion}: {loss} change {boot.delta:+.2%}, {confidence:.0%} one-sided bounds "
        f"[{boot.lower:+.2%}, {boot.upper:+.2%}] on {rows} rows"
        + (f", {max_rows} rows per resample" if rows > max_rows else "")
    )
    return Finding(
        judged,
        label.format(loss=loss),
        detail,
        reported={f"{name}_change": boot.delta, f"{name}_lower": boot.lower, f"{name}_upper": boot.upper},
        plot={
            "samples": boot.samples.tolist(),
            "delta": boot.delta,
            "lower": boot.lower,
            "upper": boot.upper,
            "bound": bound,
            "test": test,
            "confidence": confidence,
            "champion": champion,
        },
    )


@check(-1)
def champion_mae(
    y: np.ndarray,
    p: np.ndarray,
    champion_p: np.ndarray,
    *,
    champion: str,
    resamples: int,
    confidence: float,
    seed: int,
    max_rows: int,
    test: str = "non_inferiority",
) -> Finding:
    """The paired-bootstrap relative MAE change, candidate vs champion, judged by `test`
    (CHAMPION_TESTS): its upper confidence bound (non-inferiority) or its lower bound."""
    boot = figures.paired_bootstrap_mae(
        y, p, champion_p, resamples=resamples, confidence=confidence, seed=seed, max_rows=max_rows
    )
    return champion_finding("champion_mae", "MAE", boot, champion=champion, rows=len(y), max_rows=max_rows, test=test)


@check(-1)
def champion_log_loss(
    y: np.ndarray,
    p: np.ndarray,
    champion_p: np.ndarray,
    *,
    champion: str,
    resamples: int,
    confidence: float,
    seed: int,
    max_rows: int,
    test: str = "non_inferiority",
) -> Finding:
    """The paired-bootstrap relative log-loss change of a classifier, candidate vs champion,
    judged as champion_mae is."""
    boot = figures.paired_bootstrap_loss(
        figures.row_log_loss(y, p),
        figures.row_log_loss(y, champion_p),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        max_rows=max_rows,
    )
    return champion_finding(
        "champion_log_loss", "log loss", boot, champion=champion, rows=len(y), max_rows=max_rows, test=test
    )


def champion_absent(alias: str, test: str = "non_inferiority", loss: str = "MAE") -> Finding:
    """The champion gate's finding when no model holds the alias: nothing to compare with."""
    return Finding(
        float("nan"), CHAMPION_TESTS[test][1].format(loss=loss), f"no model holds @{alias}: nothing to compare with"
    )


# ---------------------------------------------------------------- slices


# The family-wise error rate for "this slice's errors are larger than the other rows'" over all
# slices of one run (Holm's step-down correction keeps it at this level).
SLICE_ALPHA = 0.05


@check(0)
def slice_error(
    frame: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    *,
    columns: list[str],
    target: str,
    target_bands: list[float],
    min_rows: int,
    metric: str,
    band_by: str = "prediction",
    min_positives: int | None = None,
) -> Finding:
    """Worst slice's loss over the overall loss (figures.row_loss of `metric`)."""
    found = figures.slice_errors(frame, y, p, columns, target, target_bands, min_rows, metric, band_by, min_positives)
    return slices_finding(found, columns=columns, min_rows=min_rows, metric=metric, min_positives=min_positives)


def slices_finding(
    found: figures.Slices, *, columns: list[str], min_rows: int, metric: str, min_positives: int | None
) -> Finding:
    """slice_error's finding from the judged slices, whichever engine measured them."""
    slices = found.judged
    label = LOSS_LABELS.get(metric, metric)
    left_out = (
        f"; {found.few_positives} slice{'s' if found.few_positives != 1 else ''} of {min_rows} rows or more not judged: "
        f"fewer than {min_positives} positives"
        if found.few_positives
        else ""
    )
    if not slices:
        return Finding(
            float("nan"),
            f"worst slice {label} / overall {label}",
            f"no slice of {columns} or target bands has {min_rows} rows or more"
            + (f" and {min_positives} positives" if min_positives is not None else "")
            + left_out,
        )
    worst = slices[0]
    worse = [s for s in slices if s.p_holm < SLICE_ALPHA]
    named = "".join(f"{', ' if i else ': '}{s.column}={s.value} (x{s.ratio:.2f})" for i, s in enumerate(worse[:3])) + (
        ", ..." if len(worse) > 3 else ""
    )
    detail = (
        f"worst slice {worst.column}={worst.value} ({worst.rows} rows, {label} {worst.error:,.4g}, Holm-adjusted p {worst.p_holm:.2g}); "
        f"{len(slices)} slices judged, the smallest of {min(s.rows for s in slices)} rows; {len(worse)} with errors larger than "
        f"the other rows' at Holm-adjusted p < {SLICE_ALPHA:g} (one-sided Welch t-tests){named}{left_out}"
    )
    return Finding(
        worst.ratio,
        f"worst slice {label} / overall {label}",
        detail,
        reported={
            "slices_judged": float(len(slices)),
            "slices_significantly_worse": float(len(worse)),
            **({"slices_few_positives": float(found.few_positives)} if min_positives is not None else {}),
        },
        plot={"metric": metric, "slices": [[s.column, s.value, s.rows, s.ratio] for s in slices]},
    )


# ---------------------------------------------------------------- residuals


@dataclass(frozen=True)
class ResidualSample:
    """Residuals on the judged scale for a bounded, seeded sample of rows, in data order."""

    resid: np.ndarray
    pred: np.ndarray  # predictions on the judged scale
    y: np.ndarray  # truth and predictions of the same rows, on the target's own scale
    p: np.ndarray
    scale: str
    censored: int = 0  # rows left out: their observed target at a censoring point

    def rows(self) -> str:
        """How many rows the figure is of, for a message."""
        return f"{len(self.resid)} rows" + (f" ({self.censored} censored rows left out)" if self.censored else "")

    def plot(self) -> dict[str, Any]:
        return {
            "y": self.y.tolist(),
            "p": self.p.tolist(),
            "resid": self.resid.tolist(),
            "pred": self.pred.tolist(),
            "scale": self.scale,
        }


def in_order(frame: pd.DataFrame, order_by: list[str] | tuple[str, ...] | None) -> np.ndarray:
    """Positions of `frame`'s rows sorted by the columns `order_by` (stable: ties keep the
    file's order); the file's order when there are none. What residual_autocorrelation reads along."""
    if not order_by:
        return np.arange(len(frame))
    return frame.reset_index(drop=True).sort_values(list(order_by), kind="mergesort").index.to_numpy()


def residual_sample(
    y: np.ndarray, p: np.ndarray, scale: str, sample_size: int, seed: int, censored: Any = None
) -> ResidualSample:
    """`censored` (a Range, gates.residuals.censored): rows whose observed target is at or
    beyond its min or max are left out first, their error unknown."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    kept = np.ones(len(y), dtype=bool)
    if censored is not None and censored.max is not None:
        kept &= y < censored.max
    if censored is not None and censored.min is not None:
        kept &= y > censored.min
    y, p = y[kept], p[kept]
    at = sample_positions(len(y), sample_size, seed)
    return residuals_of(y[at], p[at], scale, censored=int((~kept).sum()))


def residuals_of(y: np.ndarray, p: np.ndarray, scale: str, censored: int = 0) -> ResidualSample:
    """The ResidualSample of rows already sampled (`censored`: how many were left out before)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    resid = figures.residuals(y, p, scale)
    pred = np.log(p) if scale == "log" else p
    return ResidualSample(resid, pred, y, p, scale, censored=censored)


@check(0)
def residual_skew(sample: ResidualSample) -> Finding:
    n = figures.normality(sample.resid)
    return Finding(
        abs(n.skew),
        "|residual skew|",
        f"Jarque-Bera p={n.jb_p_value:.3g}; {sample.rows()}",
        reported={"residual_skew_signed": n.skew},
        plot=sample.plot(),
    )


@check(-2)
def residual_kurtosis(sample: ResidualSample) -> Finding:
    n = figures.normality(sample.resid)
    return Finding(n.excess_kurtosis, "residual excess kurtosis", f"Jarque-Bera p={n.jb_p_value:.3g}; {sample.rows()}")


@check(1)
def residual_spread(sample: ResidualSample) -> Finding:
    s = figures.spread(sample.resid, sample.pred)
    return Finding(
        s.ratio,
        "residual spread ratio",
        f"top decile {s.top:.4g}, bottom decile {s.bottom:.4g}; Breusch-Pagan p={s.bp_p_value:.3g}"
        + (f"; {sample.rows()}" if sample.censored else ""),
    )


@check(0, 4)
def residual_autocorrelation(sample: ResidualSample, order: str = "the data's order") -> Finding:
    a = figures.autocorrelation(sample.resid)
    return Finding(
        a.durbin_watson,
        "Durbin-Watson",
        f"Ljung-Box p={a.ljung_box_p_value:.3g} at lag {a.lags}, {len(sample.resid)} rows ordered by {order}",
    )


# ---------------------------------------------------------------- robustness (one hypothesis example each)


@check(0)
def noise_stability(
    before: np.ndarray, after: np.ndarray, *, percentile: float, spec: Any, absolute: bool = False
) -> Finding:
    """How far the noise moved each row's answer: relative to it, or (`absolute`: a classifier's
    probabilities) in probability, the class that moved most."""
    change = (
        np.abs(np.asarray(after, float) - np.asarray(before, float)).reshape(len(before), -1).max(axis=1)
        if absolute
        else figures.relative_change(before, after)
    )
    cols = getattr(spec, "columns", None)
    what = (
        (
            f"{len(change)} rows, noise sd {spec.how} on "
            + (cols[0] if len(cols) == 1 else f"{len(cols)} numeric columns")
        )
        if cols
        else str(spec)
    )
    return Finding(
        float(np.percentile(change, percentile)),
        f"p{percentile:g} {'probability' if absolute else 'relative prediction'} change",
        f"max {change.max():.3g}; {what}",
        reported={"max_single_row_change": float(change.max())},
    )


def _nonfinite(predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame, spec: Any) -> Finding:
    try:
        bad = int((~np.isfinite(predict(rows))).sum())
    except Exception as e:  # a model that refuses the input fails the gate, with the reason
        return Finding(
            len(rows),
            "non-finite predictions",
            f"predict raised {type(e).__name__}: {str(e).splitlines()[0][:150]}; {spec}",
        )
    return Finding(bad, "non-finite predictions", f"{spec}")


@check(0)
def missing_values(predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame, spec: Any) -> Finding:
    return _nonfinite(predict, rows, spec)


@check(0)
def unseen_categories(predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame, spec: Any) -> Finding:
    return _nonfinite(predict, rows, spec)


def scores(model: Any, X: pd.DataFrame) -> np.ndarray:
    """What the gates judge of a model's answer for the rows X: a regressor's predictions; a
    classifier's probabilities, of the positive class (code 1) for a binary one, one column
    per class (codes 0, 1, ...) for a multiclass one."""
    if getattr(model, "classes_", None) is None:  # sklearn's classifiers (and their pipelines) have classes_
        return np.asarray(model.predict(X), dtype=float)
    return as_scores(model.predict_proba(X))


def as_scores(answer: Any) -> np.ndarray:
    """A classifier's probabilities as `scores` gives them (the in-process model's, a pyfunc's
    or a served one's: one column per class): a binary one's positive column alone."""
    p = np.asarray(answer, dtype=float)
    return p[:, 1] if p.ndim == 2 and p.shape[1] == 2 else p


def _difference(label: str, reference: np.ndarray, again: Callable[[], np.ndarray], detail: str) -> Finding:
    try:
        diff = figures.answer_difference(reference, np.asarray(again(), float))
    except Exception as e:
        return Finding(INF, label, f"predict raised {type(e).__name__}: {str(e).splitlines()[0][:150]}; {detail}")
    return Finding(diff.value, label, detail + diff.note())


@check(0)
def column_order(model: Any, rows: pd.DataFrame, reference: np.ndarray, seed: int) -> Finding:
    order = list(np.random.default_rng(seed).permutation(rows.columns))
    return _difference(
        "max prediction difference after reordering columns",
        reference,
        lambda: scores(model, rows[order]),
        f"permutation seed {seed}; {len(rows)} rows",
    )


@check(0)
def wider_dtypes(model: Any, wider: pd.DataFrame, reference: np.ndarray, spec: Any) -> Finding:
    return _difference(
        "max prediction difference with wider dtypes",
        reference,
        lambda: scores(model, wider),
        f"{spec}; {len(wider)} rows",
    )


@check(0)
def directional(
    before: np.ndarray, after: np.ndarray, *, direction: str, feature: str, spec: Any, absolute: bool = False
) -> Finding:
    """How far predictions moved against the expected direction (worst row): relative to
    themselves, or (`absolute`: a binary classifier's positive probability) in probability."""
    sign = 1 if direction == "increasing" else -1
    against = np.maximum(0.0, -sign * (np.asarray(after, float) - np.asarray(before, float)))
    if not absolute:
        against = against / np.abs(before)
    what = "probability drop" if absolute else "prediction drop"
    return Finding(float(against.max()), f"{what} against {direction} {feature}", f"{spec}")


# ---------------------------------------------------------------- determinism


@check(0)
def refit_identical(
    model: Any, X: pd.DataFrame, y: pd.Series, rows: pd.DataFrame, reference: np.ndarray, *, refit_rows: int, seed: int
) -> Finding:
    """Fits of clones of `model` on the same rows with the same seed predict the same.

    `X`, `y`: the training rows; `reference`: the model's own predictions of `rows`. With at
    most 2 x refit_rows training rows, one refit on all of them is compared with the model
    itself: it costs no more than two refits on a sample, and answers more (the model is what
    its own fit gives). When they differ, that may be a fit that does not repeat or a model
    fitted on other rows or in another way: a second refit on the same rows tells which, as
    does the two-refit comparison on a seeded sample of refit_rows where the rows are more.
    """
    from sklearn.base import clone

    def fitted_predict(Xf: pd.DataFrame, yf: pd.Series) -> np.ndarray:
        return scores(clone(model).fit(Xf, yf), rows)

    label, note = "max prediction difference between two refits", ""
    if len(X) <= 2 * refit_rows:
        fit_X, fit_y = X, y
        try:
            first = fitted_predict(X, y)
        except Exception as e:
            return Finding(INF, label, f"fit or predict raised {type(e).__name__}: {str(e).splitlines()[0][:150]}")
        itself = figures.answer_difference(reference, first)
        if itself.value == 0:
            return Finding(
                0.0,
                "max prediction difference between the model and its refit",
                f"a refit on all {len(X)} training rows with the same seed reproduces the model on {len(rows)} rows"
                + itself.note(),
            )
        note = (
            f"; the model itself is {itself.value:.6g} from the first refit (fitted on other rows or in another way: "
            "what a second refit says decides)"
        )
    else:
        # The positions DataFrame.sample(n=refit_rows, random_state=seed) takes of the rows.
        at = pd.RangeIndex(len(X)).to_series().sample(n=refit_rows, random_state=seed).to_numpy()
        fit_X, fit_y = X.iloc[at], y.iloc[at]
        try:
            first = fitted_predict(fit_X, fit_y)
        except Exception as e:
            return Finding(INF, label, f"fit or predict raised {type(e).__name__}: {str(e).splitlines()[0][:150]}")
    return _difference(
        label,
        first,
        lambda: fitted_predict(fit_X, fit_y),
        f"two refits on {len(fit_X)} rows with the same seed, compared on {len(rows)} rows{note}",
    )


@check(0)
def predict_twice_identical(model: Any, rows: pd.DataFrame, reference: np.ndarray) -> Finding:
    return _difference(
        "max prediction difference between two predicts",
        reference,
        lambda: scores(model, rows),
        f"{len(rows)} rows predicted again",
    )


@check(0)
def mlflow_roundtrip_identical(reloaded: Any, rows: pd.DataFrame, reference: np.ndarray, how: str) -> Finding:
    return _difference(
        "max prediction difference after an MLflow save and load",
        reference,
        lambda: as_scores(reloaded.predict(rows)),
        f"{how}; {len(rows)} rows",
    )


@check(0)
def batch_independent(model: Any, rows: pd.DataFrame, reference: np.ndarray, seed: int) -> Finding:
    """The same rows asked in another order and in uneven chunks answer the same."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    order = rng.permutation(n)

    def shuffled() -> np.ndarray:
        out = np.empty(reference.shape)
        out[order] = scores(model, rows.iloc[order])
        return out

    cuts = np.sort(rng.choice(np.arange(1, n), size=min(7, n - 1), replace=False)) if n > 1 else np.array([], int)
    bounds = [0, *cuts.tolist(), n]

    def chunked() -> np.ndarray:
        return np.concatenate([scores(model, rows.iloc[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])

    label, detail = (
        "max prediction difference across batch compositions and row order",
        f"{n} rows shuffled, and predicted in uneven chunks",
    )
    a, b = _difference(label, reference, shuffled, detail), _difference(label, reference, chunked, detail)
    return a if a.value >= b.value else b


# ---------------------------------------------------------------- latency
#
# A timing gate judges an interval, not one number: the rounds are resampled (bootstrap), and a
# bound holds when the whole interval is on its good side, is violated when the whole interval
# is beyond it, and is undecided when the interval straddles it. Load only ever adds time, so a
# bound that holds on a busy machine holds; one violated there is the model's only if it is still
# violated with the time the calls waited for a core taken out (pipeline.timing: measured by the
# kernel, or estimated from a reference workload timed between the model's rounds); otherwise
# the outcome is "inconclusive", never "passed".

# Gates whose threshold may bound the ratio to the reference workload (max_ratio_to_reference).
REFERENCE_GATES = ("single_row_latency",)


def _timing_figures(
    rounds: Rounds, q: float, scale: float, confidence: float, seed: int, invert: float | None = None
) -> tuple[float, dict[str, float]]:
    """The q-th percentile of the rounds (x scale; or `invert` / it, for a rate) with its
    interval (`interval_lower`, `interval_upper`), the same of the unwaited rounds
    (Rounds.unwaited: `unwaited_lower`, `unwaited_upper`), and, in reference units (over the
    reference workload's median CPU time), all of them again (`ratio_to_reference`, `ratio_*`)."""
    ref_cpu = float(np.median(rounds.reference_cpu))
    out: dict[str, float] = {}
    point = float("nan")
    for kind, times in (("interval", rounds.candidate), ("unwaited", rounds.unwaited())):
        iv, _ = figures.timing_intervals(
            times, rounds.reference_cpu, q=q, paired_q=50, confidence=confidence, seed=seed
        )
        for unit, div in (("", 1.0 / scale), ("ratio_", ref_cpu)):
            value, lower, upper = iv.value / div, iv.lower / div, iv.upper / div
            if invert is not None:  # a rate: the slowest time is the lowest rate
                # (an unwaited time can be 0 where the kernel's wait reading exceeds the call's
                # window on a crowded machine: its rate is unbounded, not an error)
                value, lower, upper = (invert / t if t > 0 else INF for t in (value, upper, lower))
            out[f"{unit}{kind}_lower"], out[f"{unit}{kind}_upper"] = lower, upper
            if kind == "interval" and unit:
                out["ratio_to_reference"] = value
            elif kind == "interval":
                point = value
    out.update(_machine(rounds))
    return point, out


def _machine(rounds: Rounds) -> dict[str, float]:
    return {
        "reference_p50_ms": float(np.median(rounds.reference)) * 1000,
        "reference_cpu_p50_ms": float(np.median(rounds.reference_cpu)) * 1000,
        "reference_stretch": rounds.stretch,
        "wait_share": rounds.wait_share,
        "wait_measured": float(rounds.candidate_wait is not None),
    }


def _reference_text(r: Mapping[str, float]) -> str:
    how = "" if r.get("wait_measured", 1.0) else " (estimated from the reference)"
    return (
        f"waited for a core {r['wait_share']:.0%} of the time{how}; "
        f"reference workload CPU p50 {r['reference_cpu_p50_ms']:.2f} ms, wall/CPU p90 {r['reference_stretch']:.2f}"
    )


@check(0)
def single_row_latency(rounds: Rounds, *, confidence: float = 0.95, seed: int = 0) -> Finding:
    """Single-row p99 (ms) and p99 in reference units, with their intervals (timing.Rounds in seconds)."""
    p99, rep = _timing_figures(rounds, 99, 1000.0, confidence, seed)
    p50 = float(np.percentile(rounds.candidate, 50)) * 1000
    detail = (
        f"p50 {p50:.2f} ms over {len(rounds.candidate)} single-row predicts; p99 {rep['ratio_to_reference']:.2f}x "
        f"the reference; {_reference_text(rep)}; intervals at {confidence:.0%}"
    )
    return Finding(
        p99,
        "single-row p99",
        detail,
        reported={"single_row_p50_ms": p50, **rep},
        judged_on="interval",
        plot={"latency_ms": (rounds.candidate * 1000).tolist(), "reference_ms": (rounds.reference * 1000).tolist()},
    )


@check(0)
def batch_throughput(rounds: Rounds, rows: int, *, confidence: float = 0.95, seed: int = 0) -> Finding:
    """Rows per second of the median batch predict, with its interval (timing.Rounds in seconds)."""
    rate, rep = _timing_figures(rounds, 50, 1.0, confidence, seed, invert=float(rows))
    rep = {k: v for k, v in rep.items() if not k.startswith("ratio_")}  # a rate has no bound in reference units
    detail = (
        f"median {float(np.median(rounds.candidate)) * 1000:.1f} ms per {rows}-row batch over {len(rounds.candidate)} batches; "
        f"{_reference_text(rep)}; interval at {confidence:.0%}"
    )
    return Finding(rate, "batch throughput", detail, reported=rep, judged_on="interval")


@check(0)
def latency_vs_champion(rounds: Rounds, *, champion: str, confidence: float = 0.95, seed: int = 0) -> Finding:
    """The median over rounds of the candidate's single-row time over the champion's, timed in the
    same round on the same row (timing.Rounds with `other`: the champion's seconds), each with
    the time its call waited for a core taken out: what the two would measure on an idle machine."""
    cand, champ = rounds.unwaited(), rounds.other_unwaited()
    ratio = figures.paired_ratio(cand, champ, confidence=confidence, seed=seed)
    c, h = float(np.median(cand)) * 1000, float(np.median(champ)) * 1000
    ref = _machine(rounds)
    detail = (
        f"p50 {c:.2f} ms vs {h:.2f} ms of {champion} without the waiting for a core, interleaved over {len(rounds.candidate)} "
        f"single-row predicts of the same rows; "
        f"{_reference_text(ref)}; interval at {confidence:.0%}"
    )
    return Finding(
        ratio.value,
        "median time over the champion's",
        detail,
        reported={
            "interval_lower": ratio.lower,
            "interval_upper": ratio.upper,
            "single_row_p50_ms": c,
            "champion_p50_ms": h,
            **ref,
        },
        judged_on="paired_interval",
    )


# ---------------------------------------------------------------- serving


@check(0)
def serving_matches_in_process(reference: np.ndarray, answered: np.ndarray) -> Finding:
    diff = figures.answer_difference(reference, answered)
    return Finding(
        diff.value,
        "max difference between served and in-process predictions",
        f"{len(answered)} rows over HTTP vs in process{diff.note()}",
    )


@check(0)
def serving_rejects_malformed(statuses: Mapping[str, int]) -> Finding:
    """How many malformed requests were not answered 4xx (name -> HTTP status)."""
    bad = {k: v for k, v in statuses.items() if not 400 <= v < 500}
    return Finding(
        len(bad), "malformed requests not answered 4xx", f"{len(statuses)} malformed requests; not 4xx: {bad or 'none'}"
    )


@check(0)
def serving_latency(times_ms: np.ndarray) -> Finding:
    times_ms = np.asarray(times_ms, float)
    p99, p50 = float(np.percentile(times_ms, 99)), float(np.percentile(times_ms, 50))
    return Finding(
        p99,
        "served single-row p99",
        f"p50 {p50:.1f} ms over {len(times_ms)} single-row HTTP requests on loopback",
        reported={"serving_p50_ms": p50},
    )

"""Figures: pure functions from predictions and frames to the numbers the gates judge.

Nothing here knows about pytest or MLflow.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm  # 0.1 s beside scipy, which this module loads anyway

# statsmodels (0.12 s on top of this module) is imported inside the slice and residual tests: pytest
# loads the plugin, which imports pipeline.checks and so this module, in every session (pytest11), gates or not.


def r2(y: np.ndarray, p: np.ndarray) -> float:
    y, p = np.asarray(y, float), np.asarray(p, float)
    ss_res = float(np.sum((y - p) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(p, float))))


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, float) - np.asarray(p, float)) ** 2)))


def mape(y: np.ndarray, p: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    return float(100.0 * np.mean(np.abs(y - p) / np.abs(y)))


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"r2": r2(y, p), "mae": mae(y, p), "rmse": rmse(y, p), "mape": mape(y, p)}


def eval_metrics(y: np.ndarray, p: np.ndarray, classifier: bool, threshold: float = 0.5) -> dict[str, float]:
    """The figures logged with a candidate (eval_<name> in MLflow): a regressor's or a classifier's."""
    return classifier_metrics(y, p, threshold) if classifier else regression_metrics(y, p)


def metrics_line(m: dict[str, float]) -> str:
    """The candidate's headline figures on one line."""
    if "r2" in m:
        return f"R2 {m['r2']:.4f}  MAE {m['mae']:,.0f}  RMSE {m['rmse']:,.0f}  MAPE {m['mape']:.2f} %"
    return f"ROC AUC {m['roc_auc']:.4f}  log loss {m['log_loss']:.4f}  accuracy {m['accuracy']:.4f}  F1 {m['f1']:.4f}"


# ---------------------------------------------------------------- classifiers
#
# A classifier's evaluation rows: `y` the class codes (0, 1, ...); `p` its scores as
# checks.scores gives them (binary: the positive class's probability; multiclass: one column
# per class). Every figure is scikit-learn's own function on them.


def class_probabilities(p: np.ndarray) -> np.ndarray:
    """One column per class: a binary model's positive-class scores with their complement."""
    p = np.asarray(p, float)
    return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p


def decisions(p: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The class each row is decided as: binary, positive at `threshold` or above; multiclass,
    the likeliest class."""
    p = np.asarray(p, float)
    return (p >= threshold).astype(int) if p.ndim == 1 else p.argmax(axis=1)


def _classes(p: np.ndarray) -> list[int]:
    return list(range(class_probabilities(p[:1]).shape[1]))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC; multiclass, the macro mean of one-vs-rest AUCs."""
    if np.asarray(p).ndim == 1:
        return float(skm.roc_auc_score(y, p))
    return float(skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=_classes(p)))


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (the PR curve's area as MLflow reports it); multiclass, the macro mean
    of one-vs-rest."""
    if np.asarray(p).ndim == 1:
        return float(skm.average_precision_score(y, p))
    onehot = np.eye(len(_classes(p)))[np.asarray(y, int)]
    return float(skm.average_precision_score(onehot, p, average="macro"))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(skm.log_loss(y, class_probabilities(p), labels=_classes(p)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Brier score: binary, the mean squared error of the positive probability (0 to 1);
    multiclass, the mean over rows of the squared distance to the one-hot truth (0 to 2)."""
    if np.asarray(p).ndim == 1:
        return float(skm.brier_score_loss(y, p))
    return float(skm.brier_score_loss(y, p, labels=_classes(p)))


def accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    return float(skm.accuracy_score(y, decisions(p, threshold)))


def balanced_accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    return float(skm.balanced_accuracy_score(y, decisions(p, threshold)))


def f1(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of the positive class at `threshold`; multiclass, the macro mean over classes."""
    if np.asarray(p).ndim == 1:
        return float(skm.f1_score(y, decisions(p, threshold), zero_division=0.0))
    return float(skm.f1_score(y, decisions(p), average="macro", labels=_classes(p), zero_division=0.0))


def classifier_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    return {
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "log_loss": log_loss(y, p),
        "brier": brier(y, p),
        "accuracy": accuracy(y, p, threshold),
        "balanced_accuracy": balanced_accuracy(y, p, threshold),
        "f1": f1(y, p, threshold),
    }


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error of `rows` rows in `bins` bins of equal size, and what a
    perfectly calibrated model with the same probabilities shows by chance on as many rows
    (`chance`: the mean over `draws` seeded simulations of its outcomes); `excess` = ece - chance.
    `curve`: per bin, the mean probability, the observed frequency and the rows."""

    ece: float
    chance: float
    excess: float
    rows: int
    bins: int
    draws: int
    curve: list[tuple[float, float, int]]


ROWS_PER_CALIBRATION_BIN = 20  # fewer bins on few rows: a bin's frequency needs rows to mean anything


def calibration(y: np.ndarray, p: np.ndarray, *, bins: int = 10, draws: int = 200, seed: int = 0) -> Calibration:
    """Binary: the positive probability against the positive frequency; multiclass, the
    top-label confidence against the share of rows whose likeliest class is right. Bins of equal
    row counts (sorted by probability), at most one per ROWS_PER_CALIBRATION_BIN rows."""
    y, p = np.asarray(y), np.asarray(p, float)
    if p.ndim == 1:
        conf, hit = p, (y == 1).astype(float)
    else:
        conf, hit = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    n = len(conf)
    order = np.argsort(conf, kind="stable")
    k = max(1, min(bins, n // ROWS_PER_CALIBRATION_BIN))
    groups = np.array_split(order, k)
    which = np.empty(n, dtype=int)
    for b, g in enumerate(groups):
        which[g] = b
    counts = np.bincount(which, minlength=k)
    mean_conf = np.bincount(which, weights=conf, minlength=k) / counts

    def ece(outcome: np.ndarray) -> np.ndarray:  # outcome: (n,) or (draws, n)
        freq = np.apply_along_axis(lambda o: np.bincount(which, weights=o, minlength=k), -1, outcome) / counts
        return np.sum(counts * np.abs(freq - mean_conf), axis=-1) / n

    observed = float(ece(hit))
    simulated = (np.random.default_rng(seed).random((draws, n)) < conf).astype(float)
    chance = float(np.mean(ece(simulated)))
    freq = np.bincount(which, weights=hit, minlength=k) / counts
    curve = [(float(c), float(f), int(m)) for c, f, m in zip(mean_conf, freq, counts)]
    return Calibration(observed, chance, observed - chance, n, k, draws, curve)


@dataclass(frozen=True)
class CalibrationLine:
    """Logistic recalibration of a binary model: logit P(y) = intercept + slope * logit(p).
    1 and 0 when calibrated; a slope below 1, probabilities too extreme (over-confident).
    `in_the_large`: the intercept with the slope held at 1 (mean probability vs frequency)."""

    slope: float
    slope_lower: float
    slope_upper: float
    in_the_large: float


def calibration_line(y: np.ndarray, p: np.ndarray, confidence: float = 0.95) -> CalibrationLine:
    import statsmodels.api as sm  # 0.5 s: only where a binary model's calibration is judged

    y = np.asarray(y, float)
    eps = 1e-12
    logit = np.log(np.clip(p, eps, 1 - eps) / np.clip(1 - np.asarray(p, float), eps, 1 - eps))
    fitted = sm.GLM(y, sm.add_constant(logit, has_constant="add"), family=sm.families.Binomial()).fit()
    lower, upper = fitted.conf_int(alpha=1 - confidence)[1]
    offset = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=logit).fit()
    return CalibrationLine(float(fitted.params[1]), float(lower), float(upper), float(offset.params[0]))


@dataclass(frozen=True)
class Drift:
    column: str
    statistic: float
    p_value: float


def feature_drift(
    train: pd.DataFrame, evaluation: pd.DataFrame, numeric: list[str], categorical: list[str], min_rows: int = 20
) -> list[Drift]:
    """Per-column shift between two frames, worst first.

    Numeric columns: two-sample Kolmogorov-Smirnov statistic. Categorical columns: total
    variation distance between the category shares (the same 0..1 scale), with a
    chi-square p-value beside it.
    """
    out: list[Drift] = []
    for col in numeric:
        a, b = train[col].dropna().to_numpy(), evaluation[col].dropna().to_numpy()
        if len(a) < min_rows or len(b) < min_rows:
            continue
        res = stats.ks_2samp(a, b)
        out.append(Drift(col, float(res.statistic), float(res.pvalue)))
    for col in categorical:
        a = train[col].fillna("<missing>").value_counts()
        b = evaluation[col].fillna("<missing>").value_counts()
        out.append(category_drift(col, a, b))
    return sorted(out, key=lambda d: d.statistic, reverse=True)


def category_drift(column: str, train_counts: pd.Series, eval_counts: pd.Series) -> Drift:
    """Total variation distance between two sides' category shares (counts by category), with a
    chi-square p-value beside it."""
    table = pd.concat([train_counts, eval_counts], axis=1).fillna(0).to_numpy()
    shares = table / table.sum(axis=0)
    tvd = 0.5 * float(np.abs(shares[:, 0] - shares[:, 1]).sum())
    try:
        p = float(stats.chi2_contingency(table + 0.5).pvalue)
    except ValueError:
        p = float("nan")
    return Drift(column, tvd, p)


def ks_from_groups(
    column: str,
    train_sorted: np.ndarray,
    distinct: np.ndarray,
    groups: dict[int, tuple[float, int, int]],
    n_eval: int,
    p_value: Callable[[int, int, float, float], tuple[float, float]],
) -> Drift:
    """The two-sample Kolmogorov-Smirnov statistic of the training values (`train_sorted`, their
    `distinct` values) against evaluation values known only by group: group k holds the values
    v with searchsorted(distinct, v, 'right') == k, given as (smallest value, count, how many
    equal the smallest). The differences of the two distribution functions are scipy's at every
    value of either side (cdf(x) = #values <= x / n), so the statistic is ks_2samp's;
    `p_value(n1, n2, largest, smallest difference)` gives (statistic, p-value)."""
    n1, k_max = len(train_sorted), len(distinct)
    at_or_below = np.searchsorted(train_sorted, distinct, side="right")  # training values <= each distinct value
    counts = np.zeros(k_max + 1, dtype=np.int64)
    lowest = np.full(k_max + 1, np.nan)
    ties = np.zeros(k_max + 1, dtype=np.int64)
    for k, (lo, n, t) in groups.items():
        counts[k], lowest[k], ties[k] = n, lo, t
    cum = np.cumsum(counts)
    before = np.concatenate([[0], cum[:-1]])
    train_cdf = np.concatenate([[0], at_or_below])  # cdf of the training values inside group k
    present = counts > 0
    diffs = [
        train_cdf[present] / n1 - (before[present] + ties[present]) / n_eval,
        train_cdf[present] / n1 - cum[present] / n_eval,
    ]
    equal = np.where(lowest[1:] == distinct, ties[1:], 0)  # evaluation values equal to each distinct training value
    diffs.append(at_or_below / n1 - (cum[:-1] + equal) / n_eval)
    every = np.concatenate(diffs)
    d, p = p_value(n1, n_eval, float(every.max()), float(every.min()))
    return Drift(column, d, p)


def shared_rows(train: pd.DataFrame, evaluation: pd.DataFrame, columns: list[str]) -> int:
    """How many evaluation rows also occur, value for value, in the training rows."""
    h_train = set(pd.util.hash_pandas_object(train[columns], index=False).to_numpy().tolist())
    h_eval = pd.util.hash_pandas_object(evaluation[columns], index=False).to_numpy()
    return int(sum(1 for h in h_eval.tolist() if h in h_train))


@dataclass(frozen=True)
class Bootstrap:
    """Paired bootstrap of the relative loss difference (candidate - champion) / champion."""

    delta: float  # observed relative difference
    lower: float  # lower bound of the one-sided interval at `confidence`
    upper: float
    confidence: float
    samples: np.ndarray


def paired_bootstrap_mae(
    y: np.ndarray,
    p_candidate: np.ndarray,
    p_champion: np.ndarray,
    resamples: int,
    confidence: float,
    seed: int,
    max_rows: int | None = None,
) -> Bootstrap:
    """Relative MAE change candidate vs champion on the same rows, with a paired bootstrap interval."""
    y = np.asarray(y, float)
    return paired_bootstrap_loss(
        np.abs(y - np.asarray(p_candidate, float)),
        np.abs(y - np.asarray(p_champion, float)),
        resamples,
        confidence,
        seed,
        max_rows,
    )


# Rows per block of the Poisson bootstrap: each block draws its resamples from its own seeded
# stream, so that an engine that holds the rows in blocks (pipeline.spark: one group per block)
# draws exactly what the in-process engine draws.
BOOTSTRAP_BLOCK = 1 << 16


def poisson_block_sums(
    loss_candidate: np.ndarray, loss_champion: np.ndarray, block: int, resamples: int, rate: float, seed: int
) -> np.ndarray:
    """One block's part of a Poisson bootstrap: (3, resamples) sums of the candidate's and the
    champion's per-row loss and of the rows drawn, each resample drawing every row of the
    block a Poisson(`rate`) number of times.

    Drawn as the block's Poisson(rate x rows) total, then that many rows uniformly with
    replacement: the same distribution as a Poisson count per row, at a cost of the rows
    drawn (rate x rows per resample) rather than of every row x resamples."""
    e_cand, e_champ = np.asarray(loss_candidate, float), np.asarray(loss_champion, float)
    rows = len(e_cand)
    out = np.zeros((3, resamples))
    if rows == 0:
        return out
    rng = np.random.default_rng([seed, block])
    counts = rng.poisson(rate * rows, size=resamples)
    chunk_rows = 2_000_000  # rows drawn at once: memory stays bounded at any size
    start = 0
    while start < resamples:
        stop, drawn = start + 1, int(counts[start])
        while stop < resamples and drawn + counts[stop] <= chunk_rows:
            drawn += int(counts[stop])
            stop += 1
        idx = rng.integers(0, rows, size=drawn)
        which = np.repeat(np.arange(stop - start), counts[start:stop])
        out[0, start:stop] = np.bincount(which, weights=e_cand[idx], minlength=stop - start)
        out[1, start:stop] = np.bincount(which, weights=e_champ[idx], minlength=stop - start)
        start = stop
    out[2] = counts
    return out


def bootstrap_rate(rows: int, max_rows: int | None) -> float:
    """Each row's expected draws per resample: 1, or max_rows / rows above max_rows (m-out-of-n)."""
    return 1.0 if max_rows is None or rows <= max_rows else max_rows / rows


def bootstrap_from_sums(delta: float, sums: np.ndarray, confidence: float) -> Bootstrap:
    """The interval of the relative change from the resamples' summed losses and rows drawn
    (poisson_block_sums over every block)."""
    drawn = np.maximum(sums[2], 1.0)
    mc, mh = sums[0] / drawn, sums[1] / drawn
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = (mc - mh) / mh
    samples = samples[np.isfinite(samples)]
    alpha = 1 - confidence
    return Bootstrap(
        delta=float(delta),
        lower=float(np.quantile(samples, alpha)),
        upper=float(np.quantile(samples, 1 - alpha)),
        confidence=confidence,
        samples=samples,
    )


def paired_bootstrap_loss(
    loss_candidate: np.ndarray,
    loss_champion: np.ndarray,
    resamples: int,
    confidence: float,
    seed: int,
    max_rows: int | None = None,
) -> Bootstrap:
    """Relative change of the mean per-row loss (absolute error, log loss), candidate vs champion
    on the same rows, with a paired Poisson bootstrap interval.

    The change itself is computed on every row. Each resample draws every row a Poisson(1)
    number of times, or Poisson(max_rows / n) where n is above max_rows (m-out-of-n): the
    interval of a max_rows-row evaluation (wider than all n rows would give), at a cost that
    stops growing with n. Drawn block by block of BOOTSTRAP_BLOCK rows in data order
    (poisson_block_sums), the same draws whichever engine holds the rows.
    """
    e_cand, e_champ = np.asarray(loss_candidate, float), np.asarray(loss_champion, float)
    n = len(e_cand)
    rate = bootstrap_rate(n, max_rows)
    sums = np.zeros((3, resamples))
    for block, start in enumerate(range(0, n, BOOTSTRAP_BLOCK)):
        stop = start + BOOTSTRAP_BLOCK
        sums += poisson_block_sums(e_cand[start:stop], e_champ[start:stop], block, resamples, rate, seed)
    delta = (e_cand.mean() - e_champ.mean()) / e_champ.mean()
    return bootstrap_from_sums(float(delta), sums, confidence)


def baseline_scores(y_train: np.ndarray, n: int, labels: list[str] | None = None) -> np.ndarray:
    """A model that learnt nothing, scored on `n` rows: the training target's median; a
    classifier's (its `labels`, the class codes' order), the training rows' share of each class,
    as checks.scores gives scores (binary: the positive class's share)."""
    y_train = np.asarray(y_train, float)
    if labels is None:
        return np.full(n, float(np.median(y_train)))
    prior = np.bincount(y_train.astype(int), minlength=len(labels)) / len(y_train)
    return np.full(n, prior[1]) if len(prior) == 2 else np.tile(prior, (n, 1))


def bootstrap_interval(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    y: np.ndarray,
    p: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> Interval:
    """statistic(y, p) with its two-sided percentile-bootstrap interval at `confidence` over
    resampled rows (for a figure that is no mean of rows: ROC AUC). NaN where the statistic
    is undefined on the rows (one class only); a resample where it is undefined is left out."""
    y, p = np.asarray(y), np.asarray(p)

    def value_of(at: np.ndarray | slice) -> float:
        with warnings.catch_warnings():  # scikit-learn warns, and gives NaN, where a class is absent
            warnings.simplefilter("ignore")
            try:
                return float(statistic(y[at], p[at]))
            except ValueError:
                return float("nan")

    value = value_of(slice(None))
    if not np.isfinite(value):
        return Interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = [v for v in (value_of(rng.integers(0, len(y), len(y))) for _ in range(resamples)) if np.isfinite(v)]
    if not draws:
        return Interval(value, float("nan"), float("nan"))
    alpha = (1 - confidence) / 2
    return Interval(value, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha)))


def row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each row's log loss (-log of the probability given to its label), as scikit-learn's
    log_loss clips it: its mean is log_loss(y, p)."""
    proba = class_probabilities(p)
    eps = np.finfo(proba.dtype).eps
    proba = np.clip(proba, eps, 1 - eps)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return -np.log(proba[np.arange(len(proba)), np.asarray(y, int)])


@dataclass(frozen=True)
class Interval:
    """A figure with its two-sided bootstrap interval at `confidence`."""

    value: float
    lower: float
    upper: float


def paired_ratio(a: np.ndarray, b: np.ndarray, *, confidence: float, seed: int, resamples: int = 2000) -> Interval:
    """The median of the per-round ratios a_i / b_i (two timings taken in the same round), with a
    percentile-bootstrap interval over rounds: each ratio compares two calls a few milliseconds
    apart, so a slow stretch of the machine moves both; steadier than the ratio of the medians
    on a busy machine (seen: [0.997, 1.054] against [0.968, 1.181] for a model against itself)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = b > 0
    r = a[ok] / b[ok]
    if not len(r):
        return Interval(float("nan"), float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, len(r), size=(resamples, len(r)))
    med = np.median(r[idx], axis=1)
    lo, hi = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    return Interval(float(np.median(r)), float(np.quantile(med, lo)), float(np.quantile(med, hi)))


def timing_intervals(
    candidate: np.ndarray,
    paired: np.ndarray,
    *,
    q: float,
    paired_q: float,
    confidence: float,
    seed: int,
    resamples: int = 2000,
) -> tuple[Interval, Interval]:
    """The q-th percentile of the candidate's rounds, and its ratio to the paired_q-th percentile
    of the rounds paired with them (timed in the same rounds: the reference workload's, or a
    champion's), each with a percentile-bootstrap interval that resamples whole rounds, so a
    stretch of load moves both sides of a ratio together."""
    a, b = np.asarray(candidate, float), np.asarray(paired, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(resamples, len(a)))
    qa = np.percentile(a[idx], q, axis=1)
    ratio = qa / np.percentile(b[idx], paired_q, axis=1)
    lo, hi = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    point = float(np.percentile(a, q))
    return (
        Interval(point, float(np.quantile(qa, lo)), float(np.quantile(qa, hi))),
        Interval(
            point / float(np.percentile(b, paired_q)), float(np.quantile(ratio, lo)), float(np.quantile(ratio, hi))
        ),
    )


def row_loss(metric: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each row's part of `metric`, whose mean over the rows is the figure: a regressor's
    absolute error (mae) or percent error (mape); a classifier's log loss or Brier score."""
    if metric == "log_loss":
        return row_log_loss(y, p)
    if metric == "brier":
        if np.asarray(p).ndim == 1:
            return (np.asarray(p, float) - np.asarray(y, float)) ** 2
        proba = class_probabilities(p)
        return ((proba - np.eye(proba.shape[1])[np.asarray(y, int)]) ** 2).sum(axis=1)
    y, p = np.asarray(y, float), np.asarray(p, float)
    err = np.abs(y - p)
    return 100.0 * err / np.abs(y) if metric == "mape" else err


@dataclass(frozen=True)
class SliceError:
    column: str
    value: str
    rows: int
    error: float  # the slice's mean loss (MAE, MAPE in percent, log loss, Brier)
    ratio: float  # slice error / overall error
    # One-sided Welch t-test that the slice's mean error exceeds the other rows', Holm-adjusted
    # over every slice judged (the slices of one run are many tests at once). It describes the
    # ratio; it does not decide the gate, which judges the ratio (an effect size).
    p_holm: float = float("nan")


@dataclass(frozen=True)
class Slices:
    judged: list[SliceError]  # worst ratio first
    few_positives: int = 0  # slices of min_rows rows or more left out: fewer positives than min_positives


def slice_errors(
    frame: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    columns: list[str],
    target: str,
    target_bands: list[float],
    min_rows: int,
    metric: str = "mae",
    band_by: str = "prediction",
    min_positives: int | None = None,
) -> Slices:
    """The mean loss (row_loss of `metric`) per slice with at least `min_rows` rows, worst ratio
    first; with `min_positives` (a binary task's), a slice also needs that many rows of the
    positive class (code 1): a slice of three events has the loss of three events.

    Target bands cut the rows by their prediction (band_by: prediction), or by the observed
    target (band_by: target). Cut by the observed target, the extreme bands are the worst
    for any model short of perfect: a row whose observed value is extreme is, on average,
    one whose error pushed it there (regression to the mean), and the ratio measures how
    much the model does not explain, not a band it serves badly; five real files failed
    for that alone. Cut by the prediction, a band is the rows a user sees the model place
    there, the slice a decision is made on.
    """
    groups, n, total, squares = slice_stats(frame, y, p, columns, target, target_bands, metric, band_by)
    return slices_from_stats(groups, n, total, squares, min_rows, min_positives)


def slice_stats(
    frame: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    columns: list[str],
    target: str,
    target_bands: list[float],
    metric: str = "mae",
    band_by: str = "prediction",
) -> tuple[list[SliceStats], int, float, float]:
    """Every slice's sufficient statistics of the rows' loss (row_loss of `metric`), with the
    rows' count, loss sum and sum of squares: what slices_from_stats judges. The statistics of
    two sets of rows add up (pipeline.spark adds those of each partition)."""
    loss = row_loss(metric, y, p)
    keys: dict[str, pd.Series] = {c: frame[c].astype(object).fillna("<missing>").astype(str) for c in columns}
    if target_bands:
        y, p = np.asarray(y, float), np.asarray(p, float)
        edges = [-np.inf, *sorted(target_bands), np.inf]
        labels = [band_label(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
        by, name = (p, f"predicted {target} band") if band_by == "prediction" else (y, f"{target} band")
        keys[name] = pd.Series(pd.cut(by, edges, labels=labels, right=False).astype(str), index=frame.index)
    groups: list[SliceStats] = []
    frame_loss = pd.DataFrame({"s": loss, "q": loss**2, "e": (np.asarray(y) == 1).astype(np.int64)}, index=frame.index)
    for col, key in keys.items():
        grouped = frame_loss.groupby(key.to_numpy())
        sums, sizes = grouped.sum(), grouped.size()
        for value in sizes.index:
            groups.append(
                SliceStats(
                    col,
                    str(value),
                    int(sizes[value]),
                    float(sums.at[value, "s"]),
                    float(sums.at[value, "q"]),
                    int(sums.at[value, "e"]),
                )
            )
    return groups, len(loss), float(loss.sum()), float((loss**2).sum())


@dataclass(frozen=True)
class SliceStats:
    """A slice's sufficient statistics: rows, the sum and the sum of squares of their per-row
    loss, and (a binary task's) how many are positives."""

    column: str
    value: str
    rows: int
    total: float
    squares: float
    events: int = 0


def slices_from_stats(
    groups: list[SliceStats], n: int, total: float, squares: float, min_rows: int, min_positives: int | None = None
) -> Slices:
    """slice_errors from every slice's sufficient statistics and the whole's (n rows, their loss's
    sum and sum of squares): each slice's mean loss over the whole's, and its one-sided Welch
    test against the other rows, Holm-adjusted; whichever engine counted them."""
    overall = total / n
    out: list[SliceError] = []
    raw: list[float] = []
    few = 0
    for g in groups:
        if g.rows < min_rows:
            continue
        if min_positives is not None and g.events < min_positives:
            few += 1
            continue
        m = g.total / g.rows
        out.append(SliceError(g.column, g.value, g.rows, float(m), float(m / overall)))
        raw.append(_worse_than_rest(g.rows, g.total, g.squares, n - g.rows, total - g.total, squares - g.squares))
    if out:
        from statsmodels.stats.multitest import multipletests

        tested = [i for i, p in enumerate(raw) if not np.isnan(p)]
        if tested:
            adjusted = multipletests([raw[i] for i in tested], method="holm")[1]
            for i, p in zip(tested, adjusted):
                out[i] = replace(out[i], p_holm=float(p))
    return Slices(sorted(out, key=lambda s: s.ratio, reverse=True), few)


def _worse_than_rest(n_a: int, sum_a: float, sq_a: float, n_b: int, sum_b: float, sq_b: float) -> float:
    """One-sided Welch t-test p-value that the slice's losses (n, sum, sum of squares) are
    larger than the other rows'."""
    if n_a < 2 or n_b < 2:
        return float("nan")
    mean_a, mean_b = sum_a / n_a, sum_b / n_b
    var_a = max(0.0, (sq_a - sum_a * mean_a) / (n_a - 1))
    var_b = max(0.0, (sq_b - sum_b * mean_b) / (n_b - 1))
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # identical errors: no p-value, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_ind_from_stats(
            mean_a, math.sqrt(var_a), n_a, mean_b, math.sqrt(var_b), n_b, equal_var=False, alternative="greater"
        )
    return float(t.pvalue) if np.isfinite(t.pvalue) else float("nan")


def _band(x: float) -> str:
    return f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}"


def band_label(lo: float, hi: float) -> str:
    """A target band's name: "<lo", "lo-hi" or ">=hi"."""
    return f"<{_band(hi)}" if np.isinf(lo) else (f">={_band(lo)}" if np.isinf(hi) else f"{_band(lo)}-{_band(hi)}")


def residuals(y: np.ndarray, p: np.ndarray, scale: str) -> np.ndarray:
    y, p = np.asarray(y, float), np.asarray(p, float)
    if scale == "log":
        return np.log(y) - np.log(p)
    return y - p


@dataclass(frozen=True)
class Normality:
    skew: float
    excess_kurtosis: float
    jb_statistic: float
    jb_p_value: float


def normality(resid: np.ndarray) -> Normality:
    from statsmodels.stats.stattools import jarque_bera

    jb, p, skew, kurt = jarque_bera(np.asarray(resid, float))
    return Normality(float(skew), float(kurt) - 3.0, float(jb), float(p))


@dataclass(frozen=True)
class Spread:
    ratio: float  # residual spread, top prediction decile over bottom (largest / smallest)
    top: float
    bottom: float
    bp_p_value: float


def spread(resid: np.ndarray, predictions: np.ndarray) -> Spread:
    """Homoscedasticity effect size: spread of residuals in the top vs the bottom decile.

    Spread is the median absolute deviation scaled to a standard deviation, so a few wild
    rows do not decide it; where more than half a decile's residuals are equal (a target and
    predictions on a grid: heights to the inch) the MAD is 0 whatever the rest do, and the
    mean absolute deviation from the median, scaled likewise (sqrt(pi/2)), stands in for it.
    Breusch-Pagan's p-value is reported beside it.
    """
    from statsmodels.stats.diagnostic import het_breuschpagan

    resid = np.asarray(resid, float)
    pred = np.asarray(predictions, float)
    order = np.argsort(pred, kind="stable")
    k = max(2, len(pred) // 10)

    def mad(x: np.ndarray) -> float:
        dev = np.abs(x - np.median(x))
        m = float(1.4826 * np.median(dev))
        return m if m > 0 else float(1.2533 * np.mean(dev))

    bottom, top = mad(resid[order[:k]]), mad(resid[order[-k:]])
    ratio = max(top, bottom) / min(top, bottom) if min(top, bottom) > 0 else float("inf")
    exog = np.column_stack([np.ones_like(pred), pred])
    try:
        _, bp_p, _, _ = het_breuschpagan(resid, exog)
    except (ValueError, np.linalg.LinAlgError):
        bp_p = float("nan")
    return Spread(float(ratio), top, bottom, float(bp_p))


@dataclass(frozen=True)
class Autocorrelation:
    durbin_watson: float
    ljung_box_p_value: float
    lags: int


def autocorrelation(resid: np.ndarray, lags: int = 10) -> Autocorrelation:
    from statsmodels.stats.diagnostic import acorr_ljungbox
    from statsmodels.stats.stattools import durbin_watson

    resid = np.asarray(resid, float)
    lb = acorr_ljungbox(resid, lags=[lags], return_df=True)
    return Autocorrelation(float(durbin_watson(resid)), float(lb["lb_pvalue"].iloc[0]), lags)


def relative_change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    before, after = np.asarray(before, float), np.asarray(after, float)
    return np.abs(after - before) / np.maximum(np.abs(before), 1e-12)


# Two answers that differ by less than this share of the prediction's size differ by float64
# rounding (~2.2e-16 per operation), not in behaviour: a linear model's dot products summed in
# another batch shape differ in their last bits (ridge on Ames: 4e-10 USD on ~190k, 2e-15 of it).
# A real dependence on batch, order or dtype moves answers by many orders more.
ROUNDING = 1e-12


@dataclass(frozen=True)
class Difference:
    """How far two answers to the same rows are apart, beyond float rounding."""

    value: float  # largest |a - b| among rows that differ by more than rounding (0: none; inf: shape or non-finite)
    raw: float  # largest |a - b| of any row, rounding included
    rounding_rows: int  # rows that differ by rounding only (not counted in `value`)

    def note(self) -> str:
        if not self.rounding_rows:
            return ""
        return f"; {self.rounding_rows} rows differ by float rounding only (largest {self.raw:.3g}, under {ROUNDING:g} of the prediction), not counted"


def answer_difference(a: np.ndarray, b: np.ndarray) -> Difference:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return Difference(float("inf"), float("inf"), 0)
    if not a.size:
        return Difference(0.0, 0.0, 0)
    diff = np.abs(a - b)
    rounding = diff <= ROUNDING * np.maximum(np.abs(a), np.abs(b))
    beyond = diff[~rounding]
    return Difference(
        float(beyond.max()) if beyond.size else 0.0, float(diff.max()), int(np.count_nonzero(rounding & (diff > 0)))
    )


@dataclass(frozen=True)
class OneFeatureFit:
    column: str
    r2: float  # R2 on the evaluation rows of the target's mean per bin (or category) of this column alone, from the training rows


def _bin_keys(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value's bin between sorted `edges`, a value equal to an edge a bin of its own (a
    point mass, such as the zeros of a spending column, is where the quantiles pile up, and
    is not the values just above it); missing values -1."""
    return np.where(np.isnan(values), -1, 2 * np.searchsorted(edges, values, side="left") + np.isin(values, edges))


def one_feature_fits(
    train: pd.DataFrame,
    evaluation: pd.DataFrame,
    columns: list[str],
    y_train: np.ndarray,
    y_eval: np.ndarray,
    bins: int = 64,
) -> list[OneFeatureFit]:
    """How well each column alone predicts the target, best first: the training rows' mean
    target per bin of the column (up to `bins` quantile bins of a numeric column, each
    category of a text one, missing values and a value a quantile edge falls on each a bin of
    their own), scored on the evaluation rows
    by R2 (a bin or category unseen in training predicts the training mean; a 0/1 target's R2
    is the Brier skill score). A binned mean
    fits any shape, monotone or not, in a few milliseconds a column."""
    # A 2-D target (a multiclass one as one column per class) is scored over all its cells.
    y_train = np.asarray(y_train, float).reshape(len(y_train), -1)
    y_eval = np.asarray(y_eval, float).reshape(len(y_eval), -1)
    ss = float(np.sum((y_eval - y_eval.mean(axis=0)) ** 2))
    fallback = y_train.mean(axis=0)
    out = []
    for col in columns:
        tx, ex = train[col], evaluation[col]
        if pd.api.types.is_numeric_dtype(tx) and not pd.api.types.is_bool_dtype(tx):
            values = tx.to_numpy(float)
            edges = (
                np.unique(np.nanquantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
                if np.isfinite(values).any()
                else np.array([])
            )
            tk, ek = _bin_keys(edges, values), _bin_keys(edges, ex.to_numpy(float))
        else:
            tk = tx.astype(object).where(tx.notna(), "\x00missing").astype(str).to_numpy()
            ek = ex.astype(object).where(ex.notna(), "\x00missing").astype(str).to_numpy()
        means = pd.DataFrame(y_train).groupby(tk).mean()
        p = np.array(means.reindex(ek).to_numpy(float))  # a copy: reindex may hand back a read-only view
        unseen = np.isnan(p).any(axis=1)
        p[unseen] = fallback
        r2 = 1.0 - float(np.sum((y_eval - p) ** 2)) / ss if ss > 0 else float("nan")
        out.append(OneFeatureFit(col, r2))
    return sorted(out, key=lambda f: -f.r2 if np.isfinite(f.r2) else np.inf)

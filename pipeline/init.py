"""run-pipeline init: a commented starter config for a new data set, inferred from the file.

It reads the CSV once (the harness's own strict reader), infers what the config needs and
writes pipeline_config.yaml and model_config.yaml, each inference commented with why, and
thresholds a sound model meets on any target's scale: error figures bounded relative to a
baseline (predicting the training median), drift against the split's own sampling noise,
absences stated (no categorical column, no directional expectation, no time order) so that
the gates that need them are "not applicable" instead of failing. Nothing is written when
the file or the target is bad, or when a config is there already (without --force).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

from pipeline import catalogue, figures
from pipeline import config as config_mod
from pipeline import data as data_mod
from pipeline.errors import InputError
from pipeline.evidence import STANDARD_FAMILIES
from pipeline.files import write_atomic

# Names that say a column identifies a row rather than describes it.
_ID_NAME = re.compile(r"(^|[_\W])(id|pid|uuid|key|index)$", re.IGNORECASE)
# Names that tools give a row-number column: R's write.csv (rownames, or an empty name),
# pandas' to_csv with its index (Unnamed: 0), spreadsheets' exports.
_ROW_NUMBER_NAME = re.compile(
    r"^(rownames?|row\.?names?|row_?(id|num|number)?|unnamed: ?0|index|idx|#|)$", re.IGNORECASE
)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?")
_YEAR_NAME = re.compile(r"year|yr", re.IGNORECASE)
_MONTH_NAME = re.compile(r"month|(^|_)mo(_|$)", re.IGNORECASE)
RANGE_MARGIN = 0.5  # contract ranges: the observed range widened by half its span on each side
DRIFT_SPLITS = 20  # random splits of the file whose drift figure sets the noise floor
DRIFT_FACTOR = 2.0  # the drift bound: twice the worst drift a random split shows by chance


@dataclass
class Inferred:
    """What init read from the data, and why (one line per inference)."""

    rows: int
    target: str
    without_target: int = 0  # rows of the file whose target is missing (dropped)
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    order_by: list[str] | None = None
    slices: list[str] = field(default_factory=list)
    bands: list[float] = field(default_factory=list)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    missing: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    positive: bool = False
    log_target: bool = False
    capped: str = ""  # how the target is capped, when it is
    censored: dict[str, float] = field(default_factory=dict)  # its caps: {"max": 50}
    drift_floor: float = 0.0
    task: str = "regression"
    classes: list[str] = field(default_factory=list)  # a classifier's labels (data.classes)
    positive_class: str | None = None
    shares: dict[str, float] = field(default_factory=dict)  # each label's share of the rows
    why: list[str] = field(default_factory=list)

    @property
    def classifier(self) -> bool:
        return self.task != "regression"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def _round(x: float) -> float:
    """A bound written for people: three significant figures."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.3g}")


def _round_out(x: float, up: bool, digits: int = 3) -> float:
    """`x` to `digits` significant figures, rounded away from the values it bounds (up for an
    upper bound): a rounded range must still hold what it was widened from (a year column of
    2007-2009 widened to 2006 rounds to 2010 at three figures, inside its own values)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    step = 10.0 ** (math.floor(math.log10(abs(x))) - digits + 1)
    return float(f"{(math.ceil(x / step) if up else math.floor(x / step)) * step:.{digits + 2}g}")


def infer(path: Path, target: str, task: str | None = None, positive_class: str | None = None) -> Inferred:
    frame = data_mod.read_csv(path)
    if target not in frame.columns:
        near = [c for c in frame.columns if c.lower() == target.lower()]
        hint = (
            f" (did you mean '{near[0]}'?)"
            if near
            else f" (columns: {', '.join(list(frame.columns)[:8])}{', ...' if len(frame.columns) > 8 else ''})"
        )
        raise InputError(f"--target {target}: no such column in {path}{hint}")
    labels = _task(frame[target], target, path, task, positive_class)
    if labels is None:
        y = pd.to_numeric(frame[target], errors="coerce")
        text = y.isna() & frame[target].notna()
        if text.any():
            row = int(text.to_numpy().argmax()) + 1
            raise InputError(
                f"{path}: column '{target}' row {row}: target is not a number ('{frame[target][text].iloc[0]}'; "
                "--task binary or multiclass for labels)"
            )
    else:
        y = labels.codes
    without = int(y.isna().sum())
    whole = frame  # row numbers count the file's rows, dropped ones too
    if without:  # rows that can be neither trained on nor judged: dropped, and said so
        frame, y = frame.loc[y.notna()], y.dropna()
    n = len(frame)
    inf = Inferred(rows=n, target=target, without_target=without)
    if labels is not None:
        inf.task, inf.classes, inf.positive_class = labels.task, labels.classes, labels.positive
        inf.shares = {c: float((y == i).mean()) for i, c in enumerate(labels.order)}
        inf.why.append(labels.why)
    if without:
        inf.why.append(
            f"{target}: missing in {without} rows ({without / (n + without):.1%}): they can be neither trained on nor "
            "judged, and are dropped when the data is loaded (data.rows_without_target: drop)"
        )
    for col in frame.columns:
        if col == target:
            continue
        s = frame[col]
        numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        unique = s.notna().all() and s.nunique() == n
        text = s.dropna().astype(str)
        row_number = _row_number(whole[col], col)
        if row_number:
            inf.dropped.append(col)
            inf.why.append(
                f"{col}: {row_number}: a row number says where a row sits in the file, not what it is "
                "(a file sorted by the target would leak it): dropped (data.drop_columns)"
            )
        elif not numeric and len(text) and text.map(lambda v: bool(_ISO_DATE.match(v))).mean() > 0.95:
            inf.ids.append(col)
            inf.order_by = [col]
            inf.why.append(
                f"{col}: ISO dates: the rows' time order (gates.residuals.order_by), kept out of the features"
            )
        elif unique and (
            not numeric or _ID_NAME.search(col) or (pd.api.types.is_integer_dtype(s) and _ID_NAME.search(col))
        ):
            inf.ids.append(col)
            inf.why.append(
                f"{col}: unique in every row{' and named like an id' if _ID_NAME.search(col) else ', text'}: an id column, not a feature"
            )
        elif s.isna().all():
            inf.dropped.append(col)
            inf.why.append(f"{col}: empty in every row: dropped (data.drop_columns)")
        elif numeric:
            inf.numeric.append(col)
        else:
            inf.categorical.append(col)
        share = float(s.isna().mean())
        if 0 < share < 1 and col not in inf.ids and col not in inf.dropped:
            inf.missing[col] = share
    if not inf.numeric and not inf.categorical:
        raise InputError(f"{path}: no feature column besides the target '{target}' and the id columns")
    if inf.order_by is None:
        year = next((c for c in inf.numeric if _YEAR_NAME.search(c) and frame[c].between(1800, 2200).all()), None)
        if year is not None:
            month = next((c for c in inf.numeric if _MONTH_NAME.search(c) and frame[c].between(1, 12).all()), None)
            inf.order_by = [year] + ([month] if month else [])
            inf.why.append(
                f"{', '.join(inf.order_by)}: year{' and month' if month else ''}: the rows' time order (gates.residuals.order_by)"
            )
        else:
            inf.why.append(
                "no date or year column: the rows have no time order (gates.residuals.order_by: null, the autocorrelation gate is not applicable)"
            )
    # Contract ranges: the target and every numeric feature, widened; never below 0 for a column that never is.
    for col in [*([] if inf.classifier else [target]), *inf.numeric]:
        v = pd.to_numeric(frame[col], errors="coerce").dropna()
        lo, hi = float(v.min()), float(v.max())
        span = (hi - lo) or abs(hi) or 1.0
        low, high = lo - RANGE_MARGIN * span, hi + RANGE_MARGIN * span
        if lo >= 0:
            low = max(0.0, low)
        inf.ranges[col] = (_round_out(low, up=False), _round_out(high, up=True))
    inf.why.append(
        f"contract ranges: each numeric column's observed range widened by {RANGE_MARGIN:.0%} of its span on each side"
    )
    if not inf.classifier:  # a number's scale, skew and cap
        inf.positive = bool((y > 0).all())
        skew = float(y.skew())
        lo, hi = (float(q) for q in np.quantile(y, [0.01, 0.99]))
        facts = [f"skew {skew:.2f}"] + (
            [f"its 1st-99th percentiles {hi / lo:.0f}x apart"] if inf.positive and lo > 0 else []
        )
        if inf.positive:
            spreads = _scale_spreads(frame, inf, y)
            inf.log_target = spreads["log"] < spreads["raw"]
            facts.append(
                f"a quick 4-fold fit's residual spread (top over bottom prediction decile) {spreads['raw']:.2f} as it is, "
                f"{spreads['log']:.2f} on the log scale"
            )
        inf.why.append(
            f"{target}: {'always positive' if inf.positive else 'not always positive'}, {', '.join(facts)}: "
            + (
                "the model fits log(target) and residuals are judged on that scale, where errors are the more even"
                if inf.log_target
                else "fitted as it is" + (", where errors are the more even" if inf.positive else "")
            )
        )
        inf.capped, inf.censored = _capped(y)
        if inf.capped:
            inf.why.append(
                f"{target}: {inf.capped}: a censored target (the true value is that or beyond): rows at the cap "
                "are left out of the residual gates, their error unknown (gates.residuals.censored)"
            )
    checked = [target, *inf.numeric, *inf.categorical]
    inf.duplicates = int(frame[checked].duplicated().sum())
    inf.why.append(
        f"{inf.duplicates} duplicated rows: "
        + (
            "allowed (the file holds them); the split keeps every copy of a record on the side of its record, so none is "
            "judged on rows it was trained on"
            if inf.duplicates
            else "refused in any later file"
        )
    )
    levels = {c: frame[c].nunique() for c in inf.categorical}
    inf.slices = sorted(
        (c for c, k in levels.items() if 2 <= k <= 20 and frame[c].value_counts().min() >= 5), key=lambda c: levels[c]
    )[:2]
    inf.why.append(
        f"slices: {', '.join(inf.slices) or 'no categorical column of 2-20 levels'}"
        + ("" if inf.classifier else "; target bands at its quartiles")
    )
    inf.bands = [] if inf.classifier else [_round(float(q)) for q in np.quantile(y, [0.25, 0.5, 0.75])]
    inf.drift_floor = _drift_noise(frame, inf)
    inf.why.append(
        f"feature drift: a random 20 % split of this file shows up to {inf.drift_floor:.3f} by chance; "
        f"the bound is {DRIFT_FACTOR:g}x that"
    )
    return inf


MAX_CLASSES = 20  # a text target with more distinct values is not taken for a classifier's labels
# Labels that name the event a binary model scores (its positive class), as written in files.
_POSITIVE_NAMES = {"1", "true", "yes", "y", "t", "positive", "pos"}


@dataclass
class _Labels:
    """A classifier's target as init reads it."""

    task: str
    classes: list[str]  # data.classes
    positive: str | None  # data.positive_class
    order: list[str]  # the labels in the order of their codes (DataSettings.labels)
    codes: pd.Series  # each row's code, NaN where the target is missing
    why: str


def _task(s: pd.Series, target: str, path: Path, task: str | None, positive: str | None) -> _Labels | None:
    """The target's labels when it is a classifier's (None: a regression target). Inferred
    without --task: text or true/false, or a number of two values; a number of more values
    stays a number (counts and ratings are, mostly): --task multiclass says otherwise."""
    present = s.dropna()
    numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    text = data_mod.label_text(present)
    levels = sorted(set(text), key=(lambda v: float(v)) if numeric else str)
    if task == "regression" or (task is None and numeric and len(levels) > 2):
        if positive is not None:
            raise InputError("--positive-class: only for a binary target (--task binary)")
        return None
    if task is None:
        if len(levels) > MAX_CLASSES:
            raise InputError(
                f"--target {target}: text of {len(levels)} distinct values in {path}: too many for a classifier's "
                f"labels (at most {MAX_CLASSES}), and a regression target is a number"
            )
        task = "binary" if len(levels) == 2 else "multiclass"
        because = "text labels" if not numeric else "a number of two values"
        if pd.api.types.is_bool_dtype(present):
            because = "true or false"
    else:
        because = f"--task {task}"
    if len(levels) < 2:
        raise InputError(f"--target {target}: one label only ('{levels[0] if levels else ''}') in {path}")
    if task == "binary" and len(levels) != 2:
        raise InputError(f"--task binary: --target {target} holds {len(levels)} labels in {path} (multiclass?)")
    if task == "multiclass" and len(levels) < 3:
        raise InputError(f"--task multiclass: --target {target} holds 2 labels in {path} (binary)")
    counts = text.value_counts()
    rare = [c for c in levels if counts[c] < 2]
    if rare:
        raise InputError(
            f"{path}: column '{target}': label '{rare[0]}' in {counts[rare[0]]} row: a split needs 2 of each label "
            "at least (merge or drop its rows)"
        )
    why_positive = ""
    if task == "binary":
        if positive is not None:
            if positive not in levels:
                raise InputError(f"--positive-class {positive}: not a label of '{target}' ({', '.join(levels)})")
            why_positive = "--positive-class"
        else:
            named = [c for c in levels if c.lower() in _POSITIVE_NAMES]
            if len(named) == 1:
                positive, why_positive = named[0], "its name says it is the event"
            else:
                positive = min(reversed(levels), key=lambda c: counts[c])
                why_positive = "the rarer label, the event a model is asked to find"
        order = [c for c in levels if c != positive] + [positive]
    elif positive is not None:
        raise InputError("--positive-class: only for a binary target")
    else:
        order = levels
    full = pd.Series(np.nan, index=s.index)
    full.loc[present.index] = text.map({c: float(i) for i, c in enumerate(order)})
    shares = ", ".join(f"'{c}' {counts[c] / len(text):.1%}" for c in levels)
    return _Labels(
        task,
        levels,
        positive,
        order,
        full,
        f"{target}: {because}, {len(levels)} labels ({shares}): a {task} classifier (data.task)"
        + (f"; it scores '{positive}' ({why_positive}; data.positive_class)" if task == "binary" else "")
        + "; the split keeps each label's share on both sides",
    )


SCALE_ROWS = 20_000  # rows of the quick fits that choose the target's scale (a seeded sample of larger files)


def _scale_spreads(frame: pd.DataFrame, inf: Inferred, y: pd.Series) -> dict[str, float]:
    """Residual spread (figures.spread: top over bottom prediction decile) of a quick boosted
    fit on the target as it is and on its log, each judged on its own scale, from 4-fold
    out-of-fold predictions of (a seeded sample of) the rows: the scale where errors are
    even is the one the residual gates should judge. A rule of thumb (skew, span) chose wrong both ways on real files:
    Boston's medv is skewed by its cap at 50 and its errors are even as it is; a car's mpg
    spans 5x and its errors grow with it."""
    rng = np.random.default_rng(0)
    take = rng.permutation(len(frame))[:SCALE_ROWS]
    rows = frame.iloc[take]
    columns = [pd.to_numeric(rows[c], errors="coerce").to_numpy(float) for c in inf.numeric]
    for c in inf.categorical:
        counts = rows[c].astype(str).where(rows[c].notna()).value_counts()
        kept = {v: i for i, v in enumerate(counts.index[:250])}
        columns.append(rows[c].astype(str).map(kept).to_numpy(float))
    X = np.column_stack(columns)
    mask = [False] * len(inf.numeric) + [True] * len(inf.categorical)
    target = y.to_numpy(float)[take]
    fold = np.arange(len(take)) % 4
    out = {}
    for scale, f in (("raw", np.asarray), ("log", np.log)):
        p = np.empty(len(take))
        for k in range(4):  # out-of-fold predictions of every row: deciles of all of them, not of a quarter
            held = fold == k
            model = HistGradientBoostingRegressor(
                max_iter=100, min_samples_leaf=20, categorical_features=mask or None, random_state=0
            ).fit(X[~held], f(target[~held]))
            p[held] = model.predict(X[held])
        out[scale] = figures.spread(f(target) - p, p).ratio
    return out


CAP_SHARE = 0.01  # a target at its extreme in this share of rows (and 5 rows or more) is capped there ...
CAP_SPIKE = 3  # ... if as many as this many times the rows of each value next to it


def _capped(y: pd.Series) -> tuple[str, dict[str, float]]:
    """How a target is capped ("" when it is not): its largest (or smallest) value held by at
    least CAP_SHARE of the rows and by CAP_SPIKE times as many rows as the values next to it,
    while the target otherwise takes many values (a top code: Boston's medv at 50, 16 rows
    where its neighbours have 1 or 2); with the caps, {"max": 50}. Not a value on a coarse
    grid that many rows share (quakes' magnitude 4.0, the catalogue's threshold, held about
    as often as 4.1 and 4.2)."""
    counts = y.value_counts().sort_index()
    if len(counts) < 20:
        return "", {}
    out, caps = [], {}
    for end, at, near in (("max", counts.iloc[-1], counts.iloc[-6:-1]), ("min", counts.iloc[0], counts.iloc[1:6])):
        value = float(counts.index[-1] if end == "max" else counts.index[0])
        if end == "min" and value == 0:
            continue  # zero is a count's or an amount's own floor, not a cap
        if at >= 5 and at / len(y) >= CAP_SHARE and at >= CAP_SPIKE * float(near.median()):
            out.append(
                f"capped at its {end} {value:g} for {at / len(y):.1%} of rows ({int(at)}; the next values "
                f"{int(near.median())} each, at the median)"
            )
            caps[end] = value
    return "; ".join(out), caps


def _row_number(s: pd.Series, name: str) -> str:
    """Why `s` is the file's row numbering ("" when it is not): unique integers that count the
    rows in file order from 0 or 1, or unique values under a name tools give row numbers."""
    if s.isna().any() or s.nunique() != len(s):
        return ""
    if pd.api.types.is_integer_dtype(s) and not pd.api.types.is_bool_dtype(s):
        first = int(s.iloc[0])
        if first in (0, 1) and bool((s.to_numpy() == np.arange(first, first + len(s))).all()):
            return f"the integers {first}..{first + len(s) - 1} in file order"
    if _ROW_NUMBER_NAME.match(name) and (pd.api.types.is_integer_dtype(s) or not pd.api.types.is_numeric_dtype(s)):
        return "unique in every row and named as row numbers are"
    return ""


def _drift_noise(frame: pd.DataFrame, inf: Inferred) -> float:
    """The worst drift figure a random 80/20 split of the file shows, over DRIFT_SPLITS splits."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(DRIFT_SPLITS):
        mask = rng.random(len(frame)) < 0.2
        drift = figures.feature_drift(frame[~mask], frame[mask], inf.numeric, inf.categorical, min_rows=20)
        if drift:
            worst = max(worst, drift[0].statistic)
    return worst


def _yaml_list(items: list[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


# Plain words that YAML 1.1 (PyYAML's) reads as a boolean or null, not as text.
_YAML_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}


def _q(text: str) -> str:
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", text) and text.lower() not in _YAML_WORDS
    return text if plain else '"' + text.replace('"', '\\"') + '"'


def _num(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _threshold_lines(
    env: str, inferred: dict[tuple[str, str], str], advisory: dict[str, str], task: str = "regression"
) -> str:
    """The threshold lines of `env`: every standard gate of `task`'s default there (catalogue),
    or what init inferred for it from the data, in the catalogue's order; a gate of `advisory`
    (gate id: why) keeps its default bound with `required: false`."""
    lines = []
    for gate in catalogue.standard(task):
        text = inferred.get((env, gate.id), gate.defaults.get(env))
        if text and gate.id in advisory:
            bound = text.split("#")[0].rstrip()
            if "required:" not in bound:
                bound = bound[:-1] + ", required: false}"
            text = f"{bound}   # {advisory[gate.id]}"
        if text:
            lines.append(f"      {gate.id}: {text}")
    return "\n".join(lines)


RARE_POSITIVE = 0.2  # a positive class rarer than this: init's decision threshold is its share, not 0.5
CHANCE_MARGIN = 0.1  # a classifier's bounds over chance: a tenth of the way from chance to perfect


def _classifier_thresholds(inf: Inferred) -> dict[tuple[str, str], str]:
    """The staging bounds of a classifier's figures whose chance level depends on the classes:
    average precision and balanced accuracy a margin above chance; accuracy and F1 (advisory:
    they mislead where a class is rare) above what a constant decision scores."""
    shares = [inf.shares[c] for c in inf.shares]
    k = len(shares)
    if inf.task == "binary":
        prevalence = inf.shares[str(inf.positive_class)]
        ap_chance, f1_trivial = prevalence, 2 * prevalence / (1 + prevalence)
        f1_how = f"deciding every row '{inf.positive_class}'"
    else:
        ap_chance = 1 / k
        top = max(shares)
        f1_trivial, f1_how = 2 * top / (1 + top) / k, "deciding every row the commonest label (macro)"
    majority = max(shares)

    def above(chance: float) -> float:
        return _round(chance + CHANCE_MARGIN * (1 - chance))

    return {
        ("staging", "pr_auc"): f"{{min: {_num(above(ap_chance))}}}   # chance (a constant score) {ap_chance:.3f} "
        f"+ {CHANCE_MARGIN:.0%} of the way to 1",
        ("staging", "balanced_accuracy"): f"{{min: {_num(above(1 / k))}}}   # chance {1 / k:.3f} + "
        f"{CHANCE_MARGIN:.0%} of the way to 1",
        ("staging", "accuracy"): f"{{min: {_num(_round_out(majority, up=False, digits=4))}, required: false}}   "
        "# always guessing the "
        f"commonest label scores {majority:.3f}; advisory: it misleads where a label is rare",
        ("staging", "f1"): f"{{min: {_num(_round_out(f1_trivial, up=False, digits=4))}, required: false}}   "
        f"# {f1_how} scores "
        f"{f1_trivial:.3f}; advisory",
    }


def render(inf: Inferred, data_path: Path, out: Path) -> tuple[str, str]:
    """(pipeline_config.yaml, model_config.yaml) as text, commented."""
    rel = Path(os.path.relpath(data_path.resolve(), out.resolve()))
    name = _slug(data_path.stem)
    ranges = "\n".join(f"      {_q(c)}: {{min: {_num(lo)}, max: {_num(hi)}}}" for c, (lo, hi) in inf.ranges.items())
    missing = "\n".join(
        f"      {_q(c)}: {_num(_round(min(1.0, s * 1.5 + 0.02)))}   # {s:.1%} in this file"
        for c, s in inf.missing.items()
    )
    drift = _round(min(1.0, max(0.05, DRIFT_FACTOR * inf.drift_floor)))
    scale = "log" if inf.log_target else "raw"
    eval_rows = round(0.2 * inf.rows)
    slice_rows = max(10, min(30, eval_rows // 8))
    censored = (
        "{"
        + ", ".join(f"{k}: {_num(v)}" for k, v in inf.censored.items())
        + "}   # the target's cap: rows at it are left out"
        if inf.censored
        else "{}   # the target is not capped"
    )
    order = (
        _yaml_list(inf.order_by)
        if inf.order_by
        else "null   # no time order in the data: the autocorrelation gate is not applicable"
    )
    if inf.classifier:
        slice_lines = (
            "    metric: log_loss   # each row's log loss, the figure the champion gate judges\n"
            f"    columns: {_yaml_list(inf.slices)}"
            + ("" if inf.slices else "   # no categorical column of 2-20 levels: the slice gate is not applicable")
            + f"\n    min_rows: {slice_rows}   # of ~{eval_rows} evaluation rows"
            + (
                f"\n    min_positives: {config_mod.SliceSettings.model_fields['min_positives'].default}   # a slice of fewer '{inf.positive_class}' rows is not judged "
                "(its loss is a handful of events')"
                if inf.task == "binary"
                else ""
            )
        )
    else:
        slice_lines = (
            f"    metric: {'mape' if inf.log_target else 'mae'}   "
            f"# {'relative error: errors grow with a skewed target' if inf.log_target else 'absolute error'}\n"
            f"    columns: {_yaml_list(inf.slices)}\n"
            f"    target_bands: [{', '.join(_num(b) for b in inf.bands)}]   # the target's quartiles, cutting the rows by their prediction\n"
            "    band_by: prediction   # by the observed target, the extreme bands are the worst for any imperfect model\n"
            f"    min_rows: {slice_rows}   # of ~{eval_rows} evaluation rows: a quartile band holds ~{eval_rows // 4}"
        )
    cats = _yaml_list(inf.categorical) if inf.categorical else "[]   # none: the unseen-category gate is not applicable"
    why = "\n".join(f"#   - {w}" for w in inf.why)
    labels = (
        f"\n  task: {inf.task}\n  classes: {_yaml_list(inf.classes)}"
        + (f"\n  positive_class: {_q(str(inf.positive_class))}" if inf.task == "binary" else "")
        if inf.classifier
        else ""
    )
    target_sign = "" if inf.classifier else f"\n    target_positive: {'true' if inf.positive else 'false'}"
    # The thresholds: each standard gate's own default (its spec), where the data says otherwise.
    inferred = {
        ("staging", "feature_drift"): f"{{max: {_num(drift)}}}   # {DRIFT_FACTOR:g}x the worst a random split "
        f"of this file shows ({inf.drift_floor:.3f})"
    }
    # Where the target is not always positive, a percentage error (MAPE) and a relative change
    # (noise) mean little: their gates are reported, never judged.
    advisory = (
        {}
        if inf.positive or inf.classifier
        else {g: "the target is not always positive" for g in ("mape", "noise_stability")}
    )
    if inf.classifier:
        inferred.update(_classifier_thresholds(inf))
    thresholds = {env: _threshold_lines(env, inferred, advisory, inf.task) for env in ("dev", "staging", "production")}
    pipeline_text = f"""# Pipeline config written by `run-pipeline init` from {data_path.name} ({inf.rows} rows).
# Every inference below says why; edit freely. Relative paths resolve against this folder.
# What init inferred:
{why}
model_config: model_config.yaml
default_env: staging
seed: 42
gate_tests: gates   # gates/test_gates.py: the standard suite, imported from the package

data:
  path: {_q(rel.as_posix())}
  target: {_q(inf.target)}{labels}
  id_columns: {_yaml_list(inf.ids)}   # kept beside the features, never among them
  rows_without_target: {"drop   # " + str(inf.without_target) + " rows of the file have no target" if inf.without_target else "refuse"}
  drop_columns: {_yaml_list(inf.dropped)}{"   # row numbers: never a feature" if inf.dropped else ""}
  numeric_features: {_yaml_list(inf.numeric)}
  categorical_features: {cats}
  contract:
    min_rows: {max(20, inf.rows // 10)}   # a tenth of this file
    max_missing_share: 0.5
    missing_share:{"" if missing else " {}"}
{missing}
    ranges:
{ranges}
    allow_duplicate_rows: {"true" if inf.duplicates else "false"}{target_sign}

split:
  test_size: 0.2
  seed: 42

mlflow:
  # Embedded store beside this config: a SQLite file and an artifact folder, no server.
  tracking_uri: sqlite:///mlruns/mlflow.db
  artifact_location: mlruns/artifacts
  experiment: {name}
  registered_model: {name}

gates:
  champion:
    test: non_inferiority      # the candidate is shown to be at most champion_mae's margin worse
    bootstrap_resamples: 2000
  slices:
{slice_lines}
  residuals:
    scale: {scale}
    censored: {censored}
    order_by: {order}
  robustness:
    # Noise on each numeric column: sd the smaller of half its resolution (the median step
    # between its distinct values) and 1 % of its spread: a measurement error within the
    # column's rounding, never kilometres of a coordinate nor half a car. Declare a
    # column's own sd under noise_sd: {{column: sd}}.
    noise_scale: resolution
    noise_steps: 0.5
    noise_relative_sd: 0.01
    # Domain knowledge the model must respect, e.g.
    #   - {{feature: some_size_column, direction: increasing, step_relative: 0.1}}
    # none stated: the directional gate is not applicable until there is one.
    directional: []

# Environments: each threshold is keyed by gate id; every one is required unless it says
# `required: false` (then it is advisory: reported, never failing the run).
environments:
  dev:
    extends: staging
    strictness: 0
    thresholds:
{thresholds["dev"]}
  staging:
    strictness: 1
    # Timing gates judge intervals, with a reference workload (~2 ms on an idle core) timed
    # between their rounds: on a busy machine they are inconclusive (refusing), never passed.
    thresholds:
{thresholds["staging"]}
  production:
    extends: staging
    strictness: 2
    approval: required         # a person approves the evidence: run-pipeline approve VERSION --env production
    thresholds:
{thresholds["production"]}
"""
    if inf.rows < 2000:  # a small data set: fewer, larger leaves overfit less
        params = (
            "    # Small data: fewer trees and leaves of 30 rows or more overfit less (sklearn's\n"
            "    # diabetes data: R2 0.48 against 0.37 with 300 trees of 10-row leaves, and steadier under noise).\n"
            "    max_iter: 100\n    min_samples_leaf: 30"
        )
    else:
        params = "    max_iter: 300\n    min_samples_leaf: 20"
    if inf.classifier:
        # A booster adds trees after its probabilities stop improving, and a classifier's log
        # loss then climbs above the class prior's (Caravan, 6 % positives: 1.12x the prior's
        # after 300 trees). It stops once 10 % of its training rows, held out (stratified,
        # seeded), stop improving for 20 rounds.
        params += (
            "\n    # Stops adding trees when a held-out tenth of the training rows stops improving.\n"
            "    early_stopping: true\n    validation_fraction: 0.1\n    n_iter_no_change: 20"
        )
    if inf.task == "binary":
        share = inf.shares[str(inf.positive_class)]
        if share < RARE_POSITIVE:
            # At 0.5 a model of a rare event decides nobody positive (Caravan, 6 %: balanced
            # accuracy 0.50): a row is flagged where it is likelier than the file's share.
            target_line = (
                f"  decision_threshold: {_num(_round(share))}   # '{inf.positive_class}' is rare ({share:.1%}): "
                "positive where likelier than its share\n"
            )
        else:
            target_line = "  decision_threshold: 0.5   # positive where its probability is at least this\n"
    elif inf.classifier:
        target_line = ""
    else:
        how = "positive, right-skewed target" if inf.log_target else "the target as it is"
        target_line = f"  log_target: {'true' if inf.log_target else 'false'}   # {how}\n"
    model_text = f"""# Model config written by `run-pipeline init`: a gradient-boosted tree ensemble, which
# needs no scaling and handles missing values and categories as they come.
model:
  type: hist_gradient_boosting
{target_line}  params:
    learning_rate: 0.05
{params}
"""
    return pipeline_text, model_text


GATE_FILE = '''"""This project's quality gates: the standard suite, imported (upgrades come with the package).
Add a gate of your own here: a wire registered with pipeline.catalogue.spec (or a test marked
@family(...)) and one threshold line."""

''' + "".join(f"from pipeline.gates.{family} import *  # noqa: F401,F403\n" for family in sorted(STANDARD_FAMILIES))


def write(
    data_path: Path,
    target: str,
    out: Path,
    force: bool = False,
    task: str | None = None,
    positive_class: str | None = None,
) -> tuple[Inferred, list[Path]]:
    """Infer, render and write the starter project into `out`; nothing is written on bad input."""
    data_path = Path(data_path)
    if not data_path.is_file():
        raise InputError(f"--data {data_path}: no such file")
    out = Path(out)
    files: dict[Path, str] = {  # the two configs are rendered below, once the data is read
        out / "pipeline_config.yaml": "",
        out / "model_config.yaml": "",
        out / "gates" / "test_gates.py": GATE_FILE,
    }
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise InputError(
            f"{existing[0]}: already exists; init never overwrites a config (use --force, or another --out)"
        )
    inf = infer(data_path, target, task, positive_class)
    out.mkdir(parents=True, exist_ok=True)
    # What init writes must load; it is tried in a scratch folder beside, so that a bug of
    # ours never leaves a broken config (nor replaces a working one under --force).
    scratch = Path(tempfile.mkdtemp(dir=out, prefix=".init-"))
    try:
        p_text, m_text = render(inf, data_path, scratch)
        (scratch / "pipeline_config.yaml").write_text(p_text)
        (scratch / "model_config.yaml").write_text(m_text)
        (scratch / "gates").mkdir()
        (scratch / "gates" / "test_gates.py").write_text(GATE_FILE)
        # ... and pass the checks `run-pipeline check` makes, on this data.
        settings = config_mod.load(scratch / "pipeline_config.yaml")
        dataset = data_mod.load(settings)
        problems = data_mod.config_problems(
            settings, data_mod.read_header(data_path), dataset.features, rows=len(dataset.frame)
        )
        if problems:
            raise InputError(
                f"{data_path}: init would write a config that its own check refuses ({problems[0]}); nothing written"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    files[out / "pipeline_config.yaml"], files[out / "model_config.yaml"] = render(inf, data_path, out)
    for path, text in files.items():
        write_atomic(path, text.encode())
    return inf, list(files)

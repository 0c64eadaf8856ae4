"""Features: the preprocessing each model type needs, built from a FeatureSpec."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from pipeline.data import FeatureSpec

# Up to this many rows a frame is read as one object array (one pandas call); above it,
# column by column (no boxing of every number). Both give the same values.
_ROWWISE_MAX = 64


class FrameEncoder(TransformerMixin, BaseEstimator):
    """Numeric columns as float64, categorical columns as ordinal codes, in one numpy array.

    The same numbers as ColumnTransformer([("num", "passthrough", numeric),
    ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=u,
    encoded_missing_value=u), categorical)]): numeric columns first, as float64 (pandas'
    missing values, NaN and pd.NA alike, become NaN); then each categorical value's index
    in the sorted categories seen in fit, and `unknown_value` for a missing or unseen one.

    Why not that ColumnTransformer: with pandas output (needed so that nullable Float64
    columns with pd.NA reach the booster) it costs ~11 ms per single-row predict (9 ms of
    it OrdinalEncoder's per-column checks); this is ~0.15 ms: one object array for a few
    rows, one factorize per column for many. Columns are found by name, so order does not
    matter and extra columns are ignored.

    `max_categories`: a column with more distinct values keeps its most frequent ones (ties
    in sorted order) and codes the rest as unknown, as OrdinalEncoder(max_categories=...)
    groups infrequent ones: the booster splits on at most 255 categories, and a county name
    of 272 values stopped a real file's training.
    """

    def __init__(self, numeric=(), categorical=(), unknown_value=np.nan, max_categories=None):
        self.numeric = numeric
        self.categorical = categorical
        self.unknown_value = unknown_value
        self.max_categories = max_categories

    def fit(self, X: pd.DataFrame, y=None) -> FrameEncoder:
        frame = self._frame(X)
        self.numeric_ = [str(c) for c in self.numeric]
        self.categorical_ = [str(c) for c in self.categorical]
        self._check_columns(frame.columns)
        self.categories_ = []
        for col in self.categorical_:
            values = frame[col].to_numpy(dtype=object)
            present = values[~pd.isna(values)]
            try:
                cats = sorted(set(present.tolist()))
            except TypeError:
                raise TypeError(f"column '{col}': categories must be all text or all numbers") from None
            if self.max_categories is not None and len(cats) > self.max_categories:
                counts = pd.Series(present).value_counts(sort=False)
                ranked = sorted(cats, key=lambda c: -counts[c])  # stable: ties stay in sorted order
                cats = sorted(ranked[: self.max_categories])
            self.categories_.append(np.array(cats, dtype=object))
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "categories_")
        return np.asarray([*self.numeric_, *self.categorical_], dtype=object)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "categories_")
        frame = self._frame(X)
        if len(frame) <= _ROWWISE_MAX:
            return self._transform_rows(frame)
        return self._transform_columns(frame)

    # ------------------------------------------------------------ internals

    @staticmethod
    def _frame(X) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise ValueError(f"FrameEncoder needs a pandas DataFrame with named columns, got {type(X).__name__}")
        return X

    def _check_columns(self, columns: pd.Index) -> np.ndarray:
        wanted = pd.Index([*self.numeric_, *self.categorical_], dtype=object)
        if not columns.is_unique:
            dup = columns[columns.duplicated()][0]
            raise ValueError(f"column '{dup}' appears more than once")
        pos = columns.get_indexer(wanted)
        if (pos < 0).any():
            missing = [c for c, p in zip(wanted, pos) if p < 0]
            raise ValueError(f"columns are missing: {set(missing)}")
        return pos

    def _positions(self, columns: pd.Index) -> np.ndarray:
        # Single rows mostly come with the same columns in the same order: look positions
        # up again only when the columns differ from the last call's.
        cached = getattr(self, "_positions_cache", None)
        if cached is not None and (cached[0] is columns or cached[0].equals(columns)):
            return cached[1]
        pos = self._check_columns(columns)
        self._positions_cache = (columns, pos)
        return pos

    def _lookups(self) -> list[dict]:
        maps = getattr(self, "_lookup_cache", None)
        if maps is None:
            maps = [{v: float(i) for i, v in enumerate(cats.tolist())} for cats in self.categories_]
            self._lookup_cache = maps
        return maps

    def __getstate__(self):
        # Caches are rebuilt on first use; the saved model holds parameters and fitted state only.
        state = dict(super().__getstate__())
        for key in ("_positions_cache", "_lookup_cache"):
            state.pop(key, None)
        return state

    def _transform_rows(self, frame: pd.DataFrame) -> np.ndarray:
        pos = self._positions(frame.columns)
        n_num = len(self.numeric_)
        values = frame.to_numpy(dtype=object)
        out = np.empty((len(frame), len(pos)), dtype=np.float64)
        if n_num:
            try:
                out[:, :n_num] = values[:, pos[:n_num]].astype(np.float64)
            except (TypeError, ValueError):  # pd.NA and friends: the column-wise conversion knows them
                for j, col in enumerate(self.numeric_):
                    out[:, j] = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
        unknown = float(self.unknown_value)
        cats = values[:, pos[n_num:]]
        for j, lookup in enumerate(self._lookups()):
            out[:, n_num + j] = [_code(lookup, v, unknown) for v in cats[:, j].tolist()]
        return out

    def _transform_columns(self, frame: pd.DataFrame) -> np.ndarray:
        self._positions(frame.columns)
        n_num = len(self.numeric_)
        out = np.empty((len(frame), n_num + len(self.categorical_)), dtype=np.float64)
        for j, col in enumerate(self.numeric_):
            out[:, j] = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
        unknown = float(self.unknown_value)
        for j, (col, lookup) in enumerate(zip(self.categorical_, self._lookups())):
            s = frame[col]
            try:
                # Each distinct value looked up once (the same dict as row by row); missing -> -1.
                codes, uniques = pd.factorize(s, use_na_sentinel=True)
            except TypeError:  # unhashable values: never a category
                out[:, n_num + j] = [_code(lookup, v, unknown) for v in s.to_numpy(dtype=object).tolist()]
                continue
            mapped = [_code(lookup, v, unknown) for v in np.asarray(uniques, dtype=object).tolist()]
            out[:, n_num + j] = np.asarray([*mapped, unknown], dtype=np.float64)[codes]
        return out


def _code(lookup: dict, value, unknown: float) -> float:
    try:
        return lookup.get(value, unknown)
    except TypeError:  # unhashable: never a category
        return unknown


def _ordinal(unknown: float) -> OrdinalEncoder:
    return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=unknown, encoded_missing_value=unknown)


BOOSTER_MAX_CATEGORIES = 255  # HistGradientBoosting's limit on a categorical feature's categories


def preprocessor(spec: FeatureSpec, model_type: str):
    """Column preparation for `model_type`; numeric columns first, then categorical.

    Gradient boosting takes missing values and categories natively (one ordinal encoding,
    missing and unseen both NaN): fewer transformers per row than impute + one-hot, and
    HistGradientBoosting refuses the sparse output a one-hot encoder gives.
    """
    num, cat = list(spec.numeric), list(spec.categorical)
    if model_type == "hist_gradient_boosting":
        # One pass over the frame, pandas' nullable dtypes (pd.NA) included: see FrameEncoder.
        return FrameEncoder(numeric=num, categorical=cat, unknown_value=np.nan, max_categories=BOOSTER_MAX_CATEGORIES)
    if model_type == "random_forest":
        parts = [
            ("num", SimpleImputer(strategy="median"), num),
            ("cat", _ordinal(-1), cat),
        ]
    elif model_type in ("ridge", "logistic_regression"):  # linear: scaled, imputed, one-hot
        parts = [
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), num),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, sparse_output=False),
                ),
                cat,
            ),
        ]
    else:  # config validation makes this unreachable
        raise ValueError(f"unknown model type {model_type}")
    parts = [p for p in parts if p[2]]
    return ColumnTransformer(parts, verbose_feature_names_out=False, remainder="drop")

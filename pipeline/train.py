"""Train: build the configured sklearn Pipeline and fit it on the training split."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

# The booster's tree class, to rebuild saved trees (the type skops is told to trust anyway).
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from pipeline.config import Settings
from pipeline.data import FeatureSpec
from pipeline.errors import InputError
from pipeline.features import preprocessor

# Rows per block of a large predict through the whole pipeline (~37 MB of features at 70 columns).
_PREDICT_BLOCK = 65536


class RowBlockPipeline(Pipeline):
    """sklearn's Pipeline, predicting a large frame in blocks of rows.

    Used for the booster, whose prediction for a row depends on that row alone (the
    batch_independent gate checks it, exactly): the same numbers as one call, but the
    encoded feature matrix exists for one block at a time, not for the whole frame
    (~0.56 GB at a million rows). Up to _PREDICT_BLOCK rows, and with predict parameters,
    it is Pipeline.predict itself.
    """

    def predict(self, X, **params):
        return self._in_blocks(super().predict, X, **params)

    def predict_proba(self, X, **params):
        return self._in_blocks(super().predict_proba, X, **params)

    @staticmethod
    def _in_blocks(method, X, **params):
        n = len(X) if isinstance(X, pd.DataFrame) else 0
        if n <= _PREDICT_BLOCK or params:
            return method(X, **params)
        return np.concatenate([method(X.iloc[start : start + _PREDICT_BLOCK]) for start in range(0, n, _PREDICT_BLOCK)])


if TYPE_CHECKING:  # what the mixin overrides, for the type checker (its classes are both boosters)
    from sklearn.ensemble import HistGradientBoostingRegressor as _Booster
else:
    _Booster = object


class _CodedBooster(_Booster):
    """sklearn's HistGradientBoosting models for features that arrive already encoded.

    With categorical features, sklearn's booster passes every predict's input through its own
    ColumnTransformer + OrdinalEncoder (values -> index among the categories seen in fit,
    categorical columns first). FrameEncoder hands it categories as float codes already,
    and for one row that re-encoding cost ~6.5 ms of a ~10 ms predict (profile of 1,000
    single-row predicts; the 600 trees take ~3 ms). Here it is one searchsorted per
    categorical column: the same codes (missing and unseen alike NaN), so the same
    predictions to the last bit (tests/test_model_design.py compares with sklearn's own).
    Fitting is sklearn's, unchanged; any input other than a finite float64 array with the
    fitted number of columns goes through sklearn's own path and its errors.
    """

    def _preprocess_X(self, X, *, reset):
        pre = getattr(self, "_preprocessor", None)
        if reset or pre is None or not self._plain_array(X):
            return super()._preprocess_X(X, reset=reset)
        mask = np.asarray(self.is_categorical_, dtype=bool)
        cat_cols, num_cols = np.flatnonzero(mask), np.flatnonzero(~mask)
        cats = X[:, cat_cols]
        if np.isinf(cats).any():  # sklearn's encoder refuses infinity: let it say so
            return super()._preprocess_X(X, reset=reset)
        out = np.empty(X.shape, dtype=np.float64)
        for k, known in enumerate(self._known_categories()):
            v = cats[:, k]
            if len(known) == 0:
                out[:, k] = np.nan
                continue
            pos = np.searchsorted(known, v)
            found = known[np.minimum(pos, len(known) - 1)] == v  # NaN never equals
            out[:, k] = np.where(found, pos, np.nan)
        out[:, len(cat_cols) :] = X[:, num_cols]
        return out

    def _plain_array(self, X) -> bool:
        return (
            isinstance(X, np.ndarray)
            and X.ndim == 2
            and X.dtype == np.float64
            and X.shape[1] == getattr(self, "n_features_in_", -1)
            and not hasattr(self, "feature_names_in_")
        )

    def _known_categories(self) -> list[np.ndarray]:
        """The encoder's sorted categories per categorical column, without NaN (sklearn's order)."""
        known = self.__dict__.get("_known_cache")
        if known is None:
            known = []
            for cats in self._preprocessor.named_transformers_["encoder"].categories_:
                cats = np.asarray(cats, dtype=np.float64)
                known.append(cats[~np.isnan(cats)])
            self.__dict__["_known_cache"] = known
        return known

    def __getstate__(self):
        # Saved: sklearn's fitted state, the trees as a few concatenated arrays instead of one
        # object of three arrays per tree (600 trees: skops wrote ~1,900 arrays into its zip
        # one by one; saving and loading the model took ~4x longer).
        state = dict(super().__getstate__())
        state.pop("_known_cache", None)  # rebuilt on first use
        if state.get("_predictors") is not None:
            state["_predictors"] = _pack_trees(state["_predictors"])
        return state

    def __setstate__(self, state):
        state = dict(state)
        if isinstance(state.get("_predictors"), dict):
            state["_predictors"] = _unpack_trees(state["_predictors"])
        super().__setstate__(state)


class CodedHistGradientBoostingRegressor(_CodedBooster, HistGradientBoostingRegressor):
    """sklearn's HistGradientBoostingRegressor on FrameEncoder's codes (_CodedBooster)."""


class CodedHistGradientBoostingClassifier(_CodedBooster, HistGradientBoostingClassifier):
    """sklearn's HistGradientBoostingClassifier on FrameEncoder's codes (_CodedBooster)."""


def _pack_trees(predictors: list[list[TreePredictor]]) -> dict:
    """The booster's trees (one TreePredictor per iteration and output) as concatenated arrays."""
    flat = [t for per_iteration in predictors for t in per_iteration]
    parts = {"nodes": "nodes", "binned": "binned_left_cat_bitsets", "raw": "raw_left_cat_bitsets"}
    packed: dict[str, np.ndarray] = {
        "shape": np.array([len(predictors), len(predictors[0]) if predictors else 0], dtype=np.int64)
    }
    for key, attr in parts.items():
        arrays = [getattr(t, attr) for t in flat]
        packed[key] = np.concatenate(arrays) if arrays else np.empty(0)
        packed[f"{key}_counts"] = np.array([len(a) for a in arrays], dtype=np.int64)
    return packed


def _unpack_trees(packed: dict) -> list[list[TreePredictor]]:
    """The TreePredictors _pack_trees packed, each with its own contiguous arrays."""

    def split(key: str) -> list[np.ndarray]:
        counts = np.asarray(packed[f"{key}_counts"])
        if not len(counts):
            return []
        return [np.ascontiguousarray(a) for a in np.split(np.asarray(packed[key]), np.cumsum(counts)[:-1])]

    flat = [TreePredictor(n, b, r) for n, b, r in zip(split("nodes"), split("binned"), split("raw"))]
    n_iter, per_iteration = (int(x) for x in packed["shape"])
    return [flat[i * per_iteration : (i + 1) * per_iteration] for i in range(n_iter)]


def build(settings: Settings, spec: FeatureSpec) -> Pipeline:
    """An unfitted Pipeline(preprocess -> model), a regressor or a classifier as data.task says, seeded from the config."""
    m = settings.model
    params = dict(m.params)
    if isinstance(params.get("monotonic_cst"), dict):
        # Named constraints, aligned here to the column order the preprocessor outputs.
        named = params["monotonic_cst"]
        unknown = sorted(set(named) - set(spec.numeric))
        if unknown:
            raise InputError(
                f"{settings.model_file or settings.config_path}: model.params.monotonic_cst: '{unknown[0]}' is not a numeric feature"
            )
        params["monotonic_cst"] = [int(named.get(c, 0)) for c in spec.columns]
    classifier = settings.data.classifier
    try:
        if m.type == "hist_gradient_boosting":
            n_num = len(spec.numeric)
            cats = list(range(n_num, n_num + len(spec.categorical))) or None
            # Native categorical splits on FrameEncoder's codes, without re-encoding them per predict.
            booster = CodedHistGradientBoostingClassifier if classifier else CodedHistGradientBoostingRegressor
            reg = booster(categorical_features=cats, random_state=settings.seed, **params)
        elif m.type == "random_forest":
            forest = RandomForestClassifier if classifier else RandomForestRegressor
            reg = forest(random_state=settings.seed, **params)
        elif m.type == "logistic_regression":
            reg = LogisticRegression(random_state=settings.seed, **{"max_iter": 1000, **params})
        else:
            reg = Ridge(random_state=settings.seed, **params)
    except TypeError as e:
        # sklearn: "__init__() got an unexpected keyword argument 'x'"
        raise InputError(
            f"{settings.model_file or settings.config_path}: model.params: {str(e).split(') ', 1)[-1]}"
        ) from None
    if m.log_target:
        # The log scale is where price errors are roughly symmetric; predictions come back in units.
        reg = TransformedTargetRegressor(regressor=reg, func=np.log, inverse_func=np.exp, check_inverse=False)
    steps = [("preprocess", preprocessor(spec, m.type)), ("classifier" if classifier else "regressor", reg)]
    # The booster's prediction for a row is that row's alone: large frames go in blocks.
    return RowBlockPipeline(steps) if m.type == "hist_gradient_boosting" else Pipeline(steps)


def fit(settings: Settings, spec: FeatureSpec, train: pd.DataFrame) -> Pipeline:
    """Fit the configured model on the training frame."""
    model = build(settings, spec)
    try:
        y = train[settings.data.target]
        # A classifier learns the class codes as integers: its classes_ are 0, 1, ...
        model.fit(train[spec.columns], y.astype("int64") if settings.data.classifier else y)
    except ValueError as e:
        raise InputError(
            f"{settings.model_file or settings.config_path}: model.params: {str(e).splitlines()[0]}"
        ) from None
    return model

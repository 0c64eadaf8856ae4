"""Train: build the configured sklearn Pipeline and fit it on the training split."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from pipeline.config import Settings
from pipeline.data import FeatureSpec
from pipeline.errors import InputError
from pipeline.features import preprocessor


def build(settings: Settings, spec: FeatureSpec) -> Pipeline:
    """An unfitted Pipeline(preprocess -> regressor), seeded from the config."""
    m = settings.model
    params = dict(m.params)
    if isinstance(params.get("monotonic_cst"), dict):
        # Named constraints, aligned here to the column order the preprocessor outputs.
        named = params["monotonic_cst"]
        unknown = sorted(set(named) - set(spec.numeric))
        if unknown:
            raise InputError(f"{settings.config_path}: model.params.monotonic_cst: '{unknown[0]}' is not a numeric feature")
        params["monotonic_cst"] = [int(named.get(c, 0)) for c in spec.columns]
    try:
        if m.type == "hist_gradient_boosting":
            n_num = len(spec.numeric)
            cats = list(range(n_num, n_num + len(spec.categorical))) or None
            reg = HistGradientBoostingRegressor(categorical_features=cats, random_state=settings.seed, **params)
        elif m.type == "random_forest":
            reg = RandomForestRegressor(random_state=settings.seed, **params)
        else:
            reg = Ridge(random_state=settings.seed, **params)
    except TypeError as e:
        # sklearn: "__init__() got an unexpected keyword argument 'x'"
        raise InputError(f"{settings.config_path}: model.params: {str(e).split(') ', 1)[-1]}") from None
    if m.log_target:
        # The log scale is where price errors are roughly symmetric; predictions come back in units.
        reg = TransformedTargetRegressor(regressor=reg, func=np.log, inverse_func=np.exp, check_inverse=False)
    return Pipeline([("preprocess", preprocessor(spec, m.type)), ("regressor", reg)])


def fit(settings: Settings, spec: FeatureSpec, train: pd.DataFrame) -> Pipeline:
    """Fit the configured model on the training frame."""
    model = build(settings, spec)
    try:
        model.fit(train[spec.columns], train[settings.data.target])
    except ValueError as e:
        raise InputError(f"{settings.config_path}: model.params: {str(e).splitlines()[0]}") from None
    return model

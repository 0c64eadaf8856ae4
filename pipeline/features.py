"""Features: the preprocessing each model type needs, built from a FeatureSpec."""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from pipeline.data import FeatureSpec


def _ordinal(unknown: float) -> OrdinalEncoder:
    return OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=unknown, encoded_missing_value=unknown
    )


def preprocessor(spec: FeatureSpec, model_type: str) -> ColumnTransformer:
    """Column preparation for `model_type`; numeric columns first, then categorical.

    Gradient boosting takes missing values and categories natively (one ordinal encoder,
    missing and unseen both NaN): fewer transformers per row than impute + one-hot, and
    HistGradientBoosting refuses the sparse output a one-hot encoder gives.
    """
    num, cat = list(spec.numeric), list(spec.categorical)
    if model_type == "hist_gradient_boosting":
        parts = [("num", "passthrough", num), ("cat", _ordinal(np.nan), cat)]
    elif model_type == "random_forest":
        parts = [
            ("num", SimpleImputer(strategy="median"), num),
            ("cat", _ordinal(-1), cat),
        ]
    elif model_type == "ridge":
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
    ct = ColumnTransformer(parts, verbose_feature_names_out=False, remainder="drop")
    if model_type == "hist_gradient_boosting":
        # Passed-through numeric columns keep their dtype: a nullable Float64 column with
        # pandas.NA cannot be stacked into a numpy array, so hand the booster a frame.
        ct.set_output(transform="pandas")
    return ct

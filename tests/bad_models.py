"""Deliberately bad models for tests/test_gate_failures.py: each one breaks one gate family.

They live in an importable module, not in the test file, because the gates load them back
from MLflow's skops format in a pytest subprocess, and skops rebuilds a class from its
module path: the subprocess gets this folder on PYTHONPATH and imports `bad_models`.

Every wrapper is a proper sklearn estimator (constructor parameters only in __init__,
fitted state in trailing-underscore attributes), so the determinism gate can clone and
refit it exactly as it does the configured model.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.dummy import DummyRegressor
from sklearn.pipeline import Pipeline


def constant_model(pipeline: Pipeline) -> Pipeline:
    """The configured pipeline with its regressor replaced by the training median: learns nothing."""
    steps = [(name, clone(step)) for name, step in pipeline.steps[:-1]]
    return Pipeline([*steps, ("regressor", DummyRegressor(strategy="median"))])


class Wrapper(RegressorMixin, BaseEstimator):
    """Delegates to an inner regressor; subclasses change how it is fitted or what it predicts."""

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X: pd.DataFrame, y) -> Wrapper:
        return self.adopt(clone(self.estimator).fit(X, y), X)

    def adopt(self, fitted, X: pd.DataFrame) -> Wrapper:
        """Take an inner model already fitted on X (what fit would give), saving a refit."""
        self.estimator_ = fitted
        self._learn(X)
        return self

    def _learn(self, X: pd.DataFrame) -> None:
        pass

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.estimator_.predict(X), dtype=float)


class UnseededFit(Wrapper):
    """Fits on a target jittered by the global, unseeded NumPy RNG: every refit differs a little."""

    def __init__(self, estimator=None, jitter: float = 1e-3):
        self.estimator = estimator
        self.jitter = jitter

    def fit(self, X: pd.DataFrame, y) -> UnseededFit:
        y = np.asarray(y, dtype=float)
        noisy = y * (1.0 + self.jitter * np.random.standard_normal(len(y)))  # no seed, on purpose
        return self.adopt(clone(self.estimator).fit(X, noisy), X)


class SlowPredict(Wrapper):
    """Pays a fixed overhead on every predict call (a remote lookup, say): `delay_s` seconds."""

    def __init__(self, estimator=None, delay_s: float = 0.15):
        self.estimator = estimator
        self.delay_s = delay_s

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        time.sleep(self.delay_s)
        return super().predict(X)


class RefusesMissing(Wrapper):
    """Raises, as an sklearn estimator without an imputer does, on a missing value in any column
    that had none at fit time (the evaluation rows have none there, so the metrics are the inner model's)."""

    def _learn(self, X: pd.DataFrame) -> None:
        self.complete_columns_ = [c for c in X.columns if not X[c].isna().any()]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        for col in self.complete_columns_:
            if X[col].isna().any():
                raise ValueError(f"Input X contains NaN in column '{col}', which had no missing value at fit time")
        return super().predict(X)


class ShrinksAboveKnee(Wrapper):
    """Marks large houses down: above `knee` of `feature`, predictions scale by (x / knee) ** -power,
    so there the prediction falls as the feature rises."""

    def __init__(self, estimator=None, feature: str = "Gr_Liv_Area", knee: float = 2500.0, power: float = 0.5):
        self.estimator = estimator
        self.feature = feature
        self.knee = knee
        self.power = power

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        x = X[self.feature].to_numpy(dtype=float)
        factor = np.minimum(1.0, (np.maximum(x, 1e-9) / self.knee) ** -self.power)
        return super().predict(X) * np.where(np.isnan(factor), 1.0, factor)


class WrongInOneSlice(Wrapper):
    """Scales predictions by `factor` where `column` equals `value`, and is the inner model elsewhere."""

    def __init__(self, estimator=None, column: str = "Neighborhood", value: str = "Sawyer", factor: float = 1.25):
        self.estimator = estimator
        self.column = column
        self.value = value
        self.factor = factor

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        hit = (X[self.column].astype(object) == self.value).fillna(False).to_numpy(dtype=bool)
        return super().predict(X) * np.where(hit, self.factor, 1.0)


class RareBlunders(Wrapper):
    """Right on most houses, off by `factor` on about one in `every`: heavy-tailed residuals.

    Which house is hit depends only on its text columns `key_columns` (a CRC32 of their values,
    missing as empty), so numeric noise, column order and wider dtypes never change the choice.
    """

    def __init__(self, estimator=None, key_columns: tuple[str, ...] = (), every: int = 25, factor: float = 1.6):
        self.estimator = estimator
        self.key_columns = key_columns
        self.every = every
        self.factor = factor

    def hits(self, X: pd.DataFrame) -> np.ndarray:
        keys = X[list(self.key_columns)].astype(object)
        keys = keys.where(keys.notna(), "")
        text = ["\x1f".join(map(str, row)) for row in keys.itertuples(index=False, name=None)]
        return np.array([zlib.crc32(t.encode()) % self.every == 0 for t in text], dtype=bool)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return super().predict(X) * np.where(self.hits(X), self.factor, 1.0)


class NoisyCopy(Wrapper):
    """The inner model's prediction times (1 + e), e ~ N(0, `sd`) drawn per row from a CRC32 of its
    values (the same row gets the same e in any batch): a little worse on average, and noisy."""

    def __init__(self, estimator=None, sd: float = 0.02):
        self.estimator = estimator
        self.sd = sd

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        from scipy.stats import norm

        rows = X.astype(object).where(X.notna(), "")
        u = np.array([(zlib.crc32("\x1f".join(map(str, r)).encode()) + 0.5) / 2**32 for r in rows.itertuples(index=False, name=None)])
        return super().predict(X) * (1.0 + self.sd * norm.ppf(u))


class BusyPredict(Wrapper):
    """Computes for `cpu_s` seconds of its own CPU time on every predict call (a heavy feature
    step, say): slower than the configured model, within staging's budget on an idle machine."""

    def __init__(self, estimator=None, cpu_s: float = 0.05):
        self.estimator = estimator
        self.cpu_s = cpu_s

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        end = time.process_time() + self.cpu_s
        while time.process_time() < end:
            pass
        return super().predict(X)


class Overconfident(ClassifierMixin, BaseEstimator):
    """A classifier whose probabilities are pushed towards 0 and 1 (each class's log-probability
    x `factor`, renormalised): it ranks rows as the inner model does (the same ROC AUC) and is
    sure where it should not be, so its log loss is far worse."""

    def __init__(self, estimator=None, factor: float = 4.0):
        self.estimator = estimator
        self.factor = factor

    def fit(self, X: pd.DataFrame, y) -> Overconfident:
        return self.adopt(clone(self.estimator).fit(X, y), X)

    def adopt(self, fitted, X: pd.DataFrame) -> Overconfident:
        self.estimator_ = fitted
        self.classes_ = np.asarray(fitted.classes_)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        z = self.factor * np.log(np.clip(self.estimator_.predict_proba(X), 1e-12, 1.0))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

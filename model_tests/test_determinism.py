"""Determinism gates: the same inputs and seed give the same predictions, however asked."""

import numpy as np
import pytest
from sklearn.base import clone

from pipeline import figures, registry
from pipeline import robustness as rb

pytestmark = [pytest.mark.gates, pytest.mark.determinism]


@pytest.fixture(scope="module")
def compared(eval_predictions, feature_spec, pipeline_settings):
    """The evaluation rows these gates compare, with the session's predictions of them:
    every row, or a seeded sample of compare_rows: a prediction that changes between two
    asks shows on any rows."""
    X = eval_predictions.frame[feature_spec.columns]
    at = rb.RowSample(pipeline_settings.seed, pipeline_settings.gates.determinism.compare_rows).positions(len(X))
    return X.iloc[at], eval_predictions.p[at]


def test_refit_identical(candidate_model, train_frame, compared, feature_spec, pipeline_settings, thresholds, record_gate):
    th = thresholds.prediction_difference
    n = min(len(train_frame), pipeline_settings.gates.determinism.refit_rows)
    # A bounded, seeded sample: determinism does not need the full training set to show.
    sample = train_frame.sample(n=n, random_state=pipeline_settings.seed)
    X, y = sample[feature_spec.columns], sample[pipeline_settings.data.target]
    rows, _ = compared
    first = clone(candidate_model).fit(X, y).predict(rows)
    second = clone(candidate_model).fit(X, y).predict(rows)
    diff = figures.max_abs_difference(first, second)
    record_gate("prediction_difference", diff, th, f"two refits on {n} rows with the same seed, compared on {len(rows)} rows")
    assert th.holds(diff), th.explain("max prediction difference between two refits", diff)


def test_predict_twice_identical(candidate_model, compared, thresholds, record_gate):
    th = thresholds.prediction_difference
    rows, p = compared
    diff = figures.max_abs_difference(p, candidate_model.predict(rows))
    record_gate("prediction_difference", diff, th, f"{len(rows)} rows predicted again")
    assert th.holds(diff), th.explain("max prediction difference between two predicts", diff)


def test_mlflow_roundtrip_identical(gate_session, candidate_model, compared, feature_spec, thresholds, record_gate, tmp_path):
    th = thresholds.prediction_difference
    if gate_session.model_uri:
        # Already saved by MLflow and loaded from it (mlflow.sklearn): the pyfunc flavour of the
        # same files, as serving loads them, must give the same numbers.
        loaded = registry.load_pyfunc(gate_session.settings, gate_session.model_uri)
        detail = f"{gate_session.model_uri} loaded as pyfunc vs as sklearn"
    else:
        loaded = registry.roundtrip_pyfunc(candidate_model, feature_spec, tmp_path / "model")
        detail = "saved with mlflow.sklearn (skops), loaded as pyfunc"
    rows, p = compared
    diff = figures.max_abs_difference(p, np.asarray(loaded.predict(rows), float))
    record_gate("prediction_difference", diff, th, f"{detail}; {len(rows)} rows")
    assert th.holds(diff), th.explain("max prediction difference after an MLflow save and load", diff)


def test_batch_independent(candidate_model, compared, pipeline_settings, thresholds, record_gate):
    th = thresholds.prediction_difference
    # The reference is the session's one predict of every row; the compared rows are asked
    # again in another order and in uneven chunks, so that each meets different neighbours.
    X, p = compared
    rng = np.random.default_rng(pipeline_settings.seed)
    order = rng.permutation(len(X))
    shuffled = np.empty(len(X))
    shuffled[order] = candidate_model.predict(X.iloc[order])
    cuts = np.sort(rng.choice(np.arange(1, len(X)), size=min(7, len(X) - 1), replace=False))
    bounds = [0, *cuts.tolist(), len(X)]
    chunked = np.concatenate([candidate_model.predict(X.iloc[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
    diff = max(figures.max_abs_difference(p, shuffled), figures.max_abs_difference(p, chunked))
    record_gate("prediction_difference", diff, th, f"{len(X)} rows shuffled, and predicted in uneven chunks")
    assert th.holds(diff), th.explain("max prediction difference across batch compositions and row order", diff)

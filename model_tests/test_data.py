"""Data gates: the evaluation rows meet the contract, are unseen, and have not drifted."""

import pytest

from pipeline import figures
from pipeline.errors import InputError

pytestmark = [pytest.mark.gates, pytest.mark.data]


def test_data_contract(gate_session, thresholds, record_gate):
    # The evaluation source is parsed and checked once per session, for every gate that needs it.
    path = gate_session.eval_source
    try:
        rows = len(gate_session.eval_frame)
        violations, detail = 0, f"{rows} rows of {path.name}"
    except InputError as e:
        violations, detail = 1, str(e)
    record_gate("contract_violations", violations, thresholds.contract_violations, detail)
    assert thresholds.contract_violations.holds(violations), thresholds.contract_violations.explain("contract violations", violations, detail)


def test_train_eval_overlap(train_frame, eval_frame, feature_spec, thresholds, record_gate):
    shared = figures.shared_rows(train_frame, eval_frame, feature_spec.columns)
    record_gate("train_eval_overlap", shared, thresholds.train_eval_overlap)
    assert thresholds.train_eval_overlap.holds(shared), thresholds.train_eval_overlap.explain("evaluation rows also in training", shared)


def test_feature_drift(train_frame, eval_frame, feature_spec, pipeline_settings, thresholds, record_gate):
    drift = figures.feature_drift(train_frame, eval_frame, list(feature_spec.numeric), list(feature_spec.categorical), pipeline_settings.gates.drift.min_rows)
    worst = drift[0]
    detail = f"worst column {worst.column} (p={worst.p_value:.3g}); {len(drift)} columns compared"
    record_gate("feature_drift", worst.statistic, thresholds.feature_drift, detail)
    assert thresholds.feature_drift.holds(worst.statistic), thresholds.feature_drift.explain(f"drift of {worst.column}", worst.statistic, detail)

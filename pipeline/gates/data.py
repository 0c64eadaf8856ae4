"""Data gates: the evaluation rows meet the contract, are unseen, have not drifted, and no feature is the target in disguise."""

from pipeline import checks
from pipeline.data import record_columns
from pipeline.errors import InputError
from pipeline.gates import family

__all__ = ["test_data_contract", "test_train_eval_overlap", "test_feature_drift", "test_target_leak"]


@family("data")
def test_data_contract(gate_session, gate):
    # The evaluation source is parsed and checked once per session, for every gate that needs it.
    try:
        finding = checks.data_contract(None, len(gate_session.eval_frame), gate_session.eval_source.name)
    except InputError as e:
        finding = checks.data_contract(str(e), 0, gate_session.eval_source.name)
    assert gate.holds(finding), gate.explain(finding)


@family("data")
def test_train_eval_overlap(gate_session, train_frame, eval_frame, feature_spec, pipeline_settings, gate):
    data = pipeline_settings.data
    columns, what = record_columns(eval_frame, list(feature_spec.columns), data.target, data.id_columns)
    finding = checks.train_eval_overlap(train_frame, eval_frame, columns, what=what, grouped=gate_session.split.grouped)
    assert gate.holds(finding), gate.explain(finding)


@family("data")
def test_feature_drift(train_frame, eval_frame, feature_spec, pipeline_settings, gate):
    finding = checks.feature_drift(train_frame, eval_frame, list(feature_spec.numeric), list(feature_spec.categorical),
                                   pipeline_settings.gates.drift.min_rows)
    assert gate.holds(finding), gate.explain(finding)


@family("data")
def test_target_leak(train_frame, eval_frame, feature_spec, pipeline_settings, gate):
    finding = checks.target_leak(train_frame, eval_frame, list(feature_spec.columns), pipeline_settings.data.target,
                                 log=pipeline_settings.model.log_target)
    assert gate.holds(finding), gate.explain(finding)

"""Determinism gates: the same inputs and seed give the same predictions, however asked.

Each compares the session's one predict of a bounded, seeded sample of evaluation rows
(`gates.determinism.compare_rows`) with the same rows asked again another way.
"""

from pipeline import checks, registry
from pipeline.gates import family

__all__ = ["test_refit_identical", "test_predict_twice_identical", "test_mlflow_roundtrip_identical", "test_batch_independent"]


@family("determinism")
def test_refit_identical(gate_session, candidate_model, train_frame, pipeline_settings, gate):
    # One refit compared with the model itself, or two on a bounded, seeded sample where the
    # training rows are many: determinism does not need the full training set to show.
    finding = checks.refit_identical(candidate_model, train_frame[gate_session.features.columns], train_frame[pipeline_settings.data.target],
                                     *gate_session.compared, refit_rows=pipeline_settings.gates.determinism.refit_rows, seed=pipeline_settings.seed)
    assert gate.holds(finding), gate.explain(finding)


@family("determinism")
def test_predict_twice_identical(gate_session, candidate_model, gate):
    finding = checks.predict_twice_identical(candidate_model, *gate_session.compared)
    assert gate.holds(finding), gate.explain(finding)


@family("determinism")
def test_mlflow_roundtrip_identical(gate_session, candidate_model, feature_spec, gate, tmp_path):
    if gate_session.model_uri:
        # Already saved by MLflow and loaded from it (mlflow.sklearn): the pyfunc flavour of the
        # same files, as serving loads them, must give the same numbers (without MLflow's warning
        # about installed packages, which serving prints where it loads the model).
        loaded = registry.load_pyfunc(gate_session.settings, gate_session.model_uri, check_requirements=False)
        how = f"{gate_session.model_uri} loaded as pyfunc vs as sklearn"
    else:
        loaded = registry.roundtrip_pyfunc(candidate_model, feature_spec, tmp_path / "model")
        how = "saved with mlflow.sklearn (skops), loaded as pyfunc"
    finding = checks.mlflow_roundtrip_identical(loaded, *gate_session.compared, how)
    assert gate.holds(finding), gate.explain(finding)


@family("determinism")
def test_batch_independent(gate_session, candidate_model, pipeline_settings, gate):
    finding = checks.batch_independent(candidate_model, *gate_session.compared, pipeline_settings.seed)
    assert gate.holds(finding), gate.explain(finding)

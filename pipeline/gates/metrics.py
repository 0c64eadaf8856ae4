"""Metric gates: R2, MAE, RMSE and MAPE on the evaluation rows, each against its threshold.

MAE, RMSE and MAPE also report the baseline's figure (a constant prediction, the training
target's median) and their ratio to it, which a threshold may bound (max_ratio_to_baseline)."""

from pipeline import checks
from pipeline.gates import family

__all__ = ["test_r2", "test_mae", "test_rmse", "test_mape"]


@family("metrics")
def test_r2(eval_predictions, gate):
    r2 = checks.r2(eval_predictions.y, eval_predictions.p)
    assert gate.holds(r2), gate.explain(r2)


@family("metrics")
def test_mae(eval_predictions, gate_session, gate):
    mae = checks.mae(eval_predictions.y, eval_predictions.p, gate_session.baseline_predictions)
    assert gate.holds(mae), gate.explain(mae)


@family("metrics")
def test_rmse(eval_predictions, gate_session, gate):
    rmse = checks.rmse(eval_predictions.y, eval_predictions.p, gate_session.baseline_predictions)
    assert gate.holds(rmse), gate.explain(rmse)


@family("metrics")
def test_mape(eval_predictions, gate_session, gate):
    mape = checks.mape(eval_predictions.y, eval_predictions.p, gate_session.baseline_predictions)
    assert gate.holds(mape), gate.explain(mape)

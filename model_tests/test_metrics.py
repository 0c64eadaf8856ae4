"""Metric gates: R2, MAE, RMSE and MAPE on the evaluation rows, each against its threshold."""

import pytest

from pipeline import figures

pytestmark = [pytest.mark.gates, pytest.mark.metrics]


def test_r2(eval_predictions, thresholds, record_gate):
    r2 = figures.r2(eval_predictions.y, eval_predictions.p)
    record_gate("r2", r2, thresholds.r2)
    assert thresholds.r2.holds(r2), thresholds.r2.explain("R2", r2)


def test_mae(eval_predictions, thresholds, record_gate):
    mae = figures.mae(eval_predictions.y, eval_predictions.p)
    record_gate("mae", mae, thresholds.mae)
    assert thresholds.mae.holds(mae), thresholds.mae.explain("MAE", mae)


def test_rmse(eval_predictions, thresholds, record_gate):
    rmse = figures.rmse(eval_predictions.y, eval_predictions.p)
    record_gate("rmse", rmse, thresholds.rmse)
    assert thresholds.rmse.holds(rmse), thresholds.rmse.explain("RMSE", rmse)


def test_mape(eval_predictions, thresholds, record_gate):
    mape = figures.mape(eval_predictions.y, eval_predictions.p)
    record_gate("mape", mape, thresholds.mape)
    assert thresholds.mape.holds(mape), thresholds.mape.explain("MAPE", mape)

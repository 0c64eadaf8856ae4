"""Residual gates (statsmodels): judged on effect sizes, with the p-values beside them.

At thousands of rows every p-value test rejects a real model; skew, kurtosis, spread
ratio and Durbin-Watson say how large the departure is.
"""

import numpy as np
import pytest

from pipeline import figures

pytestmark = [pytest.mark.gates, pytest.mark.residuals]


@pytest.fixture(scope="module")
def residuals(eval_predictions, pipeline_settings):
    """Residuals on the configured scale, a bounded seeded subsample kept in data order."""
    cfg = pipeline_settings.gates.residuals
    resid = figures.residuals(eval_predictions.y, eval_predictions.p, cfg.scale)
    pred = np.log(eval_predictions.p) if cfg.scale == "log" else eval_predictions.p
    if len(resid) > cfg.sample_size:
        rng = np.random.default_rng(pipeline_settings.seed)
        idx = np.sort(rng.choice(len(resid), size=cfg.sample_size, replace=False))
        resid, pred = resid[idx], pred[idx]
    return resid, pred


def test_residual_skew(residuals, thresholds, record_gate):
    n = figures.normality(residuals[0])
    detail = f"Jarque-Bera p={n.jb_p_value:.3g}"
    record_gate("residual_skew", abs(n.skew), thresholds.residual_skew, detail)
    assert thresholds.residual_skew.holds(abs(n.skew)), thresholds.residual_skew.explain("|residual skew|", abs(n.skew), detail)


def test_residual_kurtosis(residuals, thresholds, record_gate):
    n = figures.normality(residuals[0])
    detail = f"Jarque-Bera p={n.jb_p_value:.3g}"
    record_gate("residual_excess_kurtosis", n.excess_kurtosis, thresholds.residual_excess_kurtosis, detail)
    assert thresholds.residual_excess_kurtosis.holds(n.excess_kurtosis), thresholds.residual_excess_kurtosis.explain("residual excess kurtosis", n.excess_kurtosis, detail)


def test_residual_spread(residuals, thresholds, record_gate):
    s = figures.spread(*residuals)
    detail = f"top decile {s.top:.4g}, bottom decile {s.bottom:.4g}; Breusch-Pagan p={s.bp_p_value:.3g}"
    record_gate("residual_spread_ratio", s.ratio, thresholds.residual_spread_ratio, detail)
    assert thresholds.residual_spread_ratio.holds(s.ratio), thresholds.residual_spread_ratio.explain("residual spread ratio", s.ratio, detail)


def test_residual_autocorrelation(residuals, thresholds, record_gate):
    a = figures.autocorrelation(residuals[0])
    detail = f"Ljung-Box p={a.ljung_box_p_value:.3g} at lag {a.lags}, in the data's order"
    record_gate("durbin_watson", a.durbin_watson, thresholds.durbin_watson, detail)
    assert thresholds.durbin_watson.holds(a.durbin_watson), thresholds.durbin_watson.explain("Durbin-Watson", a.durbin_watson, detail)

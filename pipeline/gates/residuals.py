"""Residual gates (statsmodels): judged on effect sizes, with the p-values beside them.

At thousands of rows every p-value test rejects a real model; skew, kurtosis, spread
ratio and Durbin-Watson say how large the departure is. All four judge the session's one
bounded, seeded sample of residuals (`gates.residuals.sample_size`), which the report plots.
"""

from pipeline import checks
from pipeline.gates import family

__all__ = ["test_residual_skew", "test_residual_kurtosis", "test_residual_spread", "test_residual_autocorrelation"]


@family("residuals")
def test_residual_skew(gate_session, gate):
    finding = checks.residual_skew(gate_session.residuals)
    assert gate.holds(finding), gate.explain(finding)


@family("residuals")
def test_residual_kurtosis(gate_session, gate):
    finding = checks.residual_kurtosis(gate_session.residuals)
    assert gate.holds(finding), gate.explain(finding)


@family("residuals")
def test_residual_spread(gate_session, gate):
    finding = checks.residual_spread(gate_session.residuals)
    assert gate.holds(finding), gate.explain(finding)


@family("residuals")
def test_residual_autocorrelation(gate_session, gate):
    finding = checks.residual_autocorrelation(gate_session.residuals)
    assert gate.holds(finding), gate.explain(finding)

"""Residual gates (statsmodels): judged on effect sizes, with the p-values beside them.

At thousands of rows every p-value test rejects a real model; skew, kurtosis, spread
ratio and Durbin-Watson say how large the departure is. All four judge one bounded, seeded
sample of residuals (`gates.residuals.sample_size`), which the report plots; Durbin-Watson
reads it sorted by the rows' declared order (`gates.residuals.order_by`).
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
def test_residual_autocorrelation(gate_session, pipeline_settings, gate):
    # Durbin-Watson and Ljung-Box mean something only along the rows' real order (time): a file
    # sorted by location shows "autocorrelation" that is the sorting's, not the model's.
    cfg = pipeline_settings.gates.residuals
    if cfg.order_by is None:
        return gate.not_applicable(
            "the rows have no declared order (gates.residuals.order_by)", stated=pipeline_settings.stated(cfg, "order_by"),
            how="set gates.residuals.order_by to the columns of their time order, or to null when there is none")
    finding = checks.residual_autocorrelation(gate_session.ordered_residuals, order=", ".join(cfg.order_by))
    assert gate.holds(finding), gate.explain(finding)

"""Metric gates: R2, MAE, RMSE and MAPE on the evaluation rows, each against its threshold.

MAE, RMSE and MAPE also report the baseline's figure (a constant prediction, the training
target's median) and their ratio to it, which a threshold may bound (max_ratio_to_baseline)."""

from pipeline import checks
from pipeline.catalogue import Inputs, export, spec
from pipeline.checks import Finding


@spec(
    "metrics",
    defaults={
        "dev": "{min: 0}",
        "staging": "{min: 0.25}  # explains at least a quarter of the variance",
    },
)
def r2(run: Inputs) -> Finding:
    """R2 of the evaluation rows."""
    pr = run.session.predictions
    return checks.r2(pr.y, pr.p)


@spec(
    "metrics",
    defaults={
        "dev": "{max_ratio_to_baseline: 0.95}  # learnt anything at all",
        "staging": "{max_ratio_to_baseline: 0.8}  # at most 80 % of the error of predicting the training median",
    },
)
def mae(run: Inputs) -> Finding:
    """Mean absolute error, and its ratio to the baseline's."""
    pr = run.session.predictions
    return checks.mae(pr.y, pr.p, run.session.baseline_predictions)


@spec(
    "metrics",
    defaults={
        "dev": "{max_ratio_to_baseline: 0.95}",
        "staging": "{max_ratio_to_baseline: 0.85}",
    },
)
def rmse(run: Inputs) -> Finding:
    """Root mean squared error, and its ratio to the baseline's."""
    pr = run.session.predictions
    return checks.rmse(pr.y, pr.p, run.session.baseline_predictions)


@spec(
    "metrics",
    defaults={
        "dev": '{max_ratio_to_baseline: 0.95, unit: "%"}',
        "staging": '{max_ratio_to_baseline: 0.8, unit: "%"}',
    },
)
def mape(run: Inputs) -> Finding:
    """Mean absolute percentage error, and its ratio to the baseline's."""
    pr = run.session.predictions
    return checks.mape(pr.y, pr.p, run.session.baseline_predictions)


__all__ = export(__name__)

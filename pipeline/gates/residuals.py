"""Residual gates (statsmodels): judged on effect sizes, with the p-values beside them.

At thousands of rows every p-value test rejects a real model; skew, kurtosis, spread
ratio and Durbin-Watson say how large the departure is. All four judge one bounded, seeded
sample of residuals (`gates.residuals.sample_size`), which the report plots; Durbin-Watson
reads it sorted by the rows' declared order (`gates.residuals.order_by`).
"""

from pipeline import checks
from pipeline.catalogue import Inputs, NotApplicable, export, spec
from pipeline.checks import Finding
from pipeline.config import REGRESSION


@spec(
    "residuals",
    tasks=REGRESSION,
    defaults={
        "dev": "{max: 2.0, required: false}",
        "staging": "{max: 1.0}",
    },
)
def residual_skew(run: Inputs) -> Finding:
    """|skew| of the residual sample."""
    return checks.residual_skew(run.session.residuals)


@spec(
    "residuals",
    tasks=REGRESSION,
    defaults={
        "dev": "{max: 10, required: false}",
        "staging": "{max: 7}",
    },
)
def residual_kurtosis(run: Inputs) -> Finding:
    """Kurtosis of the residual sample."""
    return checks.residual_kurtosis(run.session.residuals)


@spec(
    "residuals",
    tasks=REGRESSION,
    defaults={
        "dev": "{max: 3.0, required: false}",
        "staging": "{max: 2.0}",
    },
)
def residual_spread(run: Inputs) -> Finding:
    """The residuals' spread in the widest band of predictions over the narrowest's."""
    return checks.residual_spread(run.session.residuals)


@spec(
    "residuals",
    tasks=REGRESSION,
    defaults={
        "dev": "{min: 1.5, max: 2.5, required: false}",
        "staging": "{min: 1.7, max: 2.3}",
    },
)
def residual_autocorrelation(run: Inputs) -> Finding | NotApplicable:
    """Durbin-Watson of the residuals along the rows' declared order.

    It means something only along the rows' real order (time): a file sorted by location
    shows "autocorrelation" that is the sorting's, not the model's."""
    settings = run.settings
    cfg = settings.gates.residuals
    if cfg.order_by is None:
        return NotApplicable(
            "the rows have no declared order (gates.residuals.order_by)",
            stated=settings.stated(cfg, "order_by"),
            how="set gates.residuals.order_by to the columns of their time order, or to null when there is none",
        )
    return checks.residual_autocorrelation(run.session.ordered_residuals, order=", ".join(cfg.order_by))


__all__ = export(__name__)

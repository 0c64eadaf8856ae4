"""Calibration gates (classifiers, in place of the residual gates): a probability of 0.3
should come true three times in ten.

The calibration error is judged beyond chance: on few rows a perfectly calibrated model's
binned frequencies stray from its probabilities too, so the figure is the expected
calibration error less what such a model with the same probabilities shows on as many rows
(figures.calibration); the calibration slope (binary) comes with its interval."""

from pipeline import checks
from pipeline.catalogue import Inputs, export, spec
from pipeline.checks import Finding
from pipeline.config import CLASSIFIERS


@spec(
    "calibration",
    tasks=CLASSIFIERS,
    defaults={
        "dev": "{max: 0.1}",
        "staging": "{max: 0.05}  # at most 5 points of miscalibration beyond what chance shows on these rows",
    },
)
def calibration_error(run: Inputs) -> Finding:
    """Expected calibration error beyond chance, with the reliability curve (multiclass: of the top label)."""
    pr = run.session.predictions
    return checks.calibration_error(pr.y, pr.p, seed=run.settings.seed)


@spec(
    "calibration",
    tasks=("binary",),
    defaults={
        "staging": "{min: 0.7, max: 1.4, required: false}  # below 1: over-confident probabilities",
    },
)
def calibration_slope(run: Inputs) -> Finding:
    """The slope of the logistic recalibration logit P(y) = a + b logit(p); 1 when calibrated."""
    pr = run.session.predictions
    return checks.calibration_slope(pr.y, pr.p)


__all__ = export(__name__)

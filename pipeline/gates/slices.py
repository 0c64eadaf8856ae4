"""Slice gate: no slice with enough rows has a loss far above the overall loss (gates.slices.metric:
a regressor's MAE or MAPE, a classifier's log loss or Brier score)."""

from pipeline import checks
from pipeline.catalogue import Inputs, NotApplicable, export, spec
from pipeline.checks import Finding
from pipeline.config import TASKS
from pipeline.evaluation import slice_arguments


@spec(
    "slices",
    tasks=TASKS,
    defaults={
        "dev": "{max: 3.0, required: false}",
        "staging": "{max: 2.0}  # no slice twice as wrong as the whole",
    },
)
def slice_error(run: Inputs) -> Finding | NotApplicable:
    """The worst slice's loss over the whole's (Welch test with Holm's correction); a binary
    task's slices with too few positives are not judged. Not applicable where the config
    names nothing to slice by (no gates.slices.columns nor target bands: init's choice where a
    file has no categorical column of a few levels)."""
    settings = run.settings
    cfg = settings.gates.slices
    if not cfg.columns and not cfg.target_bands:
        return NotApplicable(
            "nothing to slice by: gates.slices.columns and target_bands are empty",
            stated="columns" in cfg.model_fields_set,  # columns: [] says so; left out, nobody did
            how="name the columns to slice by under gates.slices.columns, or state columns: [] where there are none",
        )
    a = slice_arguments(run.session)
    return checks.slices_finding(
        run.session.evaluation.slices(),
        columns=a["columns"],
        min_rows=a["min_rows"],
        metric=a["metric"],
        min_positives=a["min_positives"],
    )


__all__ = export(__name__)

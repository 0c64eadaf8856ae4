"""Slice gate: no slice with enough rows has a loss far above the overall loss (gates.slices.metric:
a regressor's MAE or MAPE, a classifier's log loss or Brier score)."""

from pipeline import checks
from pipeline.catalogue import Inputs, export, spec
from pipeline.checks import Finding
from pipeline.config import TASKS


@spec(
    "slices",
    tasks=TASKS,
    defaults={
        "dev": "{max: 3.0, required: false}",
        "staging": "{max: 2.0}  # no slice twice as wrong as the whole",
    },
)
def slice_error(run: Inputs) -> Finding:
    """The worst slice's loss over the whole's (Welch test with Holm's correction); a binary
    task's slices with too few positives are not judged."""
    settings = run.settings
    pr, cfg = run.session.predictions, settings.gates.slices
    return checks.slice_error(
        pr.frame,
        pr.y,
        pr.p,
        columns=cfg.columns,
        target=settings.data.target,
        target_bands=cfg.target_bands,
        min_rows=cfg.min_rows,
        metric=settings.slice_metric,
        band_by=cfg.band_by,
        min_positives=cfg.min_positives if settings.data.task == "binary" else None,
    )


__all__ = export(__name__)

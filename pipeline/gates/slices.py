"""Slice gate: no slice with enough rows has an error far above the overall error (MAE or MAPE, by config)."""

from pipeline import checks
from pipeline.catalogue import Inputs, export, spec
from pipeline.checks import Finding
from pipeline.config import REGRESSION


@spec(
    "slices",
    tasks=REGRESSION,
    defaults={
        "dev": "{max: 3.0, required: false}",
        "staging": "{max: 2.0}  # no slice twice as wrong as the whole",
    },
)
def slice_error(run: Inputs) -> Finding:
    """The worst slice's error over the whole's (Welch test with Holm's correction)."""
    pr, cfg = run.session.predictions, run.settings.gates.slices
    return checks.slice_error(
        pr.frame,
        pr.y,
        pr.p,
        columns=cfg.columns,
        target=run.settings.data.target,
        target_bands=cfg.target_bands,
        min_rows=cfg.min_rows,
        metric=cfg.metric,
        band_by=cfg.band_by,
    )


__all__ = export(__name__)

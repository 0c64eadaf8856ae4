"""Slice gate: no slice with enough rows has an error far above the overall error (MAE or MAPE, by config)."""

from pipeline import checks
from pipeline.gates import family

__all__ = ["test_slice_error"]


@family("slices")
def test_slice_error(eval_predictions, pipeline_settings, gate):
    cfg = pipeline_settings.gates.slices
    finding = checks.slice_error(eval_predictions.frame, eval_predictions.y, eval_predictions.p, columns=cfg.columns,
                                 target=pipeline_settings.data.target, target_bands=cfg.target_bands, min_rows=cfg.min_rows,
                                 metric=cfg.metric, band_by=cfg.band_by)
    assert gate.holds(finding), gate.explain(finding)

"""Slice gate: no slice with enough rows has an error far above the overall error (MAE or MAPE, by config)."""

import pytest

from pipeline import figures

pytestmark = [pytest.mark.gates, pytest.mark.slices]


def test_slice_error(eval_predictions, pipeline_settings, thresholds, record_gate):
    cfg = pipeline_settings.gates.slices
    slices = figures.slice_errors(
        eval_predictions.frame, eval_predictions.y, eval_predictions.p, cfg.columns,
        pipeline_settings.data.target, cfg.target_bands, cfg.min_rows, cfg.metric,
    )
    assert slices, f"no slice of {cfg.columns} or target bands has {cfg.min_rows} rows or more"
    worst = slices[0]
    label = cfg.metric.upper()
    detail = f"worst slice {worst.column}={worst.value} ({worst.rows} rows, {label} {worst.error:,.4g}); {len(slices)} slices judged"
    th = thresholds.slice_error_ratio
    record_gate("slice_error_ratio", worst.ratio, th, detail)
    assert th.holds(worst.ratio), th.explain(f"worst slice {label} / overall {label}", worst.ratio, detail)

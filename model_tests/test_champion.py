"""Champion gate: the candidate is not worse than the model holding the champion alias."""

import pytest

from pipeline import figures

pytestmark = [pytest.mark.gates, pytest.mark.champion]


def test_champion_mae(gate_session, eval_predictions, pipeline_settings, thresholds, record_gate):
    th = thresholds.champion_mae_delta
    cfg = pipeline_settings.gates.champion
    champion = gate_session.champion
    if champion is None:
        record_gate("champion_mae_delta", None, th, f"no model holds @{pipeline_settings.champion_alias}: nothing to compare with")
        return
    boot = figures.paired_bootstrap_mae(
        eval_predictions.y, eval_predictions.p, champion.predictions,
        resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=pipeline_settings.seed, max_rows=cfg.bootstrap_rows,
    )
    gate_session.bootstrap, gate_session.champion_label = boot, f"{champion.name} v{champion.version}"
    detail = (f"vs {champion.name} v{champion.version} @{pipeline_settings.champion_alias}: MAE change {boot.delta:+.2%}, "
              f"{cfg.confidence:.0%} lower bound {boot.lower:+.2%} on {len(eval_predictions.y)} rows"
              + (f", {cfg.bootstrap_rows} rows per resample" if len(eval_predictions.y) > cfg.bootstrap_rows else ""))
    # Fails only when the candidate is worse by more than the tolerance with the configured confidence.
    record_gate("champion_mae_delta", boot.lower, th, detail)
    assert th.holds(boot.lower), th.explain("MAE worse than champion by at least", boot.lower, detail)

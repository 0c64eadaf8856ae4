"""Champion gate: the candidate is not worse than the model holding the champion alias."""

from pipeline import checks
from pipeline.gates import family

__all__ = ["test_champion_mae"]


@family("champion")
def test_champion_mae(gate_session, eval_predictions, pipeline_settings, gate):
    champion, cfg = gate_session.champion, pipeline_settings.gates.champion
    if champion is None:
        return gate.not_applicable(checks.champion_absent(pipeline_settings.champion_alias, cfg.test).detail)
    # non_inferiority (default): fails unless the candidate is, with the configured confidence,
    # at most the margin worse; not_confidently_worse: only when it is confidently worse.
    finding = checks.champion_mae(eval_predictions.y, eval_predictions.p, champion.predictions,
                                  champion=f"{champion.name} v{champion.version} @{pipeline_settings.champion_alias}",
                                  resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=pipeline_settings.seed,
                                  max_rows=cfg.bootstrap_rows, test=cfg.test)
    assert gate.holds(finding), gate.explain(finding)

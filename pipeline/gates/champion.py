"""Champion gates: the candidate is not worse than the model holding the champion alias."""

from pipeline import checks
from pipeline.catalogue import Inputs, NotApplicable, export, spec
from pipeline.checks import Finding
from pipeline.config import CLASSIFIERS, REGRESSION


@spec(
    "champion",
    tasks=REGRESSION,
    defaults={
        "dev": "{max: 0.10, required: false}",
        "staging": "{max: 0.05}  # shown to be at most 5 % worse than the alias holder",
        "production": "{max: 0.02}",
    },
)
def champion_mae(run: Inputs) -> Finding | NotApplicable:
    """The paired bootstrap of the relative MAE change, candidate vs champion, on the same rows.

    non_inferiority (default): fails unless the candidate is, with the configured confidence,
    at most the margin worse; not_confidently_worse: only when it is confidently worse."""
    return _against_champion(run, "champion_mae", "mae", "MAE")


@spec(
    "champion",
    tasks=CLASSIFIERS,
    defaults={
        "dev": "{max: 0.10, required: false}",
        "staging": "{max: 0.05}  # shown to be at most 5 % worse (log loss) than the alias holder",
        "production": "{max: 0.02}",
    },
)
def champion_log_loss(run: Inputs) -> Finding | NotApplicable:
    """The paired bootstrap of the relative log-loss change, candidate vs champion, on the same rows
    (a classifier's champion_mae: the same tests, resamples and confidence)."""
    return _against_champion(run, "champion_log_loss", "log_loss", "log loss")


def _against_champion(run: Inputs, name: str, metric: str, loss: str) -> Finding | NotApplicable:
    """The paired bootstrap of the per-row `metric` (figures.row_loss; `loss` names it), the candidate
    against the champion on the same rows, by the session's engine, with the gates.champion
    settings; not applicable where no model holds the alias."""
    s, settings = run.session, run.settings
    champion, cfg = s.champion, settings.gates.champion
    if champion is None:
        return NotApplicable(checks.champion_absent(settings.champion_alias, cfg.test, loss).detail)
    ev = s.evaluation
    boot = ev.bootstrap(metric, cfg.bootstrap_resamples, cfg.confidence, settings.seed, cfg.bootstrap_rows)
    return checks.champion_finding(
        name,
        loss,
        boot,
        champion=f"{champion.who} @{settings.champion_alias}",
        rows=ev.rows(),
        max_rows=cfg.bootstrap_rows,
        test=cfg.test,
    )


__all__ = export(__name__)

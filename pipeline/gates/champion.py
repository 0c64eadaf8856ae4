"""Champion gates: the candidate is not worse than the model holding the champion alias."""

from collections.abc import Callable

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
    return _against_champion(run, checks.champion_mae, "MAE")


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
    return _against_champion(run, checks.champion_log_loss, "log loss")


def _against_champion(run: Inputs, check: Callable[..., Finding], loss: str) -> Finding | NotApplicable:
    """`check` (a paired bootstrap of `loss`) of the candidate against the champion's predictions
    on the same rows, with the gates.champion settings; not applicable where no model holds the alias."""
    s, settings = run.session, run.settings
    champion, cfg = s.champion, settings.gates.champion
    if champion is None:
        return NotApplicable(checks.champion_absent(settings.champion_alias, cfg.test, loss).detail)
    pr = s.predictions
    return check(
        pr.y,
        pr.p,
        champion.predictions,
        champion=f"{champion.who} @{settings.champion_alias}",
        resamples=cfg.bootstrap_resamples,
        confidence=cfg.confidence,
        seed=settings.seed,
        max_rows=cfg.bootstrap_rows,
        test=cfg.test,
    )


__all__ = export(__name__)

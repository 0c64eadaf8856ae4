"""Data gates: the evaluation rows meet the contract, are unseen, have not drifted, and no feature is the target in disguise."""

from pipeline import checks
from pipeline.catalogue import Inputs, export, spec
from pipeline.checks import Finding
from pipeline.data import record_columns
from pipeline.errors import InputError


@spec(
    "data",
    setup=(),
    defaults={
        "staging": "{max: 0, unit: violations}",
    },
)
def data_contract(run: Inputs) -> Finding:
    """The evaluation file meets the data contract (parsed and checked once per session)."""
    s = run.session
    try:
        return checks.data_contract(None, len(s.eval_frame), s.eval_source.name)
    except InputError as e:
        return checks.data_contract(str(e), 0, s.eval_source.name)


@spec(
    "data",
    defaults={
        "staging": "{max: 0, unit: rows}",
    },
)
def train_eval_overlap(run: Inputs) -> Finding:
    """Evaluation rows that are training rows too, compared on whole records (the target with them)."""
    s, data = run.session, run.settings.data
    columns, what = record_columns(
        s.eval_frame, list(s.features.columns), data.target, data.id_columns, data.classifier
    )
    ev = s.evaluation
    return checks.overlap_finding(ev.shared_rows(columns), ev.rows(), len(columns), what=what, grouped=s.split.grouped)


@spec(
    "data",
    defaults={
        "staging": "{max: 0.2}",
    },
)
def feature_drift(run: Inputs) -> Finding:
    """The worst feature's drift between the training and the evaluation rows."""
    s, min_rows = run.session, run.settings.gates.drift.min_rows
    drift = s.evaluation.drift(list(s.features.numeric), list(s.features.categorical), min_rows)
    return checks.drift_finding(drift, min_rows)


@spec(
    "data",
    defaults={
        "staging": "{max: 0.95}  # no feature alone explains 95 % of the target: it would be the target in disguise",
    },
)
def target_leak(run: Inputs) -> Finding:
    """The best R2 one feature reaches alone, on the scale the model fits (a classifier's
    labels as 0/1 columns: the Brier skill score)."""
    s = run.session
    return checks.target_leak(
        s.train_frame,
        s.eval_frame,
        list(s.features.columns),
        run.settings.data.target,
        log=run.settings.model.log_target,
        classes=len(run.settings.data.labels),
    )


__all__ = export(__name__)

"""Metric gates on the evaluation rows, each against its threshold.

A regressor's: R2, MAE, RMSE and MAPE; MAE, RMSE and MAPE also report the baseline's figure
(a constant prediction, the training target's median) and their ratio to it, which a
threshold may bound (max_ratio_to_baseline). A classifier's: ROC AUC, average precision, log
loss, Brier score, accuracy, balanced accuracy and F1, each scikit-learn's; log loss and Brier
against the class prior's (the training rows' class shares) the same way, the decision
figures at model.decision_threshold."""

from pipeline import checks
from pipeline.catalogue import Inputs, export, spec
from pipeline.checks import Finding
from pipeline.config import CLASSIFIERS, REGRESSION


@spec(
    "metrics",
    tasks=REGRESSION,
    defaults={
        "dev": "{min: 0}",
        "staging": "{min: 0.25}  # explains at least a quarter of the variance",
    },
)
def r2(run: Inputs) -> Finding:
    """R2 of the evaluation rows."""
    ev = run.session.evaluation
    return checks.baseline_finding("r2", "R2", ev.metric("r2"), None, ev.rows())


@spec(
    "metrics",
    tasks=REGRESSION,
    defaults={
        "dev": "{max_ratio_to_baseline: 0.95}  # learnt anything at all",
        "staging": "{max_ratio_to_baseline: 0.8}  # at most 80 % of the error of predicting the training median",
    },
)
def mae(run: Inputs) -> Finding:
    """Mean absolute error, and its ratio to the baseline's."""
    return _against_baseline(run, "mae", "MAE")


@spec(
    "metrics",
    tasks=REGRESSION,
    defaults={
        "dev": "{max_ratio_to_baseline: 0.95}",
        "staging": "{max_ratio_to_baseline: 0.85}",
    },
)
def rmse(run: Inputs) -> Finding:
    """Root mean squared error, and its ratio to the baseline's."""
    return _against_baseline(run, "rmse", "RMSE")


@spec(
    "metrics",
    tasks=REGRESSION,
    defaults={
        "dev": '{max_ratio_to_baseline: 0.95, unit: "%"}',
        "staging": '{max_ratio_to_baseline: 0.8, unit: "%"}',
    },
)
def mape(run: Inputs) -> Finding:
    """Mean absolute percentage error, and its ratio to the baseline's."""
    return _against_baseline(run, "mape", "MAPE")


def _against_baseline(run: Inputs, name: str, label: str) -> Finding:
    """A regressor's error figure on every evaluation row with the baseline's, by the session's engine."""
    ev = run.session.evaluation
    return checks.baseline_finding(name, label, ev.metric(name), ev.metric(name, of="baseline"), ev.rows())


@spec(
    "metrics",
    tasks=CLASSIFIERS,
    defaults={
        "dev": "{min: 0.55}",
        "staging": "{min: 0.6}  # above chance (0.5) by a margin",
    },
)
def roc_auc(run: Inputs) -> Finding:
    """ROC AUC of the evaluation rows (multiclass: the macro mean of one-vs-rest)."""
    pr = run.session.predictions
    return checks.roc_auc(pr.y, pr.p)


@spec(
    "metrics",
    tasks=CLASSIFIERS,
    defaults={  # init writes chance + a tenth of the way to 1, from the file's class shares
        "staging": "{min: 0.55}",
    },
)
def pr_auc(run: Inputs) -> Finding:
    """Average precision (the precision-recall curve's area; multiclass: macro one-vs-rest)."""
    pr = run.session.predictions
    return checks.pr_auc(pr.y, pr.p)


@spec(
    "metrics",
    tasks=CLASSIFIERS,
    defaults={
        "dev": "{max_ratio_to_baseline: 0.98}",
        "staging": "{max_ratio_to_baseline: 0.9}  # at most 90 % of the class prior's log loss",
    },
)
def log_loss(run: Inputs) -> Finding:
    """Log loss of the evaluation rows, and its ratio to the class prior's."""
    pr = run.session.predictions
    return checks.log_loss(pr.y, pr.p, run.session.baseline_predictions)


@spec(
    "metrics",
    tasks=CLASSIFIERS,
    defaults={
        "dev": "{max_ratio_to_baseline: 0.98}",
        "staging": "{max_ratio_to_baseline: 0.9}  # at most 90 % of the class prior's Brier score",
    },
)
def brier(run: Inputs) -> Finding:
    """Brier score of the evaluation rows, and its ratio to the class prior's."""
    pr = run.session.predictions
    return checks.brier(pr.y, pr.p, run.session.baseline_predictions)


def _decided(run: Inputs, check) -> Finding:
    pr = run.session.predictions
    return check(pr.y, pr.p, run.session.baseline_predictions, run.settings.model.decision_threshold)


@spec(
    "metrics",
    tasks=CLASSIFIERS,
    defaults={  # init writes the majority class's share: what always guessing it scores
        "staging": "{min: 0.5, required: false}",
    },
)
def accuracy(run: Inputs) -> Finding:
    """Share of evaluation rows decided right (at model.decision_threshold)."""
    return _decided(run, checks.accuracy)


@spec(
    "metrics",
    tasks=CLASSIFIERS,
    defaults={  # init writes chance (1 / classes) + a tenth of the way to 1
        "staging": "{min: 0.55}",
    },
)
def balanced_accuracy(run: Inputs) -> Finding:
    """The mean over classes of the share of each class's rows decided right."""
    return _decided(run, checks.balanced_accuracy)


@spec(
    "metrics",
    tasks=CLASSIFIERS,
    defaults={  # init writes what deciding every row for the (smallest) class scores
        "staging": "{min: 0.5, required: false}",
    },
)
def f1(run: Inputs) -> Finding:
    """F1 of the positive class at model.decision_threshold (multiclass: the macro mean)."""
    return _decided(run, checks.f1)


__all__ = export(__name__)

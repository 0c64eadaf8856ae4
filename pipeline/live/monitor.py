"""The live monitor: per arm, over its latest rows, what the feedback says, and what to do.

Automated rollback, never automated promotion. Production breaching the environment's
required threshold for a live figure (LIVE_GATES: a regressor's mae and mape; a classifier's
log loss, Brier score, accuracy and ROC AUC, its feedback the labels: the same Threshold the
gates judge) on at least `live.min_feedback_rows` rows with feedback: the alias moves back to
its previous holder (`registry.rollback_alias`, in the history). The challenger confidently
worse than production on the same rows (the paired bootstrap of the champion gate on its
loss, absolute error or log loss, lower bound above zero): the server stops routing to it (in
the log, which servers poll, and in the registry). A challenger confidently better is reported
as a candidate; only gate evidence moves an alias to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from pipeline import registry
from pipeline.config import LOSS_LABELS, TASK_LOSS, Settings, fmt_number
from pipeline.errors import InputError, PromotionRefused
from pipeline.judge import judge
from pipeline.live.log import PredictionLog
from pipeline.live.service import CHALLENGER, PRODUCTION, holder

# pipeline.figures (0.7 s), pipeline.checks (0.75 s) and pipeline.data (0.85 s) are imported inside the
# methods that use them: a look at a log with no rows of an arm needs none, one without feedback no figures.

# The figures with a live meaning, per task: reported per arm with intervals, and judged
# against the environment's thresholds; the first is the one the monitor's table gives an interval.
LIVE_GATES: dict[str, tuple[str, ...]] = {
    "regression": ("mae", "mape"),
    "binary": ("log_loss", "accuracy", "roc_auc", "brier"),
    "multiclass": ("log_loss", "accuracy", "roc_auc", "brier"),
}
SCORES = ("accuracy", "roc_auc")  # live figures where higher is better
WHO = "run-pipeline monitor"


@dataclass
class ArmReport:
    arm: str
    alias: str
    version: str | None
    requests: int = 0  # answered rows in the window
    feedback_rows: int = 0  # of the rows the figures are on
    figures_on: str = "answered rows"
    figures: dict[str, float] = field(default_factory=dict)  # LIVE_GATES' (and bias), each with _lower, _upper
    drift: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] = field(default_factory=dict)  # challenger vs production on the same rows
    decision: str = "none"
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _mean_interval(x: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    """A two-sided bootstrap interval of the mean of `x` at `confidence`, by the gates' own
    bootstrap: paired_bootstrap_mae of predictions x + shift (shifted to be >= 0) against truth 0
    has errors x + shift; against a reference whose every error is 1, its relative change is,
    resample by resample, the mean of x + shift less 1 (and its one-sided bounds at (1 + c) / 2
    are the two-sided interval at c)."""
    from pipeline import figures

    x = np.asarray(x, float)
    shift = max(0.0, -float(x.min()))
    zero = np.zeros_like(x)
    b = figures.paired_bootstrap_mae(
        zero, x + shift, zero - 1.0, resamples=resamples, confidence=(1 + confidence) / 2, seed=seed
    )
    return 1.0 + b.lower - shift, 1.0 + b.upper - shift


class Monitor:
    """One look at the prediction log, with the registry, the environment's thresholds and the training data."""

    def __init__(self, settings: Settings, log: PredictionLog):
        self.settings, self.log = settings, log
        self.name = settings.mlflow.registered_model
        self._train: tuple[Any, Any] | None = None  # the training rows and their FeatureSpec, read once

    def _training(self):
        if self._train is None:
            from pipeline import data as data_mod

            dataset = data_mod.load(self.settings)
            self._train = (data_mod.split(self.settings, dataset).train, dataset.features)
        return self._train

    def _holder(self, alias: str) -> str | None:
        try:
            return holder(self.settings, self.name, alias)
        except InputError:
            return None

    def _rows(self, joined) -> tuple[np.ndarray, np.ndarray]:
        """Truth and answers of logged rows with feedback, as the gates take them: a
        classifier's class codes and scores."""
        y = joined["truth"].to_numpy(float)
        if not self.settings.data.classifier:
            return y, joined["prediction"].to_numpy(float)
        return y.astype(int), self._scores([json.loads(t) for t in joined["scores"]])

    def _scores(self, answers: list[Any]) -> np.ndarray:
        """Logged answers (PredictionLog.predictions_of's) as the gates take them: a classifier's
        probabilities as checks.as_scores gives them."""
        if not self.settings.data.classifier:
            return np.asarray(answers, float)
        from pipeline import checks

        return checks.as_scores(np.array(answers, float))

    def _figures(self, rep: ArmReport, frame) -> None:
        live = self.settings.live
        answered = frame[frame["answered"] == 1]
        rep.requests = len(answered)
        # An arm that answered nothing (the challenger in shadow mode) is judged on the rows it scored.
        scored = answered if len(answered) else frame
        rep.figures_on = "answered rows" if len(answered) else "shadow-scored rows"
        joined = scored[scored["truth"].notna()]
        rep.feedback_rows = len(joined)
        if len(joined):
            from pipeline import figures

            y, p = self._rows(joined)
            if self.settings.data.classifier:
                threshold = self.settings.model.decision_threshold
                per_row = {  # each figure is their mean
                    "log_loss": figures.row_loss("log_loss", y, p),
                    "accuracy": (figures.decisions(p, threshold) == y).astype(float),
                    "brier": figures.row_loss("brier", y, p),
                }
            else:
                per_row = {"mae": figures.row_loss("mae", y, p), "mape": figures.row_loss("mape", y, p), "bias": p - y}
            rep.figures = {name: float(x.mean()) for name, x in per_row.items()}
            rep.figures["confidence"] = live.confidence
            for name, x in per_row.items():
                lo, hi = _mean_interval(x, live.confidence, live.bootstrap_resamples, self.settings.seed)
                rep.figures.update({f"{name}_lower": lo, f"{name}_upper": hi})
            if self.settings.data.classifier:
                auc = figures.bootstrap_interval(
                    figures.roc_auc,
                    y,
                    p,
                    resamples=live.bootstrap_resamples,
                    confidence=live.confidence,
                    seed=self.settings.seed,
                )
                rep.figures.update({"roc_auc": auc.value, "roc_auc_lower": auc.lower, "roc_auc_upper": auc.upper})
        if len(scored):
            rep.drift = self._drift(scored)

    def _drift(self, answered) -> dict[str, Any]:
        """The live inputs against the training rows: the data gate's own figure and threshold."""
        from pipeline import checks

        train, features = self._training()
        rows = pd.DataFrame([json.loads(t) for t in answered["features"]])
        for c in features.numeric:
            if c in rows:
                rows[c] = pd.to_numeric(rows[c], errors="coerce")
        cols = [c for c in features.columns if c in rows]
        numeric = [c for c in features.numeric if c in cols]
        categorical = [c for c in features.categorical if c in cols]
        found = checks.feature_drift(train[cols], rows[cols], numeric, categorical, self.settings.gates.drift.min_rows)
        th = self.settings.thresholds.get("feature_drift")
        out = {"feature_drift": found.value, "detail": found.detail}
        if th is not None and not np.isnan(found.value):
            out["threshold"] = th.describe()
            out["holds"] = judge(th, found).passed
        return out

    def _breach(self, rep: ArmReport, frame) -> str | None:
        """The first live figure of production confidently outside the environment's required
        threshold, as one line: the figure beyond the bound, and its interval's best end too (a
        window of a few hundred rows, a few of them a rare class's, is not evidence that an
        offline-gated model got worse). An advisory threshold is the gates' report, never a
        rollback; a figure the rows cannot give (ROC AUC of rows of one class) is not judged."""
        from pipeline import checks, figures

        settings = self.settings
        joined = frame[(frame["answered"] == 1) & frame["truth"].notna()]
        y, p = self._rows(joined)
        target = self._training()[0][settings.data.target].to_numpy(float)
        baseline = figures.baseline_scores(target, len(y), settings.data.labels if settings.data.classifier else None)
        for gate in LIVE_GATES[settings.data.task]:
            th = settings.thresholds.get(gate)
            if th is None or not th.required:
                continue
            if gate == "roc_auc":
                found = checks.roc_auc(y, p)
            elif gate == "accuracy":
                found = checks.accuracy(y, p, baseline, settings.model.decision_threshold)
            else:
                found = getattr(checks, gate)(y, p, baseline)
            if not np.isfinite(found.value):
                continue
            found = replace(found, detail=f"{len(y)} rows with feedback")
            verdict = judge(th, found)
            if verdict.passed:
                continue
            # Its best end: the lower bound of an error figure, the upper bound of a score (AUC, accuracy).
            end = rep.figures[f"{gate}_upper" if gate in SCORES else f"{gate}_lower"]
            best = replace(found, value=end, baseline_ratio=end / found.baseline if found.baseline else None)
            if judge(th, best).passed:
                continue
            lo, hi = rep.figures[f"{gate}_lower"], rep.figures[f"{gate}_upper"]
            return (
                f"live {verdict.why}; its {settings.live.confidence:.0%} interval "
                f"[{fmt_number(lo)}, {fmt_number(hi)}] is beyond the bound too"
            )
        return None

    def _compare(self, rep: ArmReport, frame, production_version: str) -> Any:
        """The challenger's rows with feedback against production's answers of the same rows:
        the paired bootstrap of the change in their mean loss (TASK_LOSS)."""
        from pipeline import figures

        joined = frame[frame["truth"].notna()]
        keys = list(zip(joined["request_id"], joined["row"].astype(int)))
        theirs = self.log.predictions_of(PRODUCTION, keys, production_version)
        both = [i for i, k in enumerate(keys) if k in theirs]
        rep.comparison = {"rows": len(both), "against": f"production v{production_version}"}
        if not both:
            return None
        y, p = self._rows(joined.iloc[both])
        q = self._scores([theirs[keys[i]] for i in both])
        loss = TASK_LOSS[self.settings.data.task]
        live = self.settings.live
        b = figures.paired_bootstrap_loss(
            figures.row_loss(loss, y, p),
            figures.row_loss(loss, y, q),
            resamples=live.bootstrap_resamples,
            confidence=live.confidence,
            seed=self.settings.seed,
        )
        rep.comparison.update(
            {f"{loss}_change": b.delta, "lower": b.lower, "upper": b.upper, "confidence": live.confidence}
        )
        return b

    def run(self, act: bool = True) -> list[ArmReport]:
        """Figures and decision per arm; with `act`, the rollback or the stop is carried out and recorded."""
        live, alias = self.settings.live, self.settings.environment.alias
        version = self._holder(alias)
        prod = ArmReport(PRODUCTION, alias, version)
        reports = [prod]
        frame = self.log.window(PRODUCTION, version, live.window) if version else None
        if frame is not None:
            self._figures(prod, frame)
            if prod.feedback_rows < live.min_feedback_rows:
                prod.decision, prod.why = (
                    "wait",
                    f"{prod.feedback_rows} rows with feedback of the {live.min_feedback_rows} needed to act",
                )
            else:
                breach = self._breach(prod, frame)
                if breach is None:
                    prod.decision, prod.why = (
                        "keep",
                        f"live figures hold the {self.settings.env} thresholds on {prod.feedback_rows} rows",
                    )
                else:
                    prod.decision, prod.why = "rollback", breach
                    if act:
                        # gating (0.3 s of evidence and signing) only where production is rolled back.
                        from pipeline import gating

                        # The restored version's evidence is re-checked as `run-pipeline rollback`
                        # does; where it no longer holds, production breaching now is restored all
                        # the same (forced, in the history, and the audit names it): a person would
                        # rather look at a forced restore than at a live breach left serving.
                        try:
                            restored, demoted, forced = gating.checked_rollback(
                                self.settings, self.name, self.settings.env, force=True, who=WHO
                            )
                        except (InputError, PromotionRefused) as e:
                            prod.decision, prod.why = "breach", f"{breach}; not rolled back: {e}"
                        else:
                            prod.why = f"{breach}; @{alias} moved back from v{demoted} to v{restored}" + (
                                f" (forced: {forced})" if forced else ""
                            )
                            self.log.record_event("rollback", alias, demoted, prod.why)
                            registry.record_live_decision(
                                self.settings, self.name, alias, demoted, "rollback", prod.why, WHO, history=False
                            )
        chal_alias = self.log.latest_alias(CHALLENGER)
        if chal_alias:
            cv = self._holder(chal_alias)
            chal = ArmReport(CHALLENGER, chal_alias, cv)
            reports.append(chal)
            if cv and version:
                cframe = self.log.window(CHALLENGER, cv, live.window)
                self._figures(chal, cframe)
                self._judge_challenger(chal, cframe, version, act)
        return reports

    def _judge_challenger(self, chal: ArmReport, frame, production_version: str, act: bool) -> None:
        live = self.settings.live
        b = self._compare(chal, frame, production_version)
        assert chal.version is not None, "a challenger arm is judged only where a version holds its alias"
        stopped = self.log.stopped(chal.alias, chal.version)
        if stopped:
            chal.decision, chal.why = "stopped", stopped
            return
        rows = chal.comparison["rows"]
        if b is None or rows < live.min_feedback_rows:
            chal.decision, chal.why = (
                "wait",
                f"{rows} rows with feedback on both arms of the {live.min_feedback_rows} needed to act",
            )
            return
        loss = LOSS_LABELS[TASK_LOSS[self.settings.data.task]]
        interval = f"{loss} {b.delta:+.2%} against production v{production_version}, {live.confidence:.0%} bounds [{b.lower:+.2%}, {b.upper:+.2%}] on {rows} rows"
        if b.lower > 0:
            chal.decision, chal.why = (
                "stop",
                f"challenger @{chal.alias} v{chal.version} is confidently worse: {interval}",
            )
            if act:
                self.log.record_event("stop-routing", chal.alias, chal.version, chal.why)
                registry.record_live_decision(
                    self.settings, self.name, chal.alias, chal.version, "stop-routing", chal.why, WHO
                )
        elif b.upper < 0:
            chal.decision = "candidate"
            chal.why = (
                f"challenger @{chal.alias} v{chal.version} is confidently better: {interval}; a candidate only: "
                f"gate it (run-pipeline validate models:/{self.name}/{chal.version} --env {self.settings.env}) to promote it"
            )
        else:
            chal.decision, chal.why = "keep", f"no confident difference: {interval}"

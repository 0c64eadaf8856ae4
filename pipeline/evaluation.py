"""Figures over every evaluation row, computed by the session's engine.

The gates that read every evaluation row (a regressor's metrics, slices, the data gates'
overlap and drift, the champion's paired bootstrap) take their figures from the session's
`evaluation`: `InProcess` computes them from the session's arrays (the default engine);
pipeline.spark.SparkEvaluation by Spark aggregations, for evaluation sets that no single
process holds. The figures are the same on both (tests/test_spark.py). The other gates read
rows in one place: the session's evaluation rows, which the Spark engine brings to the driver
as a seeded sample (`facts()` says how many of how many).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pipeline import checks, figures

if TYPE_CHECKING:
    from pipeline.session import GateSession

# The regression metrics an engine computes (figures.<name>), each with the baseline's beside it.
REGRESSION_METRICS = ("r2", "mae", "rmse", "mape")


class Evaluation(Protocol):
    engine: str

    def rows(self) -> int:
        """Evaluation rows the figures are of."""
        ...

    def metric(self, name: str, of: str = "model") -> float:
        """REGRESSION_METRICS `name` of the candidate's predictions (`of`: "model") or the baseline's ("baseline")."""
        ...

    def slices(self) -> figures.Slices:
        """figures.slice_errors with the session's gates.slices settings."""
        ...

    def drift(self, numeric: list[str], categorical: list[str], min_rows: int) -> list[figures.Drift]:
        """figures.feature_drift of the training rows against the evaluation rows."""
        ...

    def shared_rows(self, columns: list[str]) -> int:
        """figures.shared_rows: evaluation rows that are training records too, on `columns`."""
        ...

    def bootstrap(self, loss: str, resamples: int, confidence: float, seed: int, max_rows: int) -> figures.Bootstrap:
        """figures.paired_bootstrap_loss of the candidate's and the champion's per-row `loss` (figures.row_loss)."""
        ...

    def residuals(self, ordered: bool) -> checks.ResidualSample:
        """checks.residual_sample of every evaluation row, in data order or (`ordered`) sorted by gates.residuals.order_by."""
        ...

    def facts(self) -> dict[str, Any]:
        """What the evidence records of the engine."""
        ...


def slice_arguments(session: GateSession) -> dict[str, Any]:
    """figures.slice_errors' settings, from the config (one place for both engines)."""
    settings = session.settings
    cfg = settings.gates.slices
    return {
        "columns": cfg.columns,
        "target": settings.data.target,
        "target_bands": cfg.target_bands,
        "min_rows": cfg.min_rows,
        "metric": settings.slice_metric,
        "band_by": cfg.band_by,
        "min_positives": cfg.min_positives if settings.data.task == "binary" else None,
    }


class InProcess:
    """The default engine: every evaluation row in this process, the session's arrays."""

    engine = "local"

    def __init__(self, session: GateSession):
        self.session = session

    def rows(self) -> int:
        return len(self.session.predictions.y)

    def metric(self, name: str, of: str = "model") -> float:
        pr = self.session.predictions
        p = pr.p if of == "model" else self.session.baseline_predictions
        return float(getattr(figures, name)(pr.y, p))

    def slices(self) -> figures.Slices:
        pr = self.session.predictions
        a = slice_arguments(self.session)
        return figures.slice_errors(pr.frame, pr.y, pr.p, **a)

    def drift(self, numeric: list[str], categorical: list[str], min_rows: int) -> list[figures.Drift]:
        s = self.session
        return figures.feature_drift(s.train_frame, s.eval_frame, numeric, categorical, min_rows)

    def shared_rows(self, columns: list[str]) -> int:
        return figures.shared_rows(self.session.train_frame, self.session.eval_frame, columns)

    def bootstrap(self, loss: str, resamples: int, confidence: float, seed: int, max_rows: int) -> figures.Bootstrap:
        s = self.session
        champion = s.champion
        assert champion is not None
        y = s.predictions.y
        return figures.paired_bootstrap_loss(
            figures.row_loss(loss, y, s.predictions.p),
            figures.row_loss(loss, y, np.asarray(champion.predictions)),
            resamples=resamples,
            confidence=confidence,
            seed=seed,
            max_rows=max_rows,
        )

    def residuals(self, ordered: bool) -> checks.ResidualSample:
        cfg, pr = self.session.settings.gates.residuals, self.session.predictions
        order = checks.in_order(pr.frame, cfg.order_by) if ordered else np.arange(len(pr.y))
        return checks.residual_sample(
            pr.y[order], pr.p[order], cfg.scale, cfg.sample_size, self.session.settings.seed, cfg.censored
        )

    def facts(self) -> dict[str, Any]:
        return {"name": self.engine, "rows": self.rows()}

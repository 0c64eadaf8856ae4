"""Jobs: the steps scripts and the CLI share (train and log one candidate)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline import checks, figures, registry, train
from pipeline import data as data_mod
from pipeline.config import Settings


@dataclass(frozen=True)
class Trained:
    candidate: registry.Candidate
    metrics: dict[str, float]
    seconds: float


def print_progress(step: str) -> None:
    print(f"[pipeline] {step}", flush=True)


def train_and_log(settings: Settings, progress: Callable[[str], None] = print_progress) -> Trained:
    """Load and check the data, fit on the training split, log and register the model.

    Everything that can be refused (config, data, model params) is checked before the
    first write to MLflow.
    """
    t0 = time.perf_counter()
    progress(f"loading {settings.data.path}")
    dataset = data_mod.load(settings)
    parts = data_mod.split(settings, dataset)
    progress(f"fitting {settings.model.type} on {len(parts.train)} rows, evaluating on {len(parts.eval)}")
    model = train.fit(settings, dataset.features, parts.train)
    metrics = figures.eval_metrics(
        parts.eval[settings.data.target].to_numpy(),
        checks.scores(model, parts.eval[dataset.features.columns]),
        settings.data.classifier,
        settings.model.decision_threshold,
    )
    progress(f"logging run and model version to {settings.mlflow.tracking_uri}")
    candidate = registry.log_candidate(settings, model, dataset, parts.eval, metrics)
    return Trained(candidate, metrics, time.perf_counter() - t0)

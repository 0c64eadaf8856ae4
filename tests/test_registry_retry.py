"""Registry writes that lose a race with a concurrent pipeline are repeated, not fatal."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from conftest import write_project
from pipeline import config, jobs

# What a PostgreSQL-backed server answered when two of eight pipelines logged the same data
# file at once (tests/test_servers.py, eight concurrent pipelines).
RACE = ('BAD_REQUEST: (psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint "dataset_pk"')


def test_dataset_logged_by_a_concurrent_run_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    settings = config.load(write_project(tmp_path), "staging")
    real, calls = mlflow.log_input, []

    def racing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise MlflowException(RACE)
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_input", racing)
    trained = jobs.train_and_log(settings, progress=lambda step: None)
    assert len(calls) == 2
    run = mlflow.MlflowClient(settings.mlflow.tracking_uri).get_run(trained.candidate.run_id)
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["ames.csv"]

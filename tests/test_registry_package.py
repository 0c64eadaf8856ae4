"""pipeline/registry/: one client per store, and versions listed as plain data.

A real embedded SQLite store in tmp_path, no mocks. The versions the tests read are made
with a bare MlflowClient (logging a model takes seconds); the functions under test are the
registry's own.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from conftest import write_project
from pipeline import config, registry
from pipeline.registry import VersionInfo

NAME = "ames-price"


@pytest.fixture
def settings_in():
    """Settings of a throwaway project in `folder` (its store starts as a copy of conftest's empty one)."""

    def make(folder: Path, **mlflow_overrides):
        return config.load(write_project(folder, {"mlflow": mlflow_overrides} if mlflow_overrides else None))

    return make


def seed_versions(settings, n: int) -> list[str]:
    """`n` versions of the registered model, each from its own run with an eval_mae metric; run ids."""
    ml = settings.mlflow
    client = MlflowClient(tracking_uri=ml.tracking_uri, registry_uri=ml.tracking_uri)
    ml.artifact_location.mkdir(parents=True, exist_ok=True)
    exp = client.create_experiment(ml.experiment, artifact_location=ml.artifact_location.as_uri())
    client.create_registered_model(NAME)
    run_ids = []
    for i in range(n):
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "eval_mae", 1000.0 * (i + 1))
        client.set_terminated(run.info.run_id)
        client.create_model_version(NAME, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags={"seq": str(i + 1)})
        run_ids.append(run.info.run_id)
    return run_ids


def test_connect_sets_up_once_per_store_and_again_when_the_store_changes(settings_in, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    a = settings_in(tmp_path / "a")
    a_again = config.load(a.config_path)  # another Settings object, the same store
    b = settings_in(tmp_path / "b")
    a_patient = settings_in(tmp_path / "c", tracking_uri=a.mlflow.tracking_uri, http_timeout_s=7)
    # The user's own $MLFLOW_TRACKING_URI (read by config.load as an override) survives connect.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://users-own-server:5000")

    before = registry.setup_count()
    client_a = registry.connect(a)
    assert registry.connect(a) is client_a and registry.connect(a_again) is client_a
    assert registry.setup_count() - before == 1
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == a.mlflow.tracking_uri

    client_b = registry.connect(b)
    assert client_b is not client_a and registry.connect(b) is client_b
    assert registry.setup_count() - before == 2
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == b.mlflow.tracking_uri

    # Back to the first store: the same client, the fluent API's globals pointed back at it.
    assert registry.connect(a) is client_a
    assert registry.setup_count() - before == 3
    assert mlflow.get_tracking_uri() == a.mlflow.tracking_uri

    # The same store with other HTTP patience is another client and another set-up.
    assert registry.connect(a_patient) is not client_a
    assert registry.setup_count() - before == 4
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://users-own-server:5000"


def test_connect_leaves_an_unset_tracking_uri_unset(settings_in, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry.connect(settings_in(tmp_path / "p"))
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_evidence_promotion_and_listing_on_one_settings_set_up_the_connection_once(settings_in, tmp_path: Path):
    settings = settings_in(tmp_path / "p", keep_versions=1)
    run_ids = seed_versions(settings, 3)
    registry.connect(settings_in(tmp_path / "elsewhere"))  # the globals point at another store

    before = registry.setup_count()
    doc = {"environment": "staging", "status": "passed", "ended": "2025-01-02T03:04:05+00:00"}
    path = registry.store_evidence(settings, NAME, "3", run_ids[2], doc)
    (stored, digest), = registry.load_evidence(settings, NAME, "3").values()
    previous = registry.move_alias(settings, NAME, "staging", "3", evidence_sha256=digest, who="tester", evidence_env="staging")
    archived = registry.archive_old_versions(settings, NAME)
    listed = registry.versions(settings, NAME)
    assert registry.setup_count() - before == 1

    assert path == "evidence/staging/v3-20250102T030405+0000.json"
    assert stored == doc and previous is None
    assert archived == ["2", "1"]
    assert [v.tags.get("archived") for v in listed] == [None, "true", "true"]


def test_promoting_the_holder_again_replaces_nobody_and_keeps_the_previous_holder(settings_in, tmp_path: Path):
    settings = settings_in(tmp_path / "p")
    run_ids = seed_versions(settings, 2)
    for version, run_id in zip(("1", "2"), run_ids):
        registry.store_evidence(settings, NAME, version, run_id, {"environment": "staging", "status": "passed", "ended": "2025-01-02T03:04:05+00:00"})

    def promote(version: str) -> str | None:
        (_, digest), = registry.load_evidence(settings, NAME, version).values()
        return registry.move_alias(settings, NAME, "staging", version, evidence_sha256=digest, who="tester", evidence_env="staging")

    assert [promote("1"), promote("2"), promote("2")] == [None, "1", None]
    assert registry.alias_map(settings, NAME) == {"staging": "2", "previous-staging": "1"}  # not @previous-staging -> 2
    moves = [(m.action, m.version, m.replaced) for m in registry.history(settings, NAME)]
    assert moves == [("promote", "1", None), ("promote", "2", "1"), ("promote", "2", None)]
    tags = {v.version: v.tags for v in registry.versions(settings, NAME)}
    assert tags["2"]["promoted.staging.replaced"] == "1"  # still the version it replaced


def test_versions_are_plain_frozen_data_with_aliases_and_run_metrics(settings_in, tmp_path: Path):
    settings = settings_in(tmp_path / "p")
    run_ids = seed_versions(settings, 3)
    client = registry.connect(settings)
    for v, env in (("1", "staging"), ("2", "staging"), ("2", "production")):  # move_alias checks the evidence tag it is given
        client.set_model_version_tag(NAME, v, f"gates.{env}.evidence_sha256", "x")
    registry.move_alias(settings, NAME, "staging", "1", evidence_sha256="x", who="t", evidence_env="staging")
    registry.move_alias(settings, NAME, "staging", "2", evidence_sha256="x", who="t", evidence_env="staging")
    registry.move_alias(settings, NAME, "production", "2", evidence_sha256="x", who="t", evidence_env="production")

    listed = registry.versions(settings, NAME)
    assert [v.version for v in listed] == ["3", "2", "1"]
    newest, promoted, first = listed
    assert all(type(v) is VersionInfo for v in listed)
    assert promoted == VersionInfo(
        name=NAME, version="2", run_id=run_ids[1], aliases=("production", "staging"), tags=promoted.tags,
        created=promoted.created, metrics={"eval_mae": 2000.0},
    )
    assert first.aliases == ("previous-staging",) and newest.aliases == ()
    assert promoted.tags["seq"] == "2" and promoted.tags["stage"] == "production"
    assert isinstance(promoted.created, int) and promoted.created > 0
    # Nothing patched onto MLflow's objects, and nothing can be patched onto these.
    assert not hasattr(promoted, "_pipeline_aliases")
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        promoted._pipeline_aliases = []  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        promoted.aliases = ()  # type: ignore[misc]

    assert registry.alias_map(settings, NAME) == {"production": "2", "staging": "2", "previous-staging": "1"}


def test_a_model_nobody_registered_lists_no_versions_and_no_aliases(settings_in, tmp_path: Path):
    settings = settings_in(tmp_path / "p")
    assert registry.versions(settings, "nobody") == []
    assert registry.alias_map(settings, "nobody") == {}

"""pipeline.registry.sqlite_view: the embedded store read without MLflow gives MLflow's answers
(versions, aliases, history; a version's tags, evidence and model digest, read in the store's
own folders)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import mlflow
import pytest
from mlflow import MlflowClient

from conftest import CHEAP, LIGHT_MODEL, registered_versions, run_gates_in_process, write_project
from pipeline import config as config_mod
from pipeline import registry
from pipeline.registry import model as registry_model
from pipeline.registry import sqlite_view


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with three versions of one model: aliases, tags, history moves, a NaN metric, a
    deleted version, and a second registered model beside it."""
    folder = tmp_path_factory.mktemp("read")
    cfg = write_project(folder, CHEAP, model=LIGHT_MODEL, families=("metrics",))
    settings = config_mod.load(cfg, "staging")
    name = settings.mlflow.registered_model
    v1, v2, v3, v4 = registered_versions(settings, 4)
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.tracking_uri)
    client.set_registered_model_alias(name, "staging", v2)
    client.set_registered_model_alias(name, "previous-staging", v1)
    client.set_registered_model_alias(name, "production", v2)
    client.set_model_version_tag(name, v3, "gates.staging.status", "failed")
    client.delete_model_version(name, v4)
    run = client.get_model_version(name, v1).run_id
    client.log_metric(run, "eval_nan", math.nan)
    for i, v in enumerate((v1, v2)):
        registry.record_move(settings, name, registry.Move("staging", "promote", v, "ci", f"2026-12-0{i + 1}T00:00:00.000001+00:00"))
    client.create_registered_model("other")
    # v2, @staging by a recorded promotion, with passing staging evidence: what `audit` checks.
    gated = run_gates_in_process(folder / "gates-v2", cfg, env="staging", model_uri=f"models:/{name}/{v2}",
                                 paths=(settings.gate_tests,))
    assert gated.returncode == 0, gated.output[-3000:]
    before = mlflow.get_tracking_uri()
    yield settings, cfg
    mlflow.set_tracking_uri(before)


def both(settings, read, monkeypatch):
    """`read(settings)` through the SQLite view, then through MLflow (a schema revision it does not know)."""
    with sqlite_view.open_view(settings) as view:
        assert view is not None  # the store's revision is the pinned MLflow's: read directly
    direct = read(settings)
    with monkeypatch.context() as m:
        m.setattr(sqlite_view, "SCHEMA_REVISIONS", frozenset())
        with sqlite_view.open_view(settings) as view:
            assert view is None
        through_mlflow = read(settings)
    return direct, through_mlflow


def _same(a, b) -> bool:
    return repr(a) == repr(b)  # NaN metrics compare equal by their text


def test_versions_aliases_and_history_read_directly_equal_mlflows(store, monkeypatch):
    settings, _ = store
    name = settings.mlflow.registered_model
    direct, via = both(settings, lambda s: registry.versions(s, name), monkeypatch)
    assert [v.version for v in direct] == ["3", "2", "1"]  # newest first, the deleted v4 left out
    assert _same(direct, via), (direct, via)
    assert direct[2].aliases == ("previous-staging",) and direct[1].aliases == ("production", "staging")
    assert math.isnan(direct[2].metrics["eval_nan"]) and direct[2].metrics["eval_mae"] > 0
    assert direct[0].tags["gates.staging.status"] == "failed"
    direct, via = both(settings, lambda s: registry.alias_map(s, name), monkeypatch)
    assert direct == via == {"production": "2", "staging": "2", "previous-staging": "1"}
    direct, via = both(settings, lambda s: registry.history(s, name), monkeypatch)
    assert direct == via and [m.version for m in direct] == ["1", "2"]


def test_a_model_without_versions_and_an_unknown_model_read_as_empty(store, monkeypatch):
    settings, _ = store
    for name in ("other", "nobody"):
        for read in (registry.versions, registry.alias_map, registry.history):
            direct, via = both(settings, lambda s, read=read, name=name: read(s, name), monkeypatch)
            assert not direct and direct == via


def test_list_history_and_audit_do_not_import_mlflow(store):
    """The process boundary is the point: what `run-pipeline list`, `history` and `audit` import."""
    settings, cfg = store
    code = (
        "import sys\n"
        "from pipeline import cli\n"
        f"assert cli.main(['list', '--config', {str(cfg)!r}]) == 0\n"
        f"assert cli.main(['history', '--config', {str(cfg)!r}]) == 0\n"
        f"assert cli.main(['audit', '--config', {str(cfg)!r}, '--env', 'staging']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'sqlalchemy', 'pandas'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "previous-staging" in proc.stdout and "promote" in proc.stdout
    assert "every holder got there through the gates" in proc.stdout


def test_a_versions_tags_evidence_and_model_digest_read_directly_equal_mlflows(store, monkeypatch):
    settings, _ = store
    name = settings.mlflow.registered_model
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.tracking_uri)
    for v in ("1", "2", "3"):
        direct, via = both(settings, lambda s, v=v: registry_model.version_tags(s, name, v), monkeypatch)
        assert direct == via == client.get_model_version(name, v).tags
        direct, via = both(settings, lambda s, v=v: registry.load_evidence(s, name, v), monkeypatch)
        assert direct == via
        direct, via = both(settings, lambda s, v=v: registry.model_digest(s, f"models:/{name}/{v}"), monkeypatch)
        assert direct == via == client.get_model_version(name, v).tags[registry.TAG_MODEL]
    (doc, digest), = registry.load_evidence(settings, name, "2").values()
    assert doc["model"]["version"] == "2" and doc["status"] == "passed" and len(digest) == 64
    stored = registry_model.stored_version(settings, name, "2")
    assert stored.model_files.is_dir() and stored.run_artifacts.is_dir()
    # The deleted v4, a number nobody registered and an alias are MLflow's to answer (not found, in its words).
    assert registry_model.stored_version(settings, name, "4") is None
    assert registry_model.stored_version(settings, name, "99") is None
    assert registry_model.stored_version(settings, name, "@staging") is None


def test_a_changed_evidence_file_or_model_file_is_what_the_direct_read_sees(store, monkeypatch):
    """The direct read is of the store's own files: a file changed there changes what it reads,
    as MLflow's download does."""
    settings, _ = store
    name = settings.mlflow.registered_model
    stored = registry_model.stored_version(settings, name, "2")
    evidence_file = stored.run_artifacts / stored.tags["gates.staging.evidence"]
    model_file = next(f for f in sorted(stored.model_files.rglob("*")) if f.is_file() and f.name != "registered_model_meta")
    saved = evidence_file.read_bytes(), model_file.read_bytes()
    try:
        evidence_file.write_text(json.dumps({**json.loads(saved[0]), "status": "failed"}))
        model_file.write_bytes(saved[1] + b"\n")
        direct, via = both(settings, lambda s: registry.load_evidence(s, name, "2"), monkeypatch)
        assert direct == via and direct["staging"][0]["status"] == "failed"
        direct, via = both(settings, lambda s: registry.model_digest(s, f"models:/{name}/2"), monkeypatch)
        assert direct == via != stored.tags[registry.TAG_MODEL]
    finally:
        evidence_file.write_bytes(saved[0])
        model_file.write_bytes(saved[1])

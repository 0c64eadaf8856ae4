"""pipeline.registry.sqlite_view: the embedded store read without MLflow gives MLflow's answers."""

from __future__ import annotations

import math
import subprocess
import sys

import mlflow
import pytest
from mlflow import MlflowClient

from conftest import CHEAP, LIGHT_MODEL, registered_versions, write_project
from pipeline import config as config_mod
from pipeline import registry
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


def test_list_and_history_do_not_import_mlflow(store):
    """The process boundary is the point: what `run-pipeline list` imports."""
    settings, cfg = store
    code = (
        "import sys\n"
        "from pipeline import cli\n"
        f"assert cli.main(['list', '--config', {str(cfg)!r}]) == 0\n"
        f"assert cli.main(['history', '--config', {str(cfg)!r}]) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'sqlalchemy', 'pandas'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "previous-staging" in proc.stdout and "promote" in proc.stdout

"""The embedded store read without MLflow: the registry's versions, aliases, tags and run metrics
straight from the SQLite file, for the CLI's read commands (`list`, `history`, `audit`), and
where a version's run artifacts and model files lie, so that evidence and model digests are
read from the store's own folders without MLflow's download (model.stored_version).

Importing MLflow and building its SQLAlchemy store costs ~2.5 s of a `run-pipeline list` that
then reads a few rows. This module reads those rows with the standard library's sqlite3, in
one read transaction (one consistent snapshot, whatever a writer does meanwhile), from a file
opened read-only. It reads only a schema it knows: the store's alembic revision must be one
of SCHEMA_REVISIONS (the ones the pinned MLflow creates), else `open_view` returns None and the
caller asks MLflow, as before. The figures are MLflow's own (tests/test_registry_read.py
compares both ways on one store).
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Settings

if TYPE_CHECKING:
    from pipeline.registry.alias import VersionInfo

# The alembic revisions of MLflow's tracking schema whose tables are read as below (workspace
# columns, latest_metrics): the head of the pinned MLflow (3.17.2). Another revision (an older
# store not yet migrated, a newer MLflow) is read through MLflow.
SCHEMA_REVISIONS = frozenset({"dc11669786a5"})
WORKSPACE = "default"
DELETED_STAGE = "Deleted_Internal"  # MLflow's soft-deleted model versions, which its searches leave out


class View:
    """One read transaction on the store's file."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def model(self, name: str) -> tuple[dict[str, str], dict[str, str]] | None:
        """(tags, alias -> version) of a registered model; None when there is none."""
        q = self.con.execute
        if not q("SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?", (WORKSPACE, name)).fetchone():
            return None
        tags = dict(
            q("SELECT key, value FROM registered_model_tags WHERE workspace = ? AND name = ?", (WORKSPACE, name))
        )
        aliases = {
            a: str(v)
            for a, v in q(
                "SELECT alias, version FROM registered_model_aliases WHERE workspace = ? AND name = ?",
                (WORKSPACE, name),
            )
        }
        return tags, aliases

    def versions(self, name: str, held: dict[str, tuple[str, ...]]) -> list[VersionInfo]:
        """Every version of `name` MLflow's search lists (not soft-deleted), newest first, with the
        aliases it holds (`held`: version -> aliases), its tags and its run's latest metrics (NaN
        where MLflow stored one)."""
        from pipeline.registry.alias import VersionInfo  # alias.py reads through this module

        q = self.con.execute
        rows = q(
            "SELECT version, run_id, creation_time FROM model_versions"
            " WHERE workspace = ? AND name = ? AND (current_stage IS NULL OR current_stage != ?)"
            " ORDER BY version DESC",
            (WORKSPACE, name, DELETED_STAGE),
        ).fetchall()
        tags: dict[int, dict[str, str]] = {}
        for version, key, value in q(
            "SELECT version, key, value FROM model_version_tags WHERE workspace = ? AND name = ?", (WORKSPACE, name)
        ):
            tags.setdefault(version, {})[key] = value
        metrics: dict[str, dict[str, float]] = {}
        for run, key, value, is_nan in q(
            "SELECT m.run_uuid, m.key, m.value, m.is_nan FROM latest_metrics m"
            " JOIN model_versions v ON v.run_id = m.run_uuid WHERE v.workspace = ? AND v.name = ?",
            (WORKSPACE, name),
        ):
            metrics.setdefault(run, {})[key] = math.nan if is_nan else float(value)
        return [
            VersionInfo(
                name, str(v), run or None, held.get(str(v), ()), tags.get(v, {}), created, dict(metrics.get(run, {}))
            )
            for v, run, created in rows
        ]

    def version(self, name: str, version: str) -> tuple[str | None, str | None, dict[str, str]] | None:
        """(run id, where its model's files are, tags) of one version, as MLflow's
        get_model_version and get_model_version_download_uri give them; None where MLflow's
        get finds none (no such number, soft-deleted, not a number at all)."""
        try:
            number = int(version)
        except ValueError:
            return None
        q = self.con.execute
        key = (WORKSPACE, name, number)
        row = q(
            "SELECT run_id, storage_location, source FROM model_versions"
            " WHERE workspace = ? AND name = ? AND version = ? AND (current_stage IS NULL OR current_stage != ?)",
            (*key, DELETED_STAGE),
        ).fetchone()
        if row is None:
            return None
        tags = dict(
            q("SELECT key, value FROM model_version_tags WHERE workspace = ? AND name = ? AND version = ?", key)
        )
        run_id, storage_location, source = row
        return run_id or None, storage_location or source or None, tags

    def artifact_uri(self, run_id: str) -> str | None:
        """A run's artifact root, as MLflow recorded it when the run started."""
        row = self.con.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        return row[0] if row and row[0] else None


def _path(settings: Settings) -> Path | None:
    uri = settings.mlflow.tracking_uri
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


@contextlib.contextmanager
def open_view(settings: Settings) -> Iterator[View | None]:
    """A View of the embedded store, or None where this module does not read it (not an SQLite
    store, no file yet, a schema revision it does not know): then ask MLflow."""
    path = _path(settings)
    if path is None or not path.is_file():
        yield None
        return
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30, isolation_level=None)
    except sqlite3.Error:
        yield None  # MLflow's connect names what is wrong with the file
        return
    try:
        try:
            con.execute("BEGIN")  # one snapshot for every read below
            revision = con.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            revision = None
        yield View(con) if revision and revision[0] in SCHEMA_REVISIONS else None
    finally:
        con.close()

"""The tracking store and model registry: one client per store, reachability, retries."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import InputError, PermissionDenied, PipelineError, RegistryUnavailable

# mlflow (1.1 s) and sqlalchemy.exc (0.13 s) are imported inside functions, in every module of this
# package: importing pipeline.registry costs 0.19 s without them, which the CLI's ping before each
# command and `run-pipeline feedback` pay, and no more.

# A store as connect() tells one from another: the settings that shape its client.
_Key = tuple[str, int, int]

_lock = threading.Lock()
_clients: dict[_Key, object] = {}
_current: _Key | None = None  # the store MLflow's globals (the fluent API) point at
_setups = 0


def quiet_mlflow() -> None:
    # MLflow logs migrations and emoji links at INFO; gate output should stay readable.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    # With a tracking server MLflow writes "View run ... at: URL" to stdout, which would
    # corrupt --json output; the run id is in our own output already.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def _point_mlflow_at(key: _Key) -> None:
    """Set MLflow's process-wide state for one store: HTTP patience, tracking and registry URI."""
    import mlflow

    uri, timeout_s, max_retries = key
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout_s)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(max_retries)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    # mlflow.set_tracking_uri also exports $MLFLOW_TRACKING_URI, which config.load reads as
    # the user's override: put back what the user had so the next config means itself.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def connect(settings: Settings):
    """Point MLflow at the configured store and return its client; bounded patience with servers.

    The client is built, and MLflow's globals set, once per store (tracking URI and HTTP
    patience); later calls return the same client and set the globals again only when
    another store was used in between (or someone else moved them).
    """
    import mlflow
    from mlflow import MlflowClient

    global _current, _setups
    ml = settings.mlflow
    key: _Key = (ml.tracking_uri, ml.http_timeout_s, ml.http_max_retries)
    uri = ml.tracking_uri
    if uri.startswith("sqlite:///"):
        _check_sqlite_file(Path(uri.removeprefix("sqlite:///")))
    # Every call: pytest restores the warning filters after each test.
    quiet_mlflow()
    with _lock:
        if key != _current or mlflow.get_tracking_uri() != uri or mlflow.get_registry_uri() != uri:
            _point_mlflow_at(key)
            _current = key
            _setups += 1
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return client


def _check_sqlite_file(path: Path) -> None:
    """An embedded store's file is an SQLite database (or not there yet), else one line naming it.

    SQLAlchemy would otherwise fail somewhere inside MLflow's migrations with a traceback.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        return  # MLflow creates it
    try:
        with path.open("rb") as f:
            head = f.read(16)
        if head and head != b"SQLite format 3\x00":
            raise InputError(
                f"tracking store {path}: not an SQLite database (it starts {head[:8]!r}); restore it from a backup"
            )
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:  # reads the header and the schema page only: cheap enough for every connect()
            con.execute("SELECT count(*) FROM sqlite_master").fetchall()
        finally:
            con.close()
    except IsADirectoryError:
        raise InputError(f"tracking store {path}: a folder, not an SQLite database file") from None
    except OSError as e:
        raise InputError(f"tracking store {path}: unreadable ({e.strerror or e})") from None
    except sqlite3.DatabaseError as e:
        raise InputError(f"tracking store {path}: damaged SQLite database ({e}); restore it from a backup") from None


def setup_count() -> int:
    """How many times connect() has pointed MLflow at a store in this process (for tests)."""
    return _setups


def store_exists(settings: Settings) -> bool:
    uri = settings.mlflow.tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).exists()  # a folder there is an error connect() names
    return True


# What a server's 403 means, by the REST endpoint refused: the permission the call needs.
_NEEDS = (
    ("/registered-models/", "registered model", "EDIT"),
    ("/model-versions/", "registered model", "EDIT"),
    ("/runs/", "experiment", "EDIT"),
    ("/experiments/", "experiment", "EDIT"),
    ("/logged-models", "experiment", "EDIT"),
    ("mlflow-artifacts", "experiment", "EDIT"),
)


def access_error(settings: Settings, e: BaseException) -> PipelineError | None:
    """One line for a server that refused who we are (401) or what we asked (403), naming the
    user, the call and the permission it needs; None for any other error."""
    text = str(e)
    code = str(getattr(e, "error_code", ""))
    uri = settings.mlflow.tracking_uri
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    found = re.search(r"endpoint (\S+)", text)
    endpoint = found[1] if found else "?"
    if "UNAUTHENTICATED" in code or "error code 401" in text:
        return PermissionDenied(
            f"tracking server {uri}: {'user ' + repr(user) if user else 'no user'} not authenticated "
            f"(401 on {endpoint}); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if "PERMISSION_DENIED" in code or "error code 403" in text:
        kind, perm = next(((k, p) for part, k, p in _NEEDS if part in endpoint), ("resource", "EDIT"))
        name = settings.mlflow.registered_model if kind == "registered model" else settings.mlflow.experiment
        return PermissionDenied(
            f"tracking server {uri}: permission denied to user {user!r} for {endpoint}, which needs "
            f"{perm} permission on {kind} '{name}'; nothing was changed by this call"
        )
    return None


@contextlib.contextmanager
def reachable(settings: Settings) -> Iterator[None]:
    """Turn a store that cannot be reached, or refuses us, into one line naming it."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as e:
        text = str(e)
        refused = access_error(settings, e)
        if refused is not None:
            raise refused from None
        if any(
            k in text for k in ("Connection refused", "Max retries", "ConnectionError", "timed out", "API request to")
        ):
            raise RegistryUnavailable(
                f"tracking server {settings.mlflow.tracking_uri} unreachable: {text.splitlines()[0][:200]}"
            ) from None
        raise


_TRANSIENT = (
    "IntegrityError",
    "database is locked",
    "Giving up after",
    "deadlock detected",
    "could not serialize",
    "UniqueViolation",
    "sqlalche.me/e/21/gkpj",
    "sqlalche.me/e/21/e3q8",
)


def retry(fn, *args, attempts: int = 6, **kwargs):
    """Call a registry write again when a concurrent writer made it conflict.

    Servers answer concurrent writers with integrity errors (two new versions numbered
    alike, two new registered models) or, on SQLite, "database is locked"; the write did
    not happen, so it is safe to repeat after a jittered pause.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except MlflowException as e:
            if attempt == attempts - 1 or not any(k in str(e) for k in _TRANSIENT):
                raise
            time.sleep(random.uniform(0.2, 0.6) * (attempt + 1))


def ensure_registered_model(settings: Settings, name: str) -> None:
    """Create the registered model if no pipeline has yet (concurrent creators are fine)."""
    from mlflow.exceptions import MlflowException

    client = connect(settings)
    try:
        client.get_registered_model(name)
        return
    except MlflowException:
        pass
    try:
        retry(client.create_registered_model, name)
    except MlflowException as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code) and "already exists" not in str(e):
            raise


def ensure_experiment(settings: Settings) -> str:
    import mlflow

    client = connect(settings)
    ml = settings.mlflow
    exp = client.get_experiment_by_name(ml.experiment)
    if exp is None:
        location = None
        if not ml.tracking_uri.startswith(("http://", "https://")):
            ml.artifact_location.mkdir(parents=True, exist_ok=True)
            location = ml.artifact_location.as_uri()
        try:
            exp_id = client.create_experiment(ml.experiment, artifact_location=location)
        except Exception:  # a concurrent pipeline created it first
            exp = client.get_experiment_by_name(ml.experiment)
            if exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


@contextlib.contextmanager
def alias_lock(settings: Settings, name: str, alias: str) -> Iterator[str]:
    """Hold the lock of `name`@`alias` for one alias move: concurrent promotions to the same
    alias take turns (different aliases do not wait for each other). Yields how it is held:
    a PostgreSQL advisory lock (mlflow.lock_url, or a postgresql:// tracking store), a lock
    file beside a SQLite store, or "none" (an HTTP server and no lock_url). At most
    LOCK_WAIT_S waiting: then RegistryUnavailable, nothing moved."""
    import hashlib

    url = settings.mlflow.lock_url or settings.mlflow.tracking_uri
    key = f"{name}@{alias}"
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import SQLAlchemyError
        from sqlalchemy.pool import NullPool

        # pg_advisory_lock takes a bigint: the key's first 8 bytes of SHA-256, signed.
        number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        try:
            engine = create_engine(url, poolclass=NullPool)
            con = engine.connect()
            con.execute(text(f"SET lock_timeout = '{LOCK_WAIT_S}s'"))
            con.execute(text("SELECT pg_advisory_lock(:k)"), {"k": number})
        except SQLAlchemyError as e:
            raise RegistryUnavailable(
                f"mlflow.lock_url: the alias lock of {key} could not be taken "
                f"({str(getattr(e, 'orig', None) or e).splitlines()[0][:160]})"
            ) from None
        try:
            yield "postgresql advisory lock"
        finally:
            with contextlib.suppress(SQLAlchemyError):
                con.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": number})
            con.close()
            engine.dispose()
        return
    if url.startswith("sqlite:///"):
        import fcntl

        path = Path(url.removeprefix("sqlite:///")).with_suffix(".alias-locks")
        path.mkdir(parents=True, exist_ok=True)
        with open(path / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock", "w") as f:
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RegistryUnavailable(
                            f"{path}: the alias lock of {key} was held for {LOCK_WAIT_S} s: another promotion hangs"
                        ) from None
                    time.sleep(0.05)
            try:
                yield "lock file"
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return
    yield "none"


LOCK_WAIT_S = 60


def ping(settings: Settings) -> None:
    """Fail fast, in one line, when a tracking server does not answer its health check."""
    uri = settings.mlflow.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=min(10, settings.mlflow.http_timeout_s)) as r:
            if r.status == 200:
                return
            reason = f"health check answered {r.status}"
    except urllib.error.HTTPError as e:
        reason = f"health check answered {e.code}"
    except (urllib.error.URLError, OSError) as e:
        reason = str(getattr(e, "reason", e))
    raise RegistryUnavailable(f"tracking server {uri} unreachable: {reason}")


def store_error_line(e: BaseException) -> str | None:
    """One line for an MLflow error nobody foresaw (the CLI prints it, exit 2); None for any other error."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError  # MLflow depends on it

    if isinstance(e, SQLAlchemyError):  # the database behind the store: its first line, not the SQL
        return f"database error: {str(getattr(e, 'orig', None) or e).splitlines()[0][:200]}"
    if not isinstance(e, MlflowException):
        return None
    return next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)[:300]

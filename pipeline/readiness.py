"""Readiness: can this machine run the pipeline? Each check one row: check, status, detail."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlparse

from pipeline import data
from pipeline.config import Settings
from pipeline.errors import PipelineError

PACKAGES = (
    "mlflow",
    "scikit-learn",
    "pandas",
    "pandera",
    "skops",
    "scipy",
    "statsmodels",
    "pytest",
    "hypothesis",
    "pytest-benchmark",
)


def _row(check: str, ok: bool | None, detail: str) -> dict[str, str]:
    return {"check": check, "status": "ok" if ok else ("skip" if ok is None else "fail"), "detail": detail}


def _tcp(host: str, port: int, timeout: float = 3.0) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return str(e)


def checks(settings: Settings) -> list[dict[str, str]]:
    rows = []
    for pkg in PACKAGES:
        try:
            rows.append(_row(f"package {pkg}", True, version(pkg)))
        except PackageNotFoundError:
            rows.append(_row(f"package {pkg}", False, "not installed"))
    rows.append(_row("config", True, f"{settings.config_path} (env {settings.env}, model {settings.model.type})"))
    features, n = None, None
    try:
        ds = data.load(settings)
        rows.append(
            _row(
                "data",
                True,
                f"{settings.data.path}: {len(ds.frame)} rows, {len(ds.features.columns)} features, contract ok",
            )
        )
        features, n = ds.features, len(ds.frame)
    except PipelineError as e:
        rows.append(_row("data", False, str(e)))
    header = data.readable_header(settings)
    if header is not None:
        # Every column the config names, all of them, one row each: not just the first.
        problems = data.config_problems(settings, header, features, n)
        rows += [_row("config columns", False, p) for p in problems]
        if not problems:
            rows.append(_row("config columns", True, "every column the config names is in the data, of the right kind"))
    uri = settings.mlflow.tracking_uri
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=settings.mlflow.http_timeout_s) as r:
                rows.append(_row("tracking server", r.status == 200, f"{uri}/health answered {r.status}"))
        except (urllib.error.URLError, OSError) as e:
            rows.append(_row("tracking server", False, f"{uri} unreachable: {getattr(e, 'reason', e)}"))
    elif parsed.scheme == "sqlite":
        path = uri.removeprefix("sqlite:///")
        parent = Path(path).parent
        writable = parent.exists() or parent.parent.exists()
        rows.append(
            _row(
                "tracking store",
                writable,
                f"embedded SQLite {path} ({'exists' if Path(path).exists() else 'created on first run'})",
            )
        )
    elif parsed.scheme.startswith("postgresql"):
        err = _tcp(parsed.hostname or "127.0.0.1", parsed.port or 5432)
        rows.append(
            _row(
                "tracking store",
                err is None,
                f"PostgreSQL {parsed.hostname}:{parsed.port or 5432} "
                + ("reachable" if err is None else f"unreachable: {err}"),
            )
        )
    else:
        rows.append(_row("tracking store", None, f"{uri}: not checked"))
    return rows

"""Online: champion and challenger behind one HTTP service, the prediction log, feedback, the monitor.

    log      the prediction log store (SQLite beside the project, PostgreSQL by URL): batched writes, feedback, events
    service  arms, routing (split by a stable hash, or shadow), alias polling
    shadow   the other arm's scoring, in a worker process fed by a bounded queue
    metrics  /metrics in Prometheus text format
    app      the FastAPI routes and uvicorn
    monitor  live figures per arm, drift against the training data, rollback and stop decisions
    client   a caller's side: one HTTP request or a persistent connection, MLflow's scoring payload (tests, bench, the guide)

Only `pipeline.registry` talks to MLflow; this package asks it who holds an alias, loads
versions through it and records its decisions through it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import InputError

# pipeline.live.log (0.5 s: sqlalchemy, pandas) and pipeline.data (1.2 s) are imported inside functions:
# the CLI and pipeline.live.client (the serving gate, bench) import this package without them.


def open_log(settings: Settings):
    """The configured prediction log, its tables created; InputError (exit 2) when it cannot be reached."""
    from pipeline.live.log import PredictionLog, default_url

    url = default_url(Path(settings.config_path).parent, settings.live.log_url)
    return PredictionLog(url, queue_rows=settings.live.queue_rows, spool_dir=spool_dir(settings, url))


def spool_dir(settings: Settings, url: str) -> Path:
    """Where this machine's servers spool rows for the log at `url` (one folder per log: a killed
    server's rows are replayed into its own log only): beside a SQLite file, else in live/ beside the config."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///") + ".spool")
    return Path(settings.config_path).parent / "live" / f"spool-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def read_feedback(path: Path, key: str, value: str, row: str | None = None) -> list[dict]:
    """Feedback items from a CSV: request ids in `key`, observed values in `value` (and rows in `row`)."""
    from pipeline import data as data_mod

    frame = data_mod.read_csv(Path(path))
    for flag, column in (("--key", key), ("--value", value), ("--row", row)):
        if column is not None and column not in frame.columns:
            raise InputError(
                f"{path}: {flag} column '{column}' not found (columns: {', '.join(map(str, frame.columns[:12]))})"
            )
    keys = frame[key].astype(object).where(frame[key].notna(), None)
    rows = frame[row].tolist() if row else [0] * len(frame)
    return [
        {"request_id": None if k is None else str(k), "row": r, "value": v}
        for k, r, v in zip(keys, rows, frame[value].tolist())
    ]

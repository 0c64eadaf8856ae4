"""The prediction log: every answered row, the feedback joined to it, and what the monitor did.

SQLite beside the project by default, PostgreSQL (or any SQLAlchemy URL) when several server
processes share one log. The answer path only puts rows on a bounded queue; a writer thread
inserts them in batches, so a slow or unreachable store never blocks or fails an answer: a
row that finds the queue full, or whose batch cannot be written, is counted as dropped (and
the count is written to the store as soon as it answers again). Rows are keyed by
(request id, row, arm): a row written twice, by a retry or a replay, is in the log once.
"""

from __future__ import annotations

import hashlib
import json
import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from pipeline.errors import InputError

BATCH_ROWS = 500
FLUSH_S = 0.2


def default_url(config_dir: Path, log_url: str | None) -> str:
    """The configured log URL, a relative sqlite path resolved beside the config; unset: live/predictions.db there."""
    if not log_url:
        return f"sqlite:///{(config_dir / 'live' / 'predictions.db').resolve()}"
    prefix = "sqlite:///"
    if log_url.startswith(prefix) and not log_url.startswith(prefix + "/"):
        return prefix + str((config_dir / log_url[len(prefix):]).resolve())
    return log_url


def features_digest(values: dict[str, Any]) -> str:
    """SHA-256 of one row's feature values (canonical JSON): the same inputs, the same digest."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def _tables(md):
    from sqlalchemy import Column, Float, Integer, String, Table, Text

    predictions = Table(
        "predictions", md,
        Column("request_id", String(128), primary_key=True),
        Column("row", Integer, primary_key=True),
        Column("arm", String(32), primary_key=True),  # production | challenger
        Column("alias", String(128), nullable=False),  # the alias the arm serves
        Column("version", String(32), nullable=False),
        Column("answered", Integer, nullable=False),  # 1: this arm's prediction was the answer; 0: scored in its shadow
        Column("at", Float, nullable=False, index=True),  # seconds since the epoch
        Column("prediction", Float),
        Column("latency_ms", Float),
        Column("features_sha256", String(64), nullable=False),
        Column("features", Text, nullable=False),  # JSON: the monitor's live inputs for drift
    )
    feedback = Table(
        "feedback", md,
        Column("request_id", String(128), primary_key=True),
        Column("row", Integer, primary_key=True),
        Column("value", Float, nullable=False),
        Column("at", Float, nullable=False),
    )
    drops = Table(
        "drops", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", Float, nullable=False),
        Column("rows", Integer, nullable=False),
        Column("reason", Text, nullable=False),
    )
    events = Table(  # what the monitor did, and why
        "events", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", Float, nullable=False),
        Column("action", String(32), nullable=False),  # stop-routing | rollback | candidate
        Column("alias", String(128), nullable=False),
        Column("version", String(32), nullable=False),
        Column("why", Text, nullable=False),
    )
    return predictions, feedback, drops, events


@dataclass(frozen=True)
class FeedbackResult:
    """What one batch of feedback did: rows joined, and rows not joined by kind."""

    accepted: int
    duplicates: int  # feedback for a row that has some already (or twice in the batch): the first one stands
    unknown: list[str]  # request ids (with row) the log has no prediction for
    invalid: list[str]  # 'request id row N: why' for missing or non-numeric values

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "unknown": len(self.unknown),
                "invalid": len(self.invalid), "unknown_ids": self.unknown[:20], "invalid_rows": self.invalid[:20]}


class PredictionLog:
    """One log store: its tables, the batched writer, feedback and the monitor's reads."""

    def __init__(self, url: str, *, queue_rows: int = 20_000, connect_timeout_s: float = 5.0):
        from sqlalchemy import MetaData, create_engine
        from sqlalchemy.exc import SQLAlchemyError

        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            args = {"timeout": connect_timeout_s}
        elif url.startswith("postgresql"):
            args = {"connect_timeout": max(1, int(connect_timeout_s))}
        else:
            args = {}
        try:
            self.engine = create_engine(url, connect_args=args, pool_pre_ping=True)
        except Exception as e:  # a URL SQLAlchemy cannot even parse, or a driver it lacks
            raise InputError(f"live.log_url {shown_url(url)}: {type(e).__name__}: {str(e).splitlines()[0][:160]}") from None
        md = MetaData()
        self.predictions, self.feedback, self.drops, self.events = _tables(md)
        try:
            md.create_all(self.engine)
        except SQLAlchemyError as e:
            raise InputError(f"live.log_url {shown_url(url)}: the prediction log cannot be reached "
                             f"({str(e.orig if getattr(e, 'orig', None) else e).splitlines()[0][:160]})") from None
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=queue_rows)
        self._lock = threading.Lock()
        self.written = 0  # rows this process wrote
        self.dropped = 0  # rows this process dropped (queue full, or their batch failed)
        self._unrecorded_drops: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self.last_error: str | None = None

    # ------------------------------------------------------------ writing (the answer path)

    def start(self) -> "PredictionLog":
        if self._writer is None:
            self._writer = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
            self._writer.start()
        return self

    def put(self, rows: Iterable[dict[str, Any]]) -> None:
        """Queue rows for the writer; never blocks: a row finding the queue full is dropped and counted."""
        lost = 0
        for r in rows:
            try:
                self._queue.put_nowait(r)
            except queue.Full:
                lost += 1
        if lost:
            self._dropped(lost, "the log writer's queue was full")

    def _dropped(self, rows: int, reason: str) -> None:
        with self._lock:
            self.dropped += rows
            self._unrecorded_drops.append((rows, reason))

    def pending(self) -> int:
        return self._queue.qsize()

    def _take(self, wait: float) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        try:
            batch.append(self._queue.get(timeout=wait))
            while len(batch) < BATCH_ROWS:
                batch.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take(FLUSH_S)
            if batch:
                self._write(batch)
            elif self._unrecorded_drops:
                self._write([])

    def _write(self, batch: list[dict[str, Any]]) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        with self._lock:
            drops, self._unrecorded_drops = self._unrecorded_drops, []
        try:
            with self.engine.begin() as con:
                if batch:
                    con.execute(self._insert_ignoring(self.predictions), batch)
                if drops:
                    now = time.time()
                    con.execute(self.drops.insert(), [{"at": now, "rows": n, "reason": why} for n, why in drops])
        except SQLAlchemyError as e:
            self.last_error = str(getattr(e, "orig", None) or e).splitlines()[0][:200]
            with self._lock:
                self._unrecorded_drops = drops + self._unrecorded_drops
            if batch:
                self._dropped(len(batch), f"the log store refused the batch: {self.last_error}")
            return
        self.last_error = None
        self.written += len(batch)

    def _insert_ignoring(self, table):
        """INSERT that leaves a row already there (same primary key) as it is."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise InputError(f"live.log_url {shown_url(self.url)}: only SQLite and PostgreSQL logs are supported")
        return insert(table).on_conflict_do_nothing()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued row has been written (or dropped)."""
        deadline = time.monotonic() + timeout
        while (self._queue.qsize() or self._unrecorded_drops) and time.monotonic() < deadline:
            if self._writer is None or not self._writer.is_alive():
                batch = self._take(0)
                self._write(batch)
            else:
                time.sleep(0.02)
        time.sleep(FLUSH_S if self._writer is not None else 0)  # the batch the writer holds

    def close(self, timeout: float = 10.0) -> None:
        """Flush on shutdown, then stop the writer: a clean stop loses nothing."""
        self.flush(timeout)
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout)
        while self._queue.qsize():  # anything queued while the writer stopped
            self._write(self._take(0))
        if self._unrecorded_drops:
            self._write([])
        self.engine.dispose()

    # ------------------------------------------------------------ feedback

    def add_feedback(self, items: list[dict[str, Any]]) -> FeedbackResult:
        """Join observed values to logged rows; each item {request_id, row (default 0), value}."""
        from sqlalchemy import select, tuple_

        now = time.time()
        invalid: list[str] = []
        wanted: dict[tuple[str, int], float] = {}
        duplicates = 0
        for i, it in enumerate(items):
            rid, row, value = it.get("request_id"), it.get("row", 0), it.get("value")
            where = f"request id {rid!r} row {row}" if rid is not None else f"item {i}"
            if not isinstance(rid, str) or not rid:
                invalid.append(f"item {i}: no request_id")
                continue
            try:
                row = int(row)
            except (TypeError, ValueError):
                invalid.append(f"{where}: row is not a whole number")
                continue
            number = _number(value)
            if number is None:
                invalid.append(f"{where}: value {value!r} is {'missing' if value in (None, '') else 'not a number'}")
                continue
            if (rid, row) in wanted:
                duplicates += 1
                continue
            wanted[(rid, row)] = number
        if not wanted:
            return FeedbackResult(0, duplicates, [], invalid)
        keys = list(wanted)
        known: set[tuple[str, int]] = set()
        have: set[tuple[str, int]] = set()
        with self.engine.begin() as con:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                p, f = self.predictions.c, self.feedback.c
                known |= {(r, n) for r, n in con.execute(select(p.request_id, p.row).where(tuple_(p.request_id, p.row).in_(chunk)).distinct())}
                have |= {(r, n) for r, n in con.execute(select(f.request_id, f.row).where(tuple_(f.request_id, f.row).in_(chunk)))}
            new = [{"request_id": r, "row": n, "value": wanted[(r, n)], "at": now} for r, n in keys if (r, n) in known and (r, n) not in have]
            if new:
                con.execute(self._insert_ignoring(self.feedback), new)
        unknown = [f"{r}#{n}" if n else r for r, n in keys if (r, n) not in known]
        return FeedbackResult(len(new), duplicates + sum(1 for k in keys if k in have), unknown, invalid)

    # ------------------------------------------------------------ what the monitor reads and records

    def window(self, arm: str, version: str, rows: int):
        """The arm's latest `rows` logged rows of `version` (answered or shadow), with feedback where it came, oldest first."""
        import pandas as pd
        from sqlalchemy import select

        p, f = self.predictions.c, self.feedback.c
        q = (select(p.request_id, p.row, p.answered, p.at, p.prediction, p.features, f.value)
             .select_from(self.predictions.outerjoin(self.feedback, (f.request_id == p.request_id) & (f.row == p.row)))
             .where(p.arm == arm, p.version == version).order_by(p.at.desc()).limit(rows))
        with self.engine.connect() as con:
            frame = pd.DataFrame(con.execute(q).fetchall(), columns=["request_id", "row", "answered", "at", "prediction", "features", "truth"])
        return frame.iloc[::-1].reset_index(drop=True)

    def predictions_of(self, arm: str, keys: list[tuple[str, int]], version: str) -> dict[tuple[str, int], float]:
        """The arm's logged predictions (by `version`) of these (request id, row) keys."""
        from sqlalchemy import select, tuple_

        p = self.predictions.c
        out: dict[tuple[str, int], float] = {}
        with self.engine.connect() as con:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                q = select(p.request_id, p.row, p.prediction).where(p.arm == arm, p.version == version, tuple_(p.request_id, p.row).in_(chunk))
                out.update({(r, n): v for r, n, v in con.execute(q)})
        return out

    def counts(self) -> dict[str, int]:
        """Rows logged, rows with feedback and rows dropped (by every process that used this store)."""
        from sqlalchemy import func, select

        with self.engine.connect() as con:
            return {"logged": int(con.execute(select(func.count()).select_from(self.predictions)).scalar() or 0),
                    "feedback": int(con.execute(select(func.count()).select_from(self.feedback)).scalar() or 0),
                    "dropped": int(con.execute(select(func.coalesce(func.sum(self.drops.c.rows), 0))).scalar() or 0)}

    def logged_ids(self) -> dict[str, int]:
        """request id -> how many answered rows the log holds for it."""
        from sqlalchemy import func, select

        p = self.predictions.c
        with self.engine.connect() as con:
            return {r: int(n) for r, n in con.execute(select(p.request_id, func.count()).where(p.answered == 1).group_by(p.request_id))}

    def latest_alias(self, arm: str) -> str | None:
        """The alias the arm served in its latest logged row (the challenger's, for the monitor)."""
        from sqlalchemy import select

        p = self.predictions.c
        with self.engine.connect() as con:
            row = con.execute(select(p.alias).where(p.arm == arm).order_by(p.at.desc()).limit(1)).first()
        return row[0] if row else None

    def record_event(self, action: str, alias: str, version: str, why: str) -> None:
        with self.engine.begin() as con:
            con.execute(self.events.insert(), [{"at": time.time(), "action": action, "alias": alias, "version": version, "why": why}])

    def stopped(self, alias: str, version: str) -> str | None:
        """Why the monitor stopped routing to `version` of `alias`, None while it has not."""
        from sqlalchemy import select

        e = self.events.c
        q = select(e.why).where(e.action == "stop-routing", e.alias == alias, e.version == version).order_by(e.id.desc()).limit(1)
        with self.engine.connect() as con:
            row = con.execute(q).first()
        return row[0] if row else None

    def event_list(self) -> list[dict[str, Any]]:
        from sqlalchemy import select

        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(select(self.events).order_by(self.events.c.id))]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]

"""The prediction log: every answered row, the feedback joined to it, and what the monitor did.

SQLite beside the project by default, PostgreSQL (or any SQLAlchemy URL) when several server
processes share one log. The answer path only appends rows to a spool file and a bounded
queue; a writer thread inserts them in batches, so a slow or unreachable store never blocks
or fails an answer. A batch the store refuses is tried again; rows finding the queue full
meanwhile are dropped and counted (the count goes to the store too, as soon as it answers).
Rows are keyed by (request id, row, arm): a row written twice, by a client's retry or a
replayed spool, is in the log once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, create_engine, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import InputError

BATCH_ROWS = 500
FLUSH_S = 0.2  # the writer's longest wait for a batch
# After a batch's first row, how long the writer gathers more before it writes: a transaction per
# request held the GIL beside the next answers (~1.8 ms of a single-row answer on Ames); one per
# tenth of a second costs the answers almost nothing, and flush() still returns within it.
LINGER_S = 0.1
RETRY_S = 0.5  # before it tries a refused batch again


def default_url(config_dir: Path, log_url: str | None) -> str:
    """The configured log URL, a relative sqlite path resolved beside the config; unset: live/predictions.db there."""
    if not log_url:
        return f"sqlite:///{(config_dir / 'live' / 'predictions.db').resolve()}"
    prefix = "sqlite:///"
    if log_url.startswith(prefix) and not log_url.startswith(prefix + "/"):
        return prefix + str((config_dir / log_url[len(prefix) :]).resolve())
    return log_url


def features_text(values: dict[str, Any]) -> tuple[str, str]:
    """One row's feature values as canonical JSON, and its SHA-256: the same inputs, the same digest."""
    text = json.dumps(values, sort_keys=True, default=str)
    return text, hashlib.sha256(text.encode()).hexdigest()


def answer_rows(out: Any) -> list[Any]:
    """A model's answer to its rows, one item per row: a regressor's prediction; a
    classifier's probabilities, one per class, as its pyfunc returns them."""
    a = np.asarray(out, dtype=float)
    return a.tolist() if a.ndim == 2 and a.shape[1] > 1 else a.reshape(-1).tolist()


def answer_columns(answer: Any) -> dict[str, Any]:
    """One row's answer (answer_rows) as the log holds it: `prediction`, the number (a
    binary classifier's positive-class probability), and a classifier's `scores`."""
    if isinstance(answer, list):
        return {"prediction": answer[1] if len(answer) == 2 else None, "scores": json.dumps(answer)}
    return {"prediction": float(answer), "scores": None}


def label_code(value: Any, labels: list[str]) -> float | None:
    """A classifier's feedback: the label (as the file writes it: 1, not 1.0) as its class code."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = str(value)
    else:
        text = str(int(value)) if math.isfinite(value) and value == int(value) else str(value)
    return float(labels.index(text)) if text in labels else None


def _tables(md):
    predictions = Table(
        "predictions",
        md,
        Column("request_id", String(128), primary_key=True),
        Column("row", Integer, primary_key=True),
        Column("arm", String(32), primary_key=True),  # production | challenger
        Column("alias", String(128), nullable=False),  # the alias the arm serves
        Column("version", String(32), nullable=False),
        Column("answered", Integer, nullable=False),  # 1: this arm's prediction was the answer; 0: scored in its shadow
        Column("at", Float, nullable=False, index=True),  # seconds since the epoch
        Column("prediction", Float),  # a regressor's prediction; a binary classifier's positive-class probability
        Column("latency_ms", Float),
        Column("features_sha256", String(64), nullable=False),
        Column("features", Text, nullable=False),  # JSON: the monitor's live inputs for drift
        Column("scores", Text),  # JSON: a classifier's probability of each class (in code order)
    )
    feedback = Table(
        "feedback",
        md,
        Column("request_id", String(128), primary_key=True),
        Column("row", Integer, primary_key=True),
        Column("value", Float, nullable=False),
        Column("at", Float, nullable=False),
    )
    drops = Table(  # rows dropped, counted: one record per drop, keyed so that a replayed spool never counts one twice
        "drops",
        md,
        Column("key", String(64), primary_key=True),
        Column("at", Float, nullable=False),
        Column("rows", Integer, nullable=False),
        Column("reason", Text, nullable=False),
    )
    events = Table(  # what the monitor did, and why
        "events",
        md,
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
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "unknown": len(self.unknown),
            "invalid": len(self.invalid),
            "unknown_ids": self.unknown[:20],
            "invalid_rows": self.invalid[:20],
        }


class PredictionLog:
    """One log store: its tables, the batched writer, feedback and the monitor's reads.

    With a `spool_dir`, every row is appended to this process's spool file (one write per
    request, before its answer goes out) as it is queued; the file is emptied whenever
    everything in it is in the store. A process killed with rows still queued leaves its file
    behind, and the next PredictionLog started on the same spool folder writes them (a row
    the store has already is left as it is) and the drops it had counted, then deletes it: an
    answered row is in the log exactly once, or counted as dropped, even after a SIGKILL
    (not after a power cut: the file is not fsynced).
    """

    def __init__(
        self, url: str, *, queue_rows: int = 20_000, connect_timeout_s: float = 5.0, spool_dir: Path | None = None
    ):
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
            raise InputError(
                f"live.log_url {shown_url(url)}: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
            ) from None
        md = MetaData()
        self.predictions, self.feedback, self.drops, self.events = _tables(md)
        try:
            md.create_all(self.engine)
            self._add_missing_columns()
        except SQLAlchemyError as e:
            raise InputError(
                f"live.log_url {shown_url(url)}: the prediction log cannot be reached "
                f"({str(getattr(e, 'orig', None) or e).splitlines()[0][:160]})"
            ) from None
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=queue_rows)
        self._lock = threading.Lock()  # put (spool and queue together) against the spool's emptying
        self.written = 0  # rows this process wrote
        self.dropped = 0  # rows this process dropped: the queue was full when they came
        self.replayed = 0  # rows of killed processes' spool files written at start
        self._drops: list[dict[str, Any]] = []  # drop records not yet in the store
        self._held: list[dict[str, Any]] = []  # a batch the store refused, tried again (it is in the spool)
        self._inflight = 0  # rows the writer has taken and not yet written
        self._moving = threading.Lock()  # rows between the queue, the held batch and the writer's hands
        self._arrived = threading.Event()  # a row was queued
        self._flushing = threading.Event()  # a flush is waiting: the writer stops lingering
        self._token, self._seq = uuid.uuid4().hex[:12], 0
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        self._spool: Any = None  # the spool file (binary, unbuffered), locked for this process's life
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self.last_error: str | None = None

    # ------------------------------------------------------------ writing (the answer path)

    def start(self) -> PredictionLog:
        """Write what killed processes left in the spool folder, open this process's spool, start the writer."""
        if self.spool_dir is not None and self._spool is None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            self._replay_orphans()
            self._spool = open(self.spool_dir / f"{os.getpid()}-{self._token}.jsonl", "ab", buffering=0)
            fcntl.flock(self._spool, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held for this process's life: not an orphan
        if self._writer is None:
            self._writer = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
            self._writer.start()
        return self

    def put(self, rows: Iterable[dict[str, Any]]) -> None:
        """Spool and queue rows for the writer; never blocks: rows finding the queue full are dropped and counted."""
        rows = list(rows)
        with self._lock:
            room = max(0, self._queue.maxsize - self._queue.qsize())  # only put adds, under this lock: room only grows
            taken, lost = rows[:room], len(rows) - min(room, len(rows))
            lines = [json.dumps(r) for r in taken]
            drop = self._drop_record(lost, "the log writer's queue was full") if lost else None
            if drop:
                lines.append(json.dumps({"drop": drop}))
            if self._spool is not None and lines:
                self._spool.write(("\n".join(lines) + "\n").encode())
            for r in taken:
                self._queue.put_nowait(r)
            if taken:
                self._arrived.set()
            if drop:
                self._drops.append(drop)
                self.dropped += lost

    def _drop_record(self, rows: int, reason: str) -> dict[str, Any]:
        self._seq += 1
        return {"key": f"{self._token}-{self._seq}", "at": time.time(), "rows": rows, "reason": reason}

    def pending(self) -> int:
        with self._moving:
            return self._queue.qsize() + len(self._held) + self._inflight

    def _take(self, wait: float, linger: float = 0.0) -> list[dict[str, Any]]:
        """Up to BATCH_ROWS queued rows (the held batch first), once a row has come within `wait`
        and `linger` more has passed (or a flush asked); counted in flight as they leave the queue."""
        if not self._held and self._queue.empty():
            self._arrived.wait(wait)
        if linger and not self._held and 0 < self._queue.qsize() < BATCH_ROWS:  # a full batch goes at once
            self._flushing.wait(linger)
        with self._moving:  # pending() never sees a row in neither place
            self._arrived.clear()
            batch, self._held = self._held, []
            try:
                while len(batch) < BATCH_ROWS:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            self._inflight = len(batch)
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._write_taken(self._take(FLUSH_S, LINGER_S)):
                self._stop.wait(RETRY_S)

    def _write_taken(self, batch: list[dict[str, Any]]) -> bool:
        """Write a batch _take gave (and the drop records); a batch the store refused is held for
        the next try (new rows queue, then drop, counted). False when it was refused."""
        written = not (batch or self._drops) or self._write(batch)
        with self._moving:
            if not written:
                self._held = batch
            self._inflight = 0
        return written

    def _write(self, batch: list[dict[str, Any]]) -> bool:
        """Insert a batch and the drop records not yet in the store; False when the store refused."""
        with self._lock:
            drops = list(self._drops)
        try:
            with self.engine.begin() as con:
                if batch:
                    con.execute(self._insert_ignoring(self.predictions), batch)
                if drops:
                    con.execute(self._insert_ignoring(self.drops), drops)
        except SQLAlchemyError as e:
            self.last_error = str(getattr(e, "orig", None) or e).splitlines()[0][:200]
            return False
        self.last_error = None
        self.written += len(batch)
        done = {d["key"] for d in drops}
        with self._lock:
            self._drops = [d for d in self._drops if d["key"] not in done]
            if self._spool is not None and self._queue.empty() and not self._drops and not self._held:
                self._spool.truncate(0)  # everything it holds is in the store
        return True

    def _replay_orphans(self) -> None:
        """Write the rows and drops of spool files whose process is gone (none holds its lock), then delete them."""
        assert self.spool_dir is not None
        for path in sorted(self.spool_dir.glob("*.jsonl")):
            try:
                f = open(path, "rb")
            except OSError:  # another process replayed it meanwhile
                continue
            with f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # its process is alive
                    continue
                rows: list[dict[str, Any]] = []
                drops: list[dict[str, Any]] = []
                cut = 0
                for line in f.read().splitlines():
                    try:
                        doc = json.loads(line)
                    except ValueError:  # a line cut by the kill: its request was never answered
                        cut += 1
                        continue
                    (drops if "drop" in doc else rows).append(doc.get("drop", doc))
                if cut:
                    drops.append(
                        {
                            "key": f"{path.stem}-cut",
                            "at": time.time(),
                            "rows": cut,
                            "reason": f"{path.name}: a line cut by a kill",
                        }
                    )
                try:
                    with self.engine.begin() as con:
                        for start in range(0, len(rows), BATCH_ROWS):
                            con.execute(self._insert_ignoring(self.predictions), rows[start : start + BATCH_ROWS])
                        if drops:
                            con.execute(self._insert_ignoring(self.drops), drops)
                except SQLAlchemyError as e:  # left for the next start
                    self.last_error = (
                        f"{path.name}: not replayed: {str(getattr(e, 'orig', None) or e).splitlines()[0][:160]}"
                    )
                    continue
                self.replayed += len(rows)
                path.unlink()

    def _add_missing_columns(self) -> None:
        """A log written by an earlier release lacks the columns added since: added, nullable
        (its rows keep their values; create_all creates missing tables, never columns)."""
        from sqlalchemy import inspect, text

        have = {c["name"] for c in inspect(self.engine).get_columns("predictions")}
        with self.engine.begin() as con:
            for column in self.predictions.columns:
                if column.name not in have:
                    kind = column.type.compile(dialect=self.engine.dialect)
                    con.execute(text(f'ALTER TABLE predictions ADD COLUMN "{column.name}" {kind}'))

    def _insert_ignoring(self, table):
        """INSERT that leaves a row already there (same primary key) as it is."""
        if self.engine.dialect.name == "postgresql":
            insert: Any = postgresql.insert
        elif self.engine.dialect.name == "sqlite":
            insert = sqlite.insert
        else:
            raise InputError(f"live.log_url {shown_url(self.url)}: only SQLite and PostgreSQL logs are supported")
        return insert(table).on_conflict_do_nothing()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row and drop count is in the store; False when the timeout came first."""
        deadline = time.monotonic() + timeout
        self._flushing.set()
        try:
            while self.pending() or self._drops:
                if time.monotonic() >= deadline:
                    return False
                if self._writer is None or not self._writer.is_alive():
                    if not self._write_taken(self._take(0)):
                        time.sleep(RETRY_S)
                else:
                    time.sleep(0.02)
            return True
        finally:
            self._flushing.clear()

    def close(self, timeout: float = 10.0) -> None:
        """Flush on shutdown, then stop the writer: a clean stop loses nothing. What the store would
        not take stays in the spool file, for the next start."""
        self.flush(timeout)
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout)
        if self._spool is not None:
            empty = os.fstat(self._spool.fileno()).st_size == 0 and not self.pending() and not self._drops
            name = self._spool.name
            self._spool.close()  # and its lock: an orphan now, if anything is left in it
            if empty:
                Path(name).unlink(missing_ok=True)
        self.engine.dispose()

    # ------------------------------------------------------------ feedback

    def add_feedback(self, items: list[dict[str, Any]], labels: list[str] | None = None) -> FeedbackResult:
        """Join observed values to logged rows; each item {request_id, row (default 0), value}.
        With a classifier's `labels` (in code order), each value is a label, kept as its code."""
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
            number = _number(value) if labels is None else label_code(value, labels)
            if number is None and labels is not None and value is not None and value != "":
                invalid.append(f"{where}: label {value!r} is not one of {', '.join(sorted(labels))}")
                continue
            if number is None:
                absent = value is None or value == "" or (isinstance(value, float) and math.isnan(value))
                invalid.append(f"{where}: value missing" if absent else f"{where}: value {value!r} is not a number")
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
                chunk = keys[start : start + 500]
                p, f = self.predictions.c, self.feedback.c
                known |= {
                    (r, n)
                    for r, n in con.execute(
                        select(p.request_id, p.row).where(tuple_(p.request_id, p.row).in_(chunk)).distinct()
                    )
                }
                have |= {
                    (r, n)
                    for r, n in con.execute(select(f.request_id, f.row).where(tuple_(f.request_id, f.row).in_(chunk)))
                }
            new = [
                {"request_id": r, "row": n, "value": wanted[(r, n)], "at": now}
                for r, n in keys
                if (r, n) in known and (r, n) not in have
            ]
            if new:
                con.execute(self._insert_ignoring(self.feedback), new)
        unknown = [f"{r}#{n}" if n else r for r, n in keys if (r, n) not in known]
        return FeedbackResult(len(new), duplicates + sum(1 for k in keys if k in have), unknown, invalid)

    # ------------------------------------------------------------ what the monitor reads and records

    def window(self, arm: str, version: str, rows: int):
        """The arm's latest `rows` logged rows of `version` (answered or shadow), with feedback where it came, oldest first."""
        p, f = self.predictions.c, self.feedback.c
        q = (
            select(p.request_id, p.row, p.answered, p.at, p.prediction, p.scores, p.features, f.value)
            .select_from(self.predictions.outerjoin(self.feedback, (f.request_id == p.request_id) & (f.row == p.row)))
            .where(p.arm == arm, p.version == version)
            .order_by(p.at.desc())
            .limit(rows)
        )
        with self.engine.connect() as con:
            frame = pd.DataFrame(
                con.execute(q).fetchall(),
                columns=["request_id", "row", "answered", "at", "prediction", "scores", "features", "truth"],
            )
        return frame.iloc[::-1].reset_index(drop=True)

    def predictions_of(self, arm: str, keys: list[tuple[str, int]], version: str) -> dict[tuple[str, int], Any]:
        """The arm's logged answers (by `version`) of these (request id, row) keys: a
        regressor's prediction, a classifier's list of class probabilities (answer_rows)."""
        p = self.predictions.c
        out: dict[tuple[str, int], Any] = {}
        with self.engine.connect() as con:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                q = select(p.request_id, p.row, p.prediction, p.scores).where(
                    p.arm == arm, p.version == version, tuple_(p.request_id, p.row).in_(chunk)
                )
                out.update({(r, n): v if scores is None else json.loads(scores) for r, n, v, scores in con.execute(q)})
        return out

    def counts(self) -> dict[str, int]:
        """Rows logged, rows with feedback and rows dropped (by every process that used this store)."""
        with self.engine.connect() as con:
            return {
                "logged": int(con.execute(select(func.count()).select_from(self.predictions)).scalar() or 0),
                "feedback": int(con.execute(select(func.count()).select_from(self.feedback)).scalar() or 0),
                "dropped": int(con.execute(select(func.coalesce(func.sum(self.drops.c.rows), 0))).scalar() or 0),
            }

    def logged_ids(self) -> dict[str, int]:
        """request id -> how many answered rows the log holds for it."""
        p = self.predictions.c
        with self.engine.connect() as con:
            return {
                r: int(n)
                for r, n in con.execute(
                    select(p.request_id, func.count()).where(p.answered == 1).group_by(p.request_id)
                )
            }

    def latest_alias(self, arm: str) -> str | None:
        """The alias the arm served in its latest logged row (the challenger's, for the monitor)."""
        p = self.predictions.c
        with self.engine.connect() as con:
            row = con.execute(select(p.alias).where(p.arm == arm).order_by(p.at.desc()).limit(1)).first()
        return row[0] if row else None

    def record_event(self, action: str, alias: str, version: str, why: str) -> None:
        with self.engine.begin() as con:
            con.execute(
                self.events.insert(),
                [{"at": time.time(), "action": action, "alias": alias, "version": version, "why": why}],
            )

    def stopped(self, alias: str, version: str) -> str | None:
        """Why the monitor stopped routing to `version` of `alias`, None while it has not."""
        e = self.events.c
        q = (
            select(e.why)
            .where(e.action == "stop-routing", e.alias == alias, e.version == version)
            .order_by(e.id.desc())
            .limit(1)
        )
        with self.engine.connect() as con:
            row = con.execute(q).first()
        return row[0] if row else None

    def event_list(self) -> list[dict[str, Any]]:
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
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]

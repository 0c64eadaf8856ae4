"""The live service: the environment's alias (production) and optionally a challenger alias,
behind MLflow's scoring protocol, every answered row in the prediction log.

Split mode answers a row from the challenger when a stable hash of its key falls under the
share (one entity, one arm); shadow mode answers every row from production. In both, the arm
that did not answer scores the same rows off the answer's path, in a worker process fed by a
bounded queue (pipeline.live.shadow: when it falls behind, shadow rows are skipped and
counted, never waited for), so the monitor compares the two arms on the same rows. A poller
asks the registry every few seconds who holds the aliases, and the log whether the monitor
stopped the challenger; a moved alias is loaded beside the old model and swapped in whole, so
no request sees half of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline import registry
from pipeline.config import Settings
from pipeline.errors import InputError
from pipeline.live import payload
from pipeline.live.log import PredictionLog, answer_columns, answer_rows, features_text, shown_url
from pipeline.live.metrics import Metrics
from pipeline.live.shadow import ShadowScorer

# mlflow (0.7-0.9 s on top of this module) is imported inside the answering methods: it comes with the
# first model pipeline.registry loads; importing this module (pipeline.live.monitor does) does not load it.

PRODUCTION, CHALLENGER = "production", "challenger"
MODES = ("split", "shadow")
MAX_REQUEST_ID = 128
SHADOW_QUEUE = 1000  # requests waiting to be scored off the answer's path


class BadRequest(Exception):
    """The caller's error: answered 4xx with one line."""

    def __init__(self, message: str, status: int = 400, arm: str | None = None):
        super().__init__(" ".join(str(message).split())[:500])
        self.status = status
        self.arm = arm  # the arm whose model refused the rows; None: refused before routing


@dataclass(frozen=True)
class Arm:
    name: str  # production | challenger
    alias: str
    version: str
    model: Any  # an MLflow pyfunc model
    stopped: str | None = None  # why the monitor stopped routing to it


def route_share(key: str) -> float:
    """A stable number in [0, 1) for a routing key: the same key, the same arm, in every process."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def _one_line(e: BaseException) -> str:
    text = str(getattr(e, "message", None) or e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


class Service:
    """The arms, the routing, the prediction log and the poller of one serving process."""

    def __init__(
        self,
        settings: Settings,
        log: PredictionLog,
        *,
        challenger: str | None = None,
        mode: str = "split",
        share: float | None = None,
        poll_s: float | None = None,
    ):
        if mode not in MODES:
            raise InputError(f"--mode {mode}: expected one of {', '.join(MODES)}")
        share = settings.live.share if share is None else share
        if not (0 <= share <= 1) or math.isnan(share):
            raise InputError(f"--share {share}: expected a share in [0, 1]")
        self.settings, self.log, self.mode, self.share = settings, log, mode, float(share)
        self.name = settings.mlflow.registered_model
        self.poll_s = settings.live.poll_s if poll_s is None else poll_s
        self.aliases = {PRODUCTION: settings.environment.alias}
        if challenger:
            if challenger == settings.environment.alias:
                raise InputError(f"--challenger {challenger}: is the production alias of {settings.env} itself")
            self.aliases[CHALLENGER] = challenger
        self.arms: dict[str, Arm] = {arm: self._load(arm, alias) for arm, alias in self.aliases.items()}
        self._set_schema(self.arms[PRODUCTION].model.metadata.get_input_schema())
        self._shadow = None
        if CHALLENGER in self.aliases:
            self._shadow = ShadowScorer(settings, self._scored, maxsize=SHADOW_QUEUE)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.poll_error: str | None = None
        self.metrics = Metrics(self)

    def _set_schema(self, schema) -> None:
        self.schema, self._casts = schema, payload.simple_casts(schema)

    @staticmethod
    def check(settings: Settings, challenger: str | None) -> None:
        """The aliases to serve are held (InputError naming the one that is not), before anything is opened."""
        name = settings.mlflow.registered_model
        for alias in filter(None, (settings.environment.alias, challenger)):
            holder(settings, name, alias)

    # ------------------------------------------------------------ models and the registry

    def _version(self, alias: str) -> str:
        return holder(self.settings, self.name, alias)

    def _load(self, arm: str, alias: str, version: str | None = None) -> Arm:
        version = version or self._version(alias)
        model = registry.load_pyfunc(self.settings, f"models:/{self.name}/{version}")
        return Arm(arm, alias, version, model, self.log.stopped(alias, version))

    def refresh(self) -> list[str]:
        """Ask the registry who holds the aliases (and the log whether the challenger was stopped);
        load any new holder and swap the arms whole. Returns what changed."""
        changed = []
        arms = dict(self.arms)
        for arm, alias in self.aliases.items():
            version = self._version(alias)
            if version != arms[arm].version:
                arms[arm] = self._load(arm, alias, version)
                changed.append(f"@{alias} -> v{version}")
            else:
                stopped = self.log.stopped(alias, version)
                if stopped != arms[arm].stopped:
                    arms[arm] = replace(arms[arm], stopped=stopped)
                    changed.append(f"@{alias} v{version} stopped")
        if arms[PRODUCTION] is not self.arms[PRODUCTION]:
            self._set_schema(arms[PRODUCTION].model.metadata.get_input_schema())
        self.arms = arms  # one assignment: a request holds either the old arms or the new
        return changed

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
                self.poll_error = None
            except Exception as e:  # the registry away for a while: keep serving what is loaded
                self.poll_error = _one_line(e)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Service:
        self.log.start()
        if self._shadow is not None:  # both arms' versions loaded in the worker before the first answer
            self._shadow.start([a.version for a in self.arms.values()])
        t = threading.Thread(target=self._poll, name="alias-poller", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._shadow is not None:
            self._shadow.stop()
        for t in self._threads:
            t.join(10)
        self.log.close()

    @property
    def shadow_skipped(self) -> int:
        return self._shadow.skipped if self._shadow is not None else 0

    # ------------------------------------------------------------ answering

    def parse(self, body: bytes, content_type: str):
        """The request's rows as a DataFrame, as `mlflow models serve` reads them (dataframe_split,
        dataframe_records, or CSV); BadRequest naming what is wrong."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc.scoring_server import parse_csv_input

        mime = (content_type or "").split(";")[0].strip().lower()
        try:
            if mime == "text/csv":  # CSV text has no types: read as the schema says
                frame = parse_csv_input(io.StringIO(body.decode("utf-8")), schema=self.schema)
            elif mime in ("application/json", ""):
                try:
                    doc = json.loads(body)
                except (ValueError, UnicodeDecodeError) as e:
                    raise BadRequest(f"body: not valid JSON ({e})") from None
                if not isinstance(doc, dict):
                    raise BadRequest("body: expected a JSON object with dataframe_split or dataframe_records")
                # With the schema, as `mlflow models serve` parses (numbers sent as text are cast, as there).
                frame = payload.frame_from_json(
                    {k: v for k, v in doc.items() if k != "params"}, self.schema, self._casts
                )
            else:
                raise BadRequest(f"Content-Type {mime}: expected application/json or text/csv", 415)
        except BadRequest:
            raise
        except UnicodeDecodeError as e:
            raise BadRequest(f"body: not UTF-8 text ({e.reason})") from None
        except (MlflowException, ValueError, TypeError, KeyError, AttributeError) as e:
            raise BadRequest(f"payload: {_one_line(e)}") from None
        if frame is None or not len(frame):
            raise BadRequest("payload: no rows")
        known = set(self.schema.input_names()) | {self.settings.live.key}
        unknown = [str(c) for c in frame.columns if c not in known]
        if unknown:  # MLflow would drop them silently: a caller sending them has the wrong idea of the model
            raise BadRequest(
                f"payload: unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown[:5])}"
                f"{' ...' if len(unknown) > 5 else ''} (the model takes {len(known - {self.settings.live.key})} columns)"
            )
        return frame

    def route(self, frame, request_id: str, route_key: str | None, arms: dict[str, Arm]) -> list[str]:
        """The arm answering each row."""
        chal = arms.get(CHALLENGER)
        if chal is None or chal.stopped or self.mode == "shadow" or self.share <= 0:
            return [PRODUCTION] * len(frame)
        column = self.settings.live.key
        if column and column in frame.columns:
            keys = [str(v) for v in frame[column].tolist()]
        else:
            keys = [route_key or request_id] * len(frame)
        return [CHALLENGER if route_share(k) < self.share else PRODUCTION for k in keys]

    def _predict(self, arm: Arm, rows):
        from mlflow.exceptions import MlflowException

        try:
            out = arm.model.predict(rows)
        except (
            MlflowException,
            ValueError,
            TypeError,
            KeyError,
        ) as e:  # schema enforcement: unknown or missing columns, text in numbers
            raise BadRequest(f"payload: {_one_line(e)}", arm=arm.name) from None
        return answer_rows(out)

    def answer(self, body: bytes, content_type: str, request_id: str | None, route_key: str | None) -> dict[str, Any]:
        """Predict a request's rows, log them, queue the other arm's shadow scoring; the response document."""
        started = time.perf_counter()
        request_id = request_id or uuid.uuid4().hex
        if len(request_id) > MAX_REQUEST_ID:
            raise BadRequest(f"X-Request-Id: longer than {MAX_REQUEST_ID} characters")
        arms = self.arms
        frame = self.parse(body, content_type)
        chosen = self.route(frame, request_id, route_key, arms)
        predictions: list[Any] = [None] * len(frame)  # each row's answer (answer_rows)
        for name in set(chosen):
            idx = [i for i, a in enumerate(chosen) if a == name]
            t0 = time.perf_counter()
            answers = self._predict(arms[name], frame if len(idx) == len(frame) else frame.iloc[idx])
            for i, answer in zip(idx, answers):
                predictions[i] = answer
            self.metrics.observe(name, len(idx), time.perf_counter() - t0)
        latency_ms = 1000 * (time.perf_counter() - started)
        now = time.time()
        records = _records(frame)
        self.log.put(
            _row(request_id, i, arms[a], 1, now, predictions[i], latency_ms, records[i]) for i, a in enumerate(chosen)
        )
        self._queue_shadow(request_id, frame, records, chosen, arms, now)
        return {
            "predictions": predictions,
            "arms": chosen,
            "versions": [arms[a].version for a in chosen],
            "request_id": request_id,
        }

    def _queue_shadow(self, request_id, frame, records, chosen, arms, now) -> None:
        """Hand the rows to the shadow worker, each to the arm that did not answer it."""
        if (
            self._shadow is None or CHALLENGER not in arms or arms[CHALLENGER].stopped
        ):  # nothing to compare with any more
            return
        others = {PRODUCTION: CHALLENGER, CHALLENGER: PRODUCTION}
        wanted = [others[a] for a in chosen]
        parts = [
            (name, arms[name].version, [i for i, a in enumerate(wanted) if a == name]) for name in dict.fromkeys(wanted)
        ]
        self._shadow.submit((request_id, records, arms, now), frame, parts)

    def _scored(self, context, parts, outcomes) -> None:
        """What the shadow worker scored, into the log (in its reader thread)."""
        request_id, records, arms, now = context
        for (name, _, idx), (predictions, ms) in zip(parts, outcomes):
            if predictions is None:  # a shadow failure never reaches the caller: counted
                self.metrics.shadow_failed(name, len(idx))
                continue
            self.metrics.shadow_scored(name, len(idx))
            self.log.put(_row(request_id, i, arms[name], 0, now, v, ms, records[i]) for i, v in zip(idx, predictions))

    def drain_shadow(self, timeout: float = 30.0) -> None:
        """Wait until every queued row is shadow-scored (for feedback and tests; never on the answer path)."""
        if self._shadow is not None:
            self._shadow.drain(timeout)

    # ------------------------------------------------------------ what is live

    def versions(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "mode": self.mode,
            "share": self.share if CHALLENGER in self.arms else 0.0,
            "arms": {
                a.name: {"alias": a.alias, "version": a.version, "stopped": a.stopped} for a in self.arms.values()
            },
        }

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            **self.versions(),
            "log": {
                "url": shown_url(self.log.url),
                "written": self.log.written,
                "dropped": self.log.dropped,
                "pending": self.log.pending(),
                "replayed": self.log.replayed,
                "last_error": self.log.last_error,
            },
            "shadow": self._shadow_health(),
            "registry_poll_error": self.poll_error,
        }

    def _shadow_health(self) -> dict[str, Any] | None:
        sh = self._shadow
        if sh is None:
            return None
        return {
            "worker_pid": sh.pid,
            "ready": sh.ready.is_set(),
            "pending": sh.pending(),
            "skipped": sh.skipped,
            "restarts": sh.restarts,
            "last_error": sh.last_error,
        }

    def feedback(self, body: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"body: not valid JSON ({e})") from None
        items = doc.get("feedback") if isinstance(doc, dict) else doc
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise BadRequest('body: expected {"feedback": [{"request_id": ..., "row": 0, "value": ...}, ...]}')
        self.drain_shadow(2.0)
        self.log.flush(5.0)  # the rows just answered are joinable
        data = self.settings.data
        return self.log.add_feedback(items, data.labels if data.classifier else None).as_dict()


def holder(settings: Settings, name: str, alias: str) -> str:
    """The version holding `alias`; InputError when none does."""
    try:
        return str(registry.get_version(settings, name, f"@{alias}").version)
    except InputError:
        raise InputError(f"model registry: {name} has no alias @{alias}") from None


def _row(
    request_id: str,
    i: int,
    arm: Arm,
    answered: int,
    at: float,
    answer: Any,
    latency_ms: float,
    values: dict[str, Any],
) -> dict[str, Any]:
    """One prediction log row."""
    text, digest = features_text(values)
    return {
        "request_id": request_id,
        "row": i,
        "arm": arm.name,
        "alias": arm.alias,
        "version": arm.version,
        "answered": answered,
        "at": at,
        **answer_columns(answer),
        "latency_ms": latency_ms,
        "features_sha256": digest,
        "features": text,
    }


def _records(frame) -> list[dict[str, Any]]:
    """Each row's values, JSON-ready (NaN as null). Numbers, booleans and text (numpy columns):
    the frame as Python objects, missing values as None (a tenth of pandas' JSON writer's time
    on a 73-column row, and floats to their last digit, where the writer keeps 10); any other
    column type: one pass through pandas' JSON writer."""
    import pandas as pd

    if all(isinstance(t, np.dtype) and t.kind in "fiubO" for t in frame.dtypes):
        values = frame.to_numpy(dtype=object, copy=True)
        values[pd.isna(values)] = None
        columns = [str(c) for c in frame.columns]
        return [dict(zip(columns, row)) for row in values.tolist()]
    return json.loads(frame.to_json(orient="records"))

"""Online: `run-pipeline serve` with a challenger, the prediction log, feedback, the monitor.

One project per module (conftest's light model on Ames, cheap gate settings), fitted once and
logged as three versions: v1 the model itself, v2 its predictions 5 % high, v3 30 % high
(tests/bad_models.RareBlunders hitting every row). Each test points the aliases where it needs
them. The app runs in a real uvicorn server on 127.0.0.1, in this process, driven over HTTP
with urllib: starlette's TestClient needs httpx, which nothing else here uses, and a real server
is what callers meet (the kill-and-restart test runs `run-pipeline serve` as a subprocess, as a
user would). PostgreSQL tests carry `postgres`: where CI=true they run, else skip with the reason.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import config as config_mod
from pipeline import servers
from tests.conftest import CHEAP, LIGHT_MODEL, deep_merge, write_project

pytestmark = [pytest.mark.slow, pytest.mark.solo]

NAME = "ames-price"
MIN_FEEDBACK = 30  # live.min_feedback_rows: the monitor acts on no fewer rows with feedback
# A challenger 30 % off is stopped at the first look with at least MIN_FEEDBACK rows on both
# arms; the replay looks every STEP_ROWS rows, so it is stopped within this many feedback rows.
STEP_ROWS = 100
STOPPED_WITHIN = STEP_ROWS
ROWS_PER_REQUEST = 5
LIVE = {"live": {"share": 0.5, "min_feedback_rows": MIN_FEEDBACK, "poll_s": 0.3, "bootstrap_resamples": 400}}
# Production's bounds loose enough for the light model and for v2 (5 % high); v3 (30 % high) breaches them.
BOUNDS = {"environments": {"production": {"thresholds": {"mae": {"max": 30000, "unit": "USD"}, "mape": {"max": 25, "unit": "%"}}}}}


@pytest.fixture(scope="module")
def live_project(tmp_path_factory):
    """(settings at production, the evaluation frame, the features, {version: factor})."""
    from threadpoolctl import threadpool_limits

    from pipeline import data as data_mod
    from pipeline import figures, registry, train
    from tests.bad_models import RareBlunders

    folder = tmp_path_factory.mktemp("live")
    cfg = write_project(folder, deep_merge(deep_merge(CHEAP, LIVE), BOUNDS), model=LIGHT_MODEL, families=("metrics",))
    settings = config_mod.load(cfg, "production")
    dataset = data_mod.load(settings)
    parts = data_mod.split(settings, dataset)
    X = parts.train[dataset.features.columns]
    with threadpool_limits(1):
        model = train.fit(settings, dataset.features, parts.train)
    versions = {}
    for factor in (1.0, 1.05, 1.3):
        m = model if factor == 1.0 else RareBlunders(model, key_columns=(), every=1, factor=factor).adopt(model, X)
        y = parts.eval[settings.data.target].to_numpy()
        metrics = figures.regression_metrics(y, m.predict(parts.eval[dataset.features.columns]))
        versions[registry.log_candidate(settings, m, dataset, parts.eval, metrics).version] = factor
    assert versions == {"1": 1.0, "2": 1.05, "3": 1.3}
    return settings, parts.eval, dataset.features


def _client(settings):
    from mlflow import MlflowClient

    uri = settings.mlflow.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def point(settings, **aliases: str | None) -> None:
    """Set (or, with None, delete) aliases of the test model, as a person with the MLflow client would."""
    c = _client(settings)
    for alias, version in aliases.items():
        alias = alias.replace("_", "-")
        if version is None:
            with contextlib.suppress(Exception):
                c.delete_registered_model_alias(NAME, alias)
        else:
            c.set_registered_model_alias(NAME, alias, version)


def fresh_settings(settings, tmp_path: Path, **live):
    """The module's settings with a prediction log of the test's own (and any other live settings)."""
    return settings.model_copy(update={"live": settings.live.model_copy(update={"log_url": f"sqlite:///{tmp_path / 'log.db'}", **live})})


@contextlib.contextmanager
def running(service):
    """The service's app in a real uvicorn server on a free 127.0.0.1 port, in a thread; stopped after."""
    import uvicorn

    from pipeline.live.app import create_app

    port = servers.free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the live server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "the live server did not stop"


def http(url: str, body: bytes | None = None, *, content_type: str = "application/json", headers: dict | None = None,
         timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def payload(rows) -> bytes:
    return json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}).encode()


class Replay:
    """The evaluation rows sent in requests of ROWS_PER_REQUEST, what each answer said, and their truth as feedback."""

    def __init__(self, url: str, frame, features, target: str):
        self.url, self.frame, self.columns, self.target = url, frame, features.columns, target
        self.answers: dict[str, dict] = {}  # request id -> response document
        self.sent: dict[str, object] = {}  # request id -> its rows

    def send(self, start: int, stop: int) -> list[str]:
        ids = []
        for i in range(start, min(stop, len(self.frame)), ROWS_PER_REQUEST):
            rows = self.frame.iloc[i:min(i + ROWS_PER_REQUEST, stop)]
            rid = f"r{i}-{uuid.uuid4().hex[:8]}"
            status, body = http(self.url + "/invocations", payload(rows[self.columns]), headers={"X-Request-Id": rid})
            assert status == 200, f"{rid}: {status} {body[:300]!r}"
            self.answers[rid], self.sent[rid] = json.loads(body), rows
            ids.append(rid)
        return ids

    def feedback(self, ids: list[str]) -> dict:
        items = [{"request_id": rid, "row": j, "value": float(v)} for rid in ids for j, v in enumerate(self.sent[rid][self.target])]
        status, body = http(self.url + "/feedback", json.dumps({"feedback": items}).encode())
        assert status == 200, body
        return json.loads(body)

    def rows_of(self, arm: str):
        """(rows, truth) the answers attribute to `arm`, in order."""
        import pandas as pd

        picked = [rows.iloc[[j]] for rid, rows in self.sent.items() for j, a in enumerate(self.answers[rid]["arms"]) if a == arm]
        frame = pd.concat(picked) if picked else self.frame.iloc[:0]
        return frame[self.columns], frame[self.target].to_numpy(float)


def service_for(settings, **kw):
    from pipeline import live
    from pipeline.live.service import Service

    return Service(settings, live.open_log(settings), **kw)


def history_actions(settings) -> list[tuple[str, str, str, str]]:
    from pipeline import registry

    return [(m.alias, m.action, m.version, m.by) for m in registry.history(settings, NAME)]


# ---------------------------------------------------------------- split: live figures, a degraded challenger stopped


def test_split_replay_live_mae_per_arm_and_degraded_challenger_stopped(live_project, tmp_path):
    from pipeline import registry
    from pipeline.live.monitor import Monitor

    base, frame, features = live_project
    settings = fresh_settings(base, tmp_path)
    point(settings, production="1", previous_production=None, challenger="3")
    moves_before = history_actions(settings)
    service = service_for(settings, challenger="challenger", mode="split", share=0.5)
    with running(service) as url:
        replay = Replay(url, frame, features, settings.data.target)
        monitor = Monitor(settings, service.log)
        looked = 0
        decisions = []
        while looked < len(frame):
            ids = replay.send(looked, looked + STEP_ROWS)
            looked += STEP_ROWS
            joined = replay.feedback(ids)
            assert joined["accepted"] == sum(len(replay.sent[r]) for r in ids) and joined["unknown"] == joined["invalid"] == 0, joined
            reports = {r.arm: r for r in monitor.run()}
            decisions.append((looked, reports["challenger"].decision, reports["challenger"].comparison.get("rows")))
            if reports["challenger"].decision == "stop":
                break
        stop_at = next((n for n, d, _ in decisions if d == "stop"), None)
        assert stop_at is not None and stop_at <= STOPPED_WITHIN, f"v3 (30 % high) not stopped within {STOPPED_WITHIN} feedback rows: {decisions}"
        # The running server stops routing to it at its next poll (every 0.3 s here).
        deadline = time.monotonic() + 10
        while not json.loads(http(url + "/version")[1])["arms"]["challenger"]["stopped"]:
            assert time.monotonic() < deadline, "the server did not pick up the stop"
            time.sleep(0.1)
        after = replay.send(looked, len(frame))
        assert {a for rid in after for a in replay.answers[rid]["arms"]} == {"production"}
        replay.feedback(after)
        service.drain_shadow()
        reports = {r.arm: r for r in Monitor(settings, service.log).run(act=False)}
        metrics_text = http(url + "/metrics")[1].decode()
        health = json.loads(http(url + "/health")[1])
    # Live MAE per arm: the offline MAE of the same version on the rows that arm answered lies in the live interval.
    for arm, version in (("production", "1"), ("challenger", "3")):
        X, y = replay.rows_of(arm)
        offline = float(np.mean(np.abs(y - registry.load_pyfunc(settings, f"models:/{NAME}/{version}").predict(X))))
        rep = reports[arm]
        assert rep.version == version and rep.requests == len(y) == rep.feedback_rows, (arm, rep.as_dict(), len(y))
        assert rep.figures["mae_lower"] <= offline <= rep.figures["mae_upper"], (arm, offline, rep.figures)
        assert rep.figures["mae"] == pytest.approx(offline, rel=1e-9), (arm, offline, rep.figures)
    assert 0.3 * STOPPED_WITHIN <= len(replay.rows_of("challenger")[1]) <= 0.7 * STOPPED_WITHIN  # about half, by hash, until stopped
    assert reports["challenger"].decision == "stopped"
    # Stopping is recorded (the registry's history, the version's tag); no alias moved.
    assert history_actions(settings)[len(moves_before):] == [("challenger", "stop-routing", "3", "run-pipeline monitor")]
    assert "confidently worse" in registry.get_version(settings, NAME, "3").tags["live.challenger.stop-routing.why"]
    assert registry.alias_map(settings, NAME) == {"production": "1", "challenger": "3"}
    rows_answered = sum(len(r) for r in replay.sent.values())
    assert health["log"]["dropped"] == 0 and health["log"]["written"] >= rows_answered, health
    assert f'live_rows_total{{arm="challenger"}} {float(len(replay.rows_of("challenger")[1]))}' in metrics_text
    assert f'live_rows_total{{arm="production"}} {float(len(replay.rows_of("production")[1]))}' in metrics_text
    assert 'live_predict_latency_seconds_bucket{arm="production",le="+Inf"}' in metrics_text

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
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import CHEAP, LIGHT_MODEL, deep_merge, fitted_once, real_csv, write_project
from pipeline import config as config_mod
from pipeline import servers
from pipeline.live.client import http
from pipeline.live.client import scoring_payload as payload

pytestmark = pytest.mark.slow

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
    from pipeline import figures, registry
    from tests.bad_models import RareBlunders

    folder = tmp_path_factory.mktemp("live")
    cfg = write_project(folder, deep_merge(deep_merge(CHEAP, LIVE), BOUNDS), model=LIGHT_MODEL, families=("metrics",))
    settings = config_mod.load(cfg, "production")
    dataset, parts, model = fitted_once(settings)
    X = parts.train[dataset.features.columns]
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


def config_copy(settings, path: Path, **live) -> Path:
    """The module's config file with other live settings, written to `path`."""
    cfg = Path(settings.config_path)
    raw = yaml.safe_load(cfg.read_text())
    raw["live"] = {**raw["live"], **live}
    raw["model_config"] = str(cfg.parent / raw["model_config"])
    path.write_text(yaml.safe_dump(raw))
    return path


@contextlib.contextmanager
def running(service):
    """The service's app in a real uvicorn server on a free 127.0.0.1 port, in a thread; stopped after."""
    import uvicorn

    from pipeline.live.app import create_app

    port = servers.free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 90  # the shadow worker loads both arms before the first answer (up to 60 s)
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the live server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "the live server did not stop"


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
            rid = f"r{i}"  # the same ids every run: the same routing every run
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


def split_arms(live_project, tmp_path, production: str, challenger: str):
    """(settings with a fresh log, a split service at share 0.5, the history before) with the aliases pointed."""
    base, _, _ = live_project
    settings = fresh_settings(base, tmp_path)
    point(settings, production=production, previous_production=None, challenger=challenger)
    return settings, service_for(settings, challenger="challenger", mode="split", share=0.5), history_actions(settings)


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
    from pipeline.live.service import route_share

    _, frame, features = live_project
    settings, service, moves_before = split_arms(live_project, tmp_path, production="1", challenger="3")
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
        after = replay.send(looked, looked + STEP_ROWS)  # the next rows: all to production
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
        for name in ("mae", "mape", "bias"):  # each interval holds its own figure
            assert rep.figures[f"{name}_lower"] < rep.figures[name] < rep.figures[f"{name}_upper"], (arm, name, rep.figures)
    # v3 answers 30 % high: its live bias is confidently positive; v1's interval holds its own, smaller bias.
    assert reports["challenger"].figures["bias_lower"] > reports["production"].figures["bias_upper"], reports
    # Until the stop, each request went where the stable hash of its id sends it (share 0.5); after it, to production.
    stopped_ids = set(after)
    for rid, doc in replay.answers.items():
        expected = "production" if rid in stopped_ids or route_share(rid) >= 0.5 else "challenger"
        assert set(doc["arms"]) == {expected}, (rid, doc["arms"], route_share(rid))
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


# ---------------------------------------------------------------- production rolled back; the server follows without a restart


def test_degraded_production_rolled_back_to_previous_holder_and_served_without_restart(live_project, tmp_path):
    from pipeline import registry
    from pipeline.live.monitor import Monitor

    base, frame, features = live_project
    settings = fresh_settings(base, tmp_path)
    point(settings, production="3", previous_production="1", challenger=None)
    moves_before = history_actions(settings)
    service = service_for(settings)
    with running(service) as url:
        replay = Replay(url, frame, features, settings.data.target)
        ids = replay.send(0, MIN_FEEDBACK + 10)
        replay.feedback(ids)
        # Traffic keeps flowing while the alias moves and the server swaps models: no request fails.
        failures, versions_seen, stop = [], set(), threading.Event()

        def load():
            i = 0
            while not stop.is_set():
                rows = frame.iloc[[i % len(frame)]][features.columns]
                status, body = http(url + "/invocations", payload(rows))
                if status != 200:
                    failures.append((status, body[:200]))
                else:
                    versions_seen.update(json.loads(body)["versions"])
                i += 1

        t = threading.Thread(target=load)
        t.start()
        try:
            while not versions_seen and not failures and t.is_alive():
                time.sleep(0.02)
            (prod,) = Monitor(settings, service.log).run(act=True)
            assert prod.decision == "rollback" and "@production moved back from v3 to v1" in prod.why, prod.as_dict()
            deadline = time.monotonic() + 10
            while json.loads(http(url + "/version")[1])["arms"]["production"]["version"] != "1":
                assert time.monotonic() < deadline, "the running server did not pick up the rollback"
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            stop.set()
            t.join(30)
        after = replay.send(100, 110)
    assert not failures, failures[:3]
    assert versions_seen == {"3", "1"}, versions_seen  # the old holder until the swap, the restored one after
    assert {v for rid in after for v in replay.answers[rid]["versions"]} == {"1"}
    assert registry.alias_map(settings, NAME) == {"production": "1", "previous-production": "3"}
    assert history_actions(settings)[len(moves_before):] == [("production", "rollback", "1", "run-pipeline monitor")]
    assert [(e["action"], e["alias"], e["version"]) for e in service.log.event_list()] == [("rollback", "production", "3")]
    assert "MAE" in service.log.event_list()[0]["why"] and "(production)" in service.log.event_list()[0]["why"]
    assert registry.get_version(settings, NAME, "3").tags["live.production.rollback.why"] == service.log.event_list()[0]["why"]


# ---------------------------------------------------------------- a good challenger is a candidate, never promoted


def test_good_challenger_reported_as_candidate_not_promoted(live_project, tmp_path, capsys):
    from pipeline import registry
    from pipeline.live.monitor import Monitor

    _, frame, features = live_project
    settings, service, moves_before = split_arms(live_project, tmp_path, production="2", challenger="1")
    with running(service) as url:
        replay = Replay(url, frame, features, settings.data.target)
        replay.feedback(replay.send(0, 300))
        service.drain_shadow()
        reports = {r.arm: r for r in Monitor(settings, service.log).run()}
    assert reports["production"].decision == "keep", reports["production"].as_dict()
    chal = reports["challenger"]
    assert chal.decision == "candidate" and chal.comparison["upper"] < 0, chal.as_dict()
    assert chal.comparison["rows"] == 300  # every row: the arm that did not answer scored it in the shadow
    assert "gate it" in chal.why
    assert registry.alias_map(settings, NAME) == {"production": "2", "challenger": "1"}
    assert history_actions(settings) == moves_before
    # `run-pipeline monitor --once --json` reads the same log to the same decisions.
    from pipeline import cli

    cfg = config_copy(settings, tmp_path / "pipeline_config.yaml", log_url=settings.live.log_url)
    capsys.readouterr()
    assert cli.main(["monitor", "--config", str(cfg), "--env", "production", "--once", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(a["arm"], a["version"], a["decision"]) for a in doc["arms"]] == [("production", "2", "keep"), ("challenger", "1", "candidate")]
    assert doc["arms"][1]["figures"]["mae"] == pytest.approx(chal.figures["mae"], rel=1e-12)
    assert registry.alias_map(settings, NAME) == {"production": "2", "challenger": "1"} and history_actions(settings) == moves_before


# ---------------------------------------------------------------- shadow mode


def test_shadow_mode_answers_as_production_alone_and_scores_the_challenger_on_every_row(live_project, tmp_path):
    from pipeline.live.monitor import Monitor

    base, frame, features = live_project
    settings = fresh_settings(base, tmp_path)
    point(settings, production="1", challenger="3")
    alone = service_for(fresh_settings(base, tmp_path / "alone"))
    service = service_for(settings, challenger="challenger", mode="shadow", share=0.5)
    with running(service) as url:
        replay = Replay(url, frame, features, settings.data.target)
        ids = replay.send(0, 200)
        replay.feedback(ids)
        service.drain_shadow()
        service.log.flush()
        reports = {r.arm: r for r in Monitor(settings, service.log).run(act=False)}
    for rid in ids:
        doc = replay.answers[rid]
        expected = alone.answer(payload(replay.sent[rid][features.columns]), "application/json", None, None)
        assert doc["predictions"] == expected["predictions"] and set(doc["arms"]) == {"production"} and set(doc["versions"]) == {"1"}
    alone.stop()
    chal = service.log.window("challenger", "3", 10_000)
    assert len(chal) == 200 and set(chal["answered"]) == {0}
    assert set(zip(chal["request_id"], chal["row"])) == {(rid, j) for rid in ids for j in range(len(replay.sent[rid]))}
    assert reports["challenger"].figures_on == "shadow-scored rows" and reports["challenger"].feedback_rows == 200
    assert reports["challenger"].decision == "stop"  # judged (30 % high), not carried out: act=False
    # The live inputs' drift is the data gate's own figure on the same rows.
    import pandas as pd

    from pipeline import checks
    from pipeline import data as data_mod

    train = data_mod.split(settings, data_mod.load(settings)).train
    live_rows = pd.concat([replay.sent[rid] for rid in ids])[features.columns]
    gate = checks.feature_drift(train[features.columns], live_rows, list(features.numeric), list(features.categorical),
                                settings.gates.drift.min_rows)
    assert reports["production"].drift["feature_drift"] == pytest.approx(gate.value, abs=1e-12), (reports["production"].drift, gate)
    assert reports["production"].drift["threshold"] == settings.thresholds["feature_drift"].describe()


def test_split_by_a_configured_column_sends_one_entity_to_one_arm(live_project, tmp_path):
    from pipeline.live.service import route_share

    base, frame, features = live_project
    settings = fresh_settings(base, tmp_path, key="Neighborhood")
    point(settings, production="1", challenger="3")
    service = service_for(settings, challenger="challenger", mode="split", share=0.5)
    rows = frame.iloc[:120][features.columns]
    docs = [service.answer(payload(rows), "application/json", f"batch-{n}", None) for n in range(2)]  # two requests, other ids
    service.stop()
    expected = ["challenger" if route_share(str(v)) < 0.5 else "production" for v in rows["Neighborhood"]]
    assert docs[0]["arms"] == docs[1]["arms"] == expected
    assert 0 < expected.count("challenger") < len(expected)
    versions = {"production": "1", "challenger": "3"}
    assert docs[0]["versions"] == [versions[a] for a in expected]


# ---------------------------------------------------------------- bad input: 4xx with one line, never a 5xx


def test_bad_payloads_and_feedback_are_4xx_one_line_and_counted(live_project, tmp_path, capsys):
    from pipeline import cli

    base, frame, features = live_project
    settings = fresh_settings(base, tmp_path)
    point(settings, production="1", challenger="3")
    service = service_for(settings, challenger="challenger", mode="split", share=0.5)
    row = frame.iloc[[0]][features.columns]
    good = json.loads(payload(row))["dataframe_split"]
    text_in_number = {**good, "data": [[("many" if c == "Gr_Liv_Area" else v) for c, v in zip(good["columns"], good["data"][0])]]}
    missing = {"columns": good["columns"][1:], "data": [good["data"][0][1:]]}
    bad = {
        "not JSON": (b"{not json", "application/json"),
        "a JSON list": (b"[1, 2]", "application/json"),
        "no known format": (json.dumps({"rows": [1]}).encode(), "application/json"),
        "two formats": (json.dumps({"dataframe_split": good, "dataframe_records": []}).encode(), "application/json"),
        "missing column": (json.dumps({"dataframe_split": missing}).encode(), "application/json"),
        "unknown column": (json.dumps({"dataframe_split": {"columns": [*good["columns"], "Bogus"], "data": [[*good["data"][0], 1]]}}).encode(),
                           "application/json"),
        "text in a numeric column": (json.dumps({"dataframe_split": text_in_number}).encode(), "application/json"),
        "no rows": (json.dumps({"dataframe_records": []}).encode(), "application/json"),
        "CSV without the columns": (b"a,b\n1,2\n", "text/csv"),
        "not UTF-8 CSV": (b"\xff\xfe,\x00\n", "text/csv"),
        "unknown content type": (b"<x/>", "application/xml"),
    }
    with running(service) as url:
        statuses, http_errors = {}, {}
        for what, (body, ctype) in bad.items():
            status, answer = http(url + "/invocations", body, content_type=ctype)
            statuses[what], http_errors[what] = status, answer
            doc = json.loads(answer)
            assert set(doc) == {"error"} and "\n" not in doc["error"] and doc["error"], (what, answer)
        # The accepted formats, the same row each time (one routing key: one arm): one answer.
        answers = [json.loads(http(url + "/invocations", body, content_type=ctype, headers={"X-Route-Key": "one entity"})[1])["predictions"]
                   for body, ctype in (
            (payload(row), "application/json"),
            (json.dumps({"dataframe_records": json.loads(row.to_json(orient="records"))}).encode(), "application/json"),
            (row.to_csv(index=False).encode(), "text/csv"))]
        ok_status, ok = http(url + "/invocations", payload(row), headers={"X-Request-Id": "known"})
        fb = [{"request_id": "known", "value": 200000}, {"request_id": "known", "value": 1},  # a duplicate: the first stands
              {"request_id": "nobody", "value": 1}, {"request_id": "known", "row": 7, "value": 1},  # unknown id, unknown row
              {"request_id": "known", "row": 1, "value": "lots"}, {"request_id": "x", "value": None}, {"value": 3}]
        fb_status, fb_answer = http(url + "/feedback", json.dumps({"feedback": fb}).encode())
        again = json.loads(http(url + "/feedback", json.dumps([{"request_id": "known", "value": 5}]).encode())[1])
        malformed = [http(url + "/feedback", body)[0] for body in (b"nope", b'{"feedback": 3}', b'{"feedback": [1]}')]
        unknown_route = http(url + "/nowhere")
        metrics_text = http(url + "/metrics")[1].decode()
    assert all(400 <= s < 500 for s in statuses.values()), statuses
    assert statuses["unknown content type"] == 415
    assert "unknown column Bogus" in json.loads(http_errors["unknown column"])["error"], http_errors["unknown column"]
    assert answers[0] == answers[1] == answers[2], answers
    assert ok_status == 200 and json.loads(ok)["request_id"] == "known"
    assert fb_status == 200
    assert json.loads(fb_answer) == {"accepted": 1, "duplicates": 1, "unknown": 2, "invalid": 3, "unknown_ids": ["nobody", "known#7"],
                                     "invalid_rows": ["request id 'known' row 1: value 'lots' is not a number",
                                                      "request id 'x' row 0: value missing", "item 6: no request_id"]}
    assert again["duplicates"] == 1 and again["accepted"] == 0
    assert malformed == [400, 400, 400]
    assert unknown_route[0] == 404 and set(json.loads(unknown_route[1])) == {"error"}
    counted = {tuple(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])): float(line.split()[-1])
               for line in metrics_text.splitlines() if line.startswith("live_errors_total{")}
    assert sum(v for labels, v in counted.items() if ("status", "400") in labels) == sum(1 for s in statuses.values() if s == 400) + 3, counted
    assert {dict(labels)["arm"] for labels in counted} <= {"none", "production", "challenger"}, counted
    # The same through the CLI, from a CSV, against the same log.
    truth = tmp_path / "truth.csv"
    truth.write_text("request_id,Sale_Price\nknown,1\nnobody,2\nknown,lots\nknown,\n")
    cfg = config_copy(base, tmp_path / "pipeline_config.yaml", log_url=settings.live.log_url)
    capsys.readouterr()
    code = cli.main(["feedback", "--config", str(cfg), "--env", "production", "--data", str(truth), "--key", "request_id", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and (doc["accepted"], doc["duplicates"], doc["unknown"], doc["invalid"]) == (0, 1, 1, 2), doc
    assert doc["unknown_ids"] == ["nobody"]
    assert doc["invalid_rows"] == ["request id 'known' row 0: value 'lots' is not a number", "request id 'known' row 0: value missing"]


def test_cli_refuses_a_bad_share_an_unknown_challenger_and_an_unreachable_log_with_exit_2(live_project, tmp_path, capsys):
    from pipeline import cli

    base, _, _ = live_project
    point(base, production="1")
    cfg = Path(base.config_path)
    # The discard port: nothing listens.
    unreachable = config_copy(base, tmp_path / "unreachable.yaml", log_url="postgresql+psycopg2://postgres@127.0.0.1:9/nowhere")
    no_id = tmp_path / "truth.csv"
    no_id.write_text("request,Sale_Price\nr1,100000\n")
    project_log = cfg.parent / "live" / "predictions.db"
    cases = {
        "share": (["serve", "--config", str(cfg), "--env", "production", "--share", "1.5", "--port", "9"], "--share: 1.5 is outside [0, 1]"),
        "challenger": (["serve", "--config", str(cfg), "--env", "production", "--challenger", "nosuch"], "ames-price has no alias @nosuch"),
        "log": (["serve", "--config", str(unreachable), "--env", "production"], "the prediction log cannot be reached"),
        "feedback column": (["feedback", "--config", str(cfg), "--env", "production", "--data", str(no_id), "--key", "id"],
                            f"{no_id}: --key column 'id' not found"),
    }
    for what, (args, expected) in cases.items():
        if what == "share":  # argparse's own refusal
            with pytest.raises(SystemExit) as exited:
                cli.main(args)
            code = exited.value.code
        else:
            code = cli.main(args)
        err = capsys.readouterr().err.strip()
        assert code == 2, (what, code, err)
        assert len(err.splitlines()) == 1 and expected in err, (what, err)
    assert not project_log.exists()  # refused before anything was written


# ---------------------------------------------------------------- the log store: slow, killed, PostgreSQL


def test_a_locked_log_store_never_blocks_an_answer_and_every_row_is_written_or_counted_dropped(live_project, tmp_path):
    import sqlite3

    from pipeline.live.log import PredictionLog
    from pipeline.live.service import Service

    base, frame, features = live_project
    settings = fresh_settings(base, tmp_path)
    point(settings, production="1", challenger=None)
    url_ = settings.live.log_url
    PredictionLog(url_).close()  # the tables exist
    # A queue of 100 rows: the 200 rows answered while the store is locked overflow it.
    service = Service(settings, PredictionLog(url_, connect_timeout_s=0.5, queue_rows=100, spool_dir=tmp_path / "spool"))
    lock = sqlite3.connect(url_.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
    with running(service) as url:
        replay = Replay(url, frame, features, settings.data.target)
        replay.send(0, 20)
        assert service.log.flush(), "the first rows did not reach the store"
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the database: every write waits 0.5 s, then fails
        try:
            # Answered (send asserts 200) while the lock is held: none waited for the store.
            held = replay.send(20, 220)
            deadline = time.monotonic() + 10  # the writer's first try waits out the store's 0.5 s, then fails
            while not (during := json.loads(http(url + "/health")[1])["log"])["last_error"] and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert service.log.flush(), "the rows did not reach the store once it was free"
        replay.send(220, 240)  # the store caught up: these go straight through
        assert service.log.flush()
        health = json.loads(http(url + "/health")[1])["log"]
    answered = sum(len(r) for r in replay.sent.values())
    reader = PredictionLog(url_)
    ids, counts = reader.logged_ids(), reader.counts()
    reader.close()
    assert len(held) == 40
    assert during["dropped"] > 0 and during["last_error"] and during["written"] == 20, during
    assert health["written"] + health["dropped"] == answered and health["last_error"] is None, (health, answered)
    assert counts["logged"] == health["written"] and counts["dropped"] == health["dropped"], (counts, health)
    assert all(ids.get(rid, 0) <= len(rows) for rid, rows in replay.sent.items())  # never a row twice
    assert all(ids.get(rid) == len(rows) for rid, rows in list(replay.sent.items())[:4] + list(replay.sent.items())[-4:])
    assert not list((tmp_path / "spool").glob("*.jsonl")), "a clean stop leaves no spool file"


def test_server_killed_mid_load_and_restarted_logs_every_answered_request_exactly_once(live_project, tmp_path):
    import os
    import signal
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.live.log import PredictionLog

    base, frame, features = live_project
    point(base, production="1", challenger=None)
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    cfg = config_copy(base, tmp_path / "pipeline_config.yaml", log_url=log_url)
    port = servers.free_port()
    args = [sys.executable, "-m", "pipeline.cli", "serve", "--config", str(cfg), "--env", "production", "--port", str(port)]
    rows = [payload(frame.iloc[[i]][features.columns]) for i in range(len(frame))]
    answered: dict[str, int] = {}  # request id -> status, last try
    lock = threading.Lock()

    def client(worker: int, count: int, stop: threading.Event, offset: int) -> None:
        for i in range(count):
            if stop.is_set():
                return
            rid = f"w{worker}-{offset + i}"
            try:
                status, _ = http(f"http://127.0.0.1:{port}/invocations", rows[(offset + i) % len(rows)], headers={"X-Request-Id": rid}, timeout=10)
            except OSError:  # the server went away under it: not answered
                status = 0
            with lock:
                answered[rid] = status
            if status != 200:
                return  # until the server is back

    def load(offset: int, count: int, stop: threading.Event):
        pool = ThreadPoolExecutor(2)
        return pool, [pool.submit(client, w, count, stop, offset) for w in range(2)]

    first = servers.Server(args, port, "/ping", tmp_path / "serve-1.log", env={"OMP_NUM_THREADS": "1"}, name="run-pipeline serve")
    with first.start(timeout=120):
        stop = threading.Event()
        pool, futures = load(0, 400, stop)
        deadline = time.monotonic() + 60
        while sum(1 for s in answered.values() if s == 200) < 60:
            assert time.monotonic() < deadline, f"no load: {first.tail()}"
            time.sleep(0.05)
        os.killpg(first.proc.pid, signal.SIGKILL)  # mid-load, no chance to flush: what was queued is in its spool file
        first.proc.wait(10)
        stop.set()
        for f in futures:
            f.result(60)
        pool.shutdown()
    before = dict(answered)
    reader = PredictionLog(log_url)
    in_store = reader.logged_ids()
    reader.close()
    unwritten = [r for r, s in before.items() if s == 200 and r not in in_store]  # answered, still only in the killed server's spool
    second = servers.Server(args, port, "/ping", tmp_path / "serve-2.log", env={"OMP_NUM_THREADS": "1"}, name="run-pipeline serve")
    with second.start(timeout=120):
        # The client retries what was not answered, with the same ids; then more load.
        for rid in [r for r, s in before.items() if s != 200]:
            worker, n = rid[1:].split("-")
            client(int(worker), 1, threading.Event(), int(n))
        pool, futures = load(10_000, 20, threading.Event())
        for f in futures:
            f.result(60)
        pool.shutdown()
        health = json.loads(http(second.url + "/health")[1])
    reader = PredictionLog(log_url)
    logged, counts = reader.logged_ids(), reader.counts()
    reader.close()
    ok = [r for r, s in answered.items() if s == 200]
    assert len(ok) == len(answered), {r: s for r, s in answered.items() if s != 200}
    assert any(s != 200 for s in before.values()), "the stop came after the load ended: nothing was mid-flight"
    missing = [r for r in ok if logged.get(r) != 1]
    assert counts["dropped"] == 0 and not missing, (counts, missing[:5])  # every answered request once, none dropped
    assert set(logged) <= set(answered) and counts["logged"] == len(logged) == len(ok)
    assert health["log"]["dropped"] == 0 and health["log"]["replayed"] >= len(unwritten), (health, len(unwritten))


def test_rows_queued_by_a_killed_process_are_written_by_the_next_start_exactly_once(tmp_path):
    """A process that queued rows while the store was locked, killed without a flush (os._exit):
    the next PredictionLog on the same spool folder writes them, once, and the drops it counted."""
    import sqlite3
    import subprocess
    import sys

    from pipeline.live.log import PredictionLog

    url_, spool = f"sqlite:///{tmp_path / 'log.db'}", tmp_path / "spool"
    PredictionLog(url_).close()
    child = f"""
import os, sys
from pipeline.live.log import PredictionLog
log = PredictionLog({url_!r}, queue_rows=100, connect_timeout_s=0.2, spool_dir={str(spool)!r}).start()
print("started", flush=True)
sys.stdin.readline()  # the store is locked now
row = dict(arm="production", alias="production", version="1", answered=1, at=0.0, prediction=1.0, latency_ms=1.0, features_sha256="0", features="{{}}")
for i in range(400):  # 2,000 rows: beyond the queue (100) and the one batch the writer holds (at most 500)
    log.put([dict(row, request_id=f"r{{i}}", row=j) for j in range(5)])
print(log.dropped, flush=True)
os._exit(0)  # no flush, no close: as a SIGKILL leaves it
"""
    proc = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lock = sqlite3.connect(tmp_path / "log.db", timeout=0, isolation_level=None)
    try:
        assert proc.stdout.readline().strip() == "started"
        lock.execute("BEGIN EXCLUSIVE")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        dropped_line = proc.stdout.readline()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
    dropped_by_child = int(dropped_line.strip())
    assert 2000 - 500 - 100 <= dropped_by_child < 2000 and len(list(spool.glob("*.jsonl"))) == 1
    before = PredictionLog(url_)
    assert before.counts()["logged"] == 0  # nothing reached the store before the kill
    before.close()
    again = PredictionLog(url_, spool_dir=spool).start()
    replayed = again.replayed
    again.close()
    again = PredictionLog(url_, spool_dir=spool).start()  # a second start finds nothing left to replay
    counts, ids, second = again.counts(), again.logged_ids(), again.replayed
    again.close()
    assert replayed == 2000 - dropped_by_child and second == 0, (replayed, second)
    assert counts == {"logged": replayed, "feedback": 0, "dropped": dropped_by_child}, counts
    assert all(n <= 5 for n in ids.values()) and sum(ids.values()) == replayed
    assert not list(spool.glob("*.jsonl"))


@pytest.mark.postgres
def test_postgresql_log_store_shared_by_two_servers(live_project, tmp_path):
    """Two serving processes' worth of services on one PostgreSQL log: one log, the monitor reads both."""
    from test_servers import fresh_pg_database

    from pipeline.live.monitor import Monitor

    base, frame, features = live_project
    point(base, production="1", challenger="2")
    with fresh_pg_database() as uri:
        settings = base.model_copy(update={"live": base.live.model_copy(update={"log_url": uri})})
        one = service_for(settings, challenger="challenger", mode="split", share=0.5)
        two = service_for(settings, challenger="challenger", mode="split", share=0.5)
        with running(one) as url_one, running(two) as url_two:
            a = Replay(url_one, frame, features, settings.data.target)
            b = Replay(url_two, frame, features, settings.data.target)
            ids_a, ids_b = a.send(0, 50), b.send(50, 100)
            for s in (one, two):  # what each answered is in the shared log before the other joins feedback to it
                s.drain_shadow()
                s.log.flush()
            # Feedback through either server joins rows the other logged.
            a.sent.update(b.sent)
            b.sent.update(a.sent)
            joined = [a.feedback(ids_b), b.feedback(ids_a)]
            reports = {r.arm: r for r in Monitor(settings, one.log).run(act=False)}
            counts = one.log.counts()
    assert [j["accepted"] for j in joined] == [50, 50] and all(j["unknown"] == 0 for j in joined), joined
    assert counts == {"logged": 200, "feedback": 100, "dropped": 0}, counts  # each row answered by one arm, shadow-scored by the other
    assert reports["production"].requests + reports["challenger"].requests == 100
    assert reports["challenger"].comparison["rows"] == 100


def _shadow_counts(url: str) -> dict[str, float]:
    """The shadow counters of /metrics, summed over arms: scored, failed, skipped rows."""
    text = http(url + "/metrics")[1].decode()

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))

    return {"scored": total("live_shadow_rows_total"), "failed": total("live_shadow_errors_total"),
            "skipped": total("live_shadow_rows_skipped")}


def test_shadow_scoring_runs_in_a_worker_process_and_a_killed_worker_is_counted_and_replaced(live_project, tmp_path):
    import os
    import signal

    base, frame, features = live_project
    settings = fresh_settings(base, tmp_path)
    point(settings, production="1", challenger="3")
    service = service_for(settings, challenger="challenger", mode="shadow")
    with running(service) as url:
        replay = Replay(url, frame, features, settings.data.target)
        shadow = json.loads(http(url + "/health")[1])["shadow"]
        pid = shadow["worker_pid"]
        assert shadow["ready"] and pid not in (None, os.getpid()), shadow  # ready before the first answer, not this process
        first = replay.send(0, 40)
        service.drain_shadow()
        assert _shadow_counts(url) == {"scored": 40, "failed": 0, "skipped": 0}
        os.kill(pid, signal.SIGKILL)
        during = replay.send(40, 80)  # answered while the worker is gone: scored by the next one, or counted failed
        deadline = time.monotonic() + 60
        while not ((h := json.loads(http(url + "/health")[1])["shadow"])["restarts"] and h["ready"]):
            assert time.monotonic() < deadline, "the killed shadow worker was not replaced"
            time.sleep(0.1)
        after = replay.send(80, 120)
        service.drain_shadow()
        counts = _shadow_counts(url)
        shadow = json.loads(http(url + "/health")[1])["shadow"]
    assert all(set(replay.answers[r]["arms"]) == {"production"} for r in first + during + after)  # answers never depended on it
    assert shadow["restarts"] == 1 and shadow["worker_pid"] != pid and shadow["pending"] == 0, shadow
    assert counts["scored"] + counts["failed"] + counts["skipped"] == 120, counts  # every row scored or counted
    scored = set(zip(*[service.log.window("challenger", "3", 10_000)[c] for c in ("request_id", "row")]))
    assert {(r, j) for r in first + after for j in range(ROWS_PER_REQUEST)} <= scored and len(scored) == counts["scored"]


def test_a_shadow_worker_ends_with_its_parent(live_project, tmp_path):
    """A serving process killed (no stop, no atexit) leaves no worker behind."""
    import os
    import subprocess
    import sys

    base, _, _ = live_project
    point(base, production="1", challenger="3")
    script = (
        "import pickle, sys, time\n"
        "from pipeline.live.shadow import ShadowScorer\n"
        "s = ShadowScorer(pickle.load(open(sys.argv[1], 'rb')), lambda *a: None, maxsize=10).start(['1', '3'])\n"
        "print(s.pid, s.ready.is_set(), flush=True)\n"
        "time.sleep(120)\n"
    )
    import pickle

    (tmp_path / "settings.pkl").write_bytes(pickle.dumps(base))
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "settings.pkl")], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        pid, ready = parent.stdout.readline().split()
        assert ready == "True"
        os.kill(int(pid), 0)  # alive
    finally:
        parent.kill()
        parent.wait(10)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
        assert time.monotonic() < deadline, f"shadow worker {pid} outlived its parent"
        time.sleep(0.1)


def _state(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


# ---------------------------------------------------------------- a classifier: labels as feedback


@pytest.fixture(scope="module")
def live_classifier(tmp_path_factory):
    """ISLR's Default (3.3 % defaults) as init configures it, at production, with two versions:
    v1 the model, v2 the same model overconfident (tests/bad_models.Overconfident: its ranking,
    a far worse log loss). (settings, the evaluation frame, the features)."""
    from pipeline import checks, cli, figures, registry
    from tests.bad_models import Overconfident

    folder = tmp_path_factory.mktemp("live-classifier")
    data = real_csv(folder, "ISLR", "Default")
    assert cli.main(["init", "--data", str(data), "--target", "default", "--out", str(folder / "p")]) == 0
    cfg = folder / "p" / "pipeline_config.yaml"
    raw = yaml.safe_load(cfg.read_text())
    raw["live"] = LIVE["live"]
    cfg.write_text(yaml.safe_dump(raw))
    settings = config_mod.load(cfg, "production")
    dataset, parts, model = fitted_once(settings)
    X = parts.train[dataset.features.columns]
    y = parts.eval[settings.data.target].to_numpy()
    for m in (model, Overconfident(model, factor=4.0).adopt(model, X)):
        p = checks.scores(m, parts.eval[dataset.features.columns])
        registry.log_candidate(settings, m, dataset, parts.eval, figures.eval_metrics(y, p, True, settings.model.decision_threshold))
    return settings, parts.eval, dataset.features


def test_a_classifier_served_with_labels_as_feedback_moves_the_monitors_figures_stops_and_rolls_back(live_classifier, tmp_path):
    from pipeline import figures, registry
    from pipeline.live.monitor import Monitor

    base, frame, features = live_classifier
    name, labels = base.mlflow.registered_model, base.data.labels  # ["No", "Yes"]: codes 0 and 1
    settings = fresh_settings(base, tmp_path)
    c = _client(settings)
    c.set_registered_model_alias(name, "production", "1")
    c.set_registered_model_alias(name, "challenger", "2")
    models = {v: registry.load_pyfunc(settings, f"models:/{name}/{v}") for v in ("1", "2")}
    service = service_for(settings, challenger="challenger", mode="split", share=0.5)
    with running(service) as url:
        replay = Replay(url, frame, features, settings.data.target)
        # Answers are each row's probabilities of No and Yes, as the version's pyfunc gives them.
        first = replay.send(0, ROWS_PER_REQUEST)[0]
        doc = replay.answers[first]
        arm_version = doc["versions"][0]
        expected = models[arm_version].predict(replay.sent[first][features.columns])
        assert np.array_equal(np.asarray(doc["predictions"]), np.asarray(expected, float))
        # Feedback is the label as the file writes it; a label the config does not list is refused, named.
        truth = [labels[int(v)] for v in replay.sent[first][settings.data.target]]
        items = [{"request_id": first, "row": j, "value": t} for j, t in enumerate(truth)] + [{"request_id": first, "row": 9, "value": "maybe"}]
        said = json.loads(http(url + "/feedback", json.dumps({"feedback": items}).encode())[1])
        assert said["accepted"] == ROWS_PER_REQUEST and said["invalid_rows"] == [f"request id '{first}' row 9: label 'maybe' is not one of No, Yes"]
        monitor = Monitor(settings, service.log)
        looked, decision = ROWS_PER_REQUEST, None
        while looked < len(frame) and decision != "stop":
            ids = replay.send(looked, looked + 2 * STEP_ROWS)
            looked += 2 * STEP_ROWS
            items = [{"request_id": r, "row": j, "value": labels[int(v)]} for r in ids for j, v in enumerate(replay.sent[r][settings.data.target])]
            said = json.loads(http(url + "/feedback", json.dumps({"feedback": items}).encode())[1])
            assert said["accepted"] == len(items) and said["invalid"] == 0, said
            reports = {r.arm: r for r in monitor.run()}
            decision = reports["challenger"].decision
        assert decision == "stop", f"the overconfident v2 was not stopped on {looked} rows: {reports['challenger'].as_dict()}"
        chal = reports["challenger"]
        assert chal.why.startswith("challenger @challenger v2 is confidently worse: log loss +") and chal.comparison["log_loss_change"] > 0.5
        assert reports["production"].decision == "keep", reports["production"].why
    # The live figures per arm are the offline figures of the same version on the rows that arm answered.
    for arm, version in (("production", "1"), ("challenger", "2")):
        X, y = replay.rows_of(arm)
        p = figures.class_probabilities(np.asarray(models[version].predict(X), float))[:, 1]
        rep = reports[arm]
        assert rep.feedback_rows == len(y) and rep.figures_on == "answered rows"
        for metric, offline in (("log_loss", figures.log_loss(y, p)), ("roc_auc", figures.roc_auc(y, p)),
                                ("accuracy", figures.accuracy(y, p, settings.model.decision_threshold))):
            assert rep.figures[metric] == pytest.approx(offline, rel=1e-9), (arm, metric, rep.figures)
            assert rep.figures[f"{metric}_lower"] <= offline <= rep.figures[f"{metric}_upper"], (arm, metric, rep.figures)
    # v2 ranks the rows as v1 does (the same AUC on the same rows) and is sure where it should not be.
    X, y = replay.rows_of("challenger")
    aucs = [figures.roc_auc(y, figures.class_probabilities(np.asarray(models[v].predict(X), float))[:, 1]) for v in ("1", "2")]
    assert aucs[0] == pytest.approx(aucs[1], abs=1e-3)
    # Production overconfident: its live log loss breaches the production bound, and @production goes back to v1.
    settings = fresh_settings(base, tmp_path / "rollback")
    c.delete_registered_model_alias(name, "challenger")
    c.set_registered_model_alias(name, "production", "2")
    c.set_registered_model_alias(name, "previous-production", "1")
    service = service_for(settings)
    with running(service) as url:
        replay = Replay(url, frame, features, settings.data.target)
        ids = replay.send(0, len(frame))  # a few hundred rows hold a dozen defaults: not yet confident
        items = [{"request_id": r, "row": j, "value": labels[int(v)]} for r in ids for j, v in enumerate(replay.sent[r][settings.data.target])]
        assert json.loads(http(url + "/feedback", json.dumps({"feedback": items}).encode())[1])["accepted"] == len(frame)
        prod = Monitor(settings, service.log).run()[0]
    assert prod.decision == "rollback" and prod.why.startswith("live log loss "), (prod.why, prod.figures)
    assert "@production moved back from v2 to v1" in prod.why
    # v1 was never gated here: restored all the same (production breaching now), forced, and the history says why.
    assert prod.why.endswith(f"(forced: {name} version 1: no evidence; run the gates first "
                             f"(pytest model_tests -m gates --model-uri models:/{name}/1 --env production))")
    last = registry.history(settings, name)[-1]
    assert (last.action, last.version, last.by) == ("rollback", "1", "run-pipeline monitor") and last.forced.startswith(f"{name} version 1: no evidence")
    assert registry.alias_map(settings, name)["production"] == "1"


def test_list_and_compare_show_a_classifiers_figures(live_classifier, capsys):
    from pipeline import cli

    settings = live_classifier[0]
    args = ["--config", str(settings.config_path), "--env", "production", "--json"]
    assert cli.main(["list", *args]) == 0
    versions = json.loads(capsys.readouterr().out)["versions"]
    assert [sorted(k for k in v if k in ("roc_auc", "log_loss", "accuracy", "f1", "mae")) for v in versions] == [["accuracy", "f1", "log_loss", "roc_auc"]] * 2
    assert cli.main(["compare", "1", "2", *args]) == 0
    doc = json.loads(capsys.readouterr().out)
    m1, m2 = doc["metrics"]["1"], doc["metrics"]["2"]
    # v2 ranks as v1 does and is overconfident: the same AUC, a worse log loss, refused by the champion gate's check.
    assert m1["roc_auc"] == pytest.approx(m2["roc_auc"], abs=1e-3) and m2["log_loss"] > 1.5 * m1["log_loss"]
    assert doc["log_loss_delta"] == pytest.approx(m2["log_loss"] / m1["log_loss"] - 1, rel=1e-9)
    assert doc["recommendation"].startswith("version 2 is worse: ") and "log loss" in doc["recommendation"]


def test_a_log_written_before_scores_were_logged_gets_the_column_and_keeps_its_rows(tmp_path):
    import sqlite3

    from pipeline.live.log import PredictionLog

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as con:  # the predictions table as an earlier release created it
        con.execute(
            "CREATE TABLE predictions (request_id VARCHAR(128) NOT NULL, row INTEGER NOT NULL, arm VARCHAR(32) NOT NULL, "
            "alias VARCHAR(128) NOT NULL, version VARCHAR(32) NOT NULL, answered INTEGER NOT NULL, at FLOAT NOT NULL, "
            "prediction FLOAT, latency_ms FLOAT, features_sha256 VARCHAR(64) NOT NULL, features TEXT NOT NULL, "
            "PRIMARY KEY (request_id, row, arm))"
        )
        con.execute("INSERT INTO predictions VALUES ('r1', 0, 'production', 'production', '1', 1, 1.0, 123.0, 2.0, 'x', '{}')")
    log = PredictionLog(f"sqlite:///{path}")
    frame = log.window("production", "1", 10)
    assert frame[["request_id", "prediction", "scores"]].to_dict("records") == [{"request_id": "r1", "prediction": 123.0, "scores": None}]
    assert log.predictions_of("production", [("r1", 0)], "1") == {("r1", 0): 123.0}
    log.close()


def test_the_log_writer_gathers_rows_into_one_transaction_and_never_loses_count_of_one(tmp_path, monkeypatch):
    """Rows queued while the writer lingers go out in one batch; pending() + written never drops
    below what was put, so a flush (and a clean stop) never returns with a row in nobody's hands."""
    from pipeline.live import log as log_mod

    log = log_mod.PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")
    batches = []
    write = log._write
    monkeypatch.setattr(log, "_write", lambda batch: batches.append(len(batch)) or write(batch))
    log.start()
    row = dict(alias="production", version="1", answered=1, at=0.0, prediction=1.0, latency_ms=1.0, features_sha256="0", features="{}")
    seen, put, stop = [], [0], threading.Event()

    def watch():
        while not stop.is_set():
            before = put[0]
            seen.append(log.pending() + log.written - before)

    watcher = threading.Thread(target=watch)
    watcher.start()
    for i in range(40):
        log.put([{"request_id": f"r{i}", "row": 0, "arm": "production", **row}])
        put[0] += 1
        time.sleep(0.001)
    assert log.flush(10)
    stop.set()
    watcher.join()
    assert log.written == 40 and log.pending() == 0
    assert min(seen) >= 0, "a row was neither queued, in the writer's hands, nor written"
    assert len([b for b in batches if b]) < 40 and max(batches) > 1  # not one transaction per row
    log.close()


def test_logged_records_are_the_rows_values_with_missing_as_null():
    import pandas as pd

    from pipeline.live.service import _records

    frame = pd.DataFrame(
        {"area": [1.5, np.nan], "rooms": [3, 4], "kind": ["a", np.nan], "none": [None, None], "new": [True, False]}
    ).astype({"kind": object, "none": object})
    expected = [
        {"area": 1.5, "rooms": 3, "kind": "a", "none": None, "new": True},
        {"area": None, "rooms": 4, "kind": None, "none": None, "new": False},
    ]
    assert _records(frame) == expected == json.loads(frame.to_json(orient="records"))
    assert _records(pd.DataFrame({"x": [0.1 + 0.2]})) == [{"x": 0.1 + 0.2}]  # to the last digit
    dated = pd.DataFrame({"at": pd.to_datetime(["2026-01-02"]), "v": [np.nan]})  # pandas' writer for the rest
    assert _records(dated) == json.loads(dated.to_json(orient="records"))


def test_a_persistent_connection_posts_every_request_on_one_socket():
    import http.server

    from pipeline.live.client import Connection

    sockets = []

    class Echo(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_POST(self):
            sockets.append(self.client_address)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = 200 if self.headers["Content-Type"] == "application/json" else 415
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conn = Connection(f"http://127.0.0.1:{server.server_address[1]}")
        assert conn.post("/invocations", b'{"a": 1}') == (200, b'{"a": 1}')
        assert conn.post("/invocations", b"x", content_type="text/plain") == (415, b"x")
        assert len(sockets) == 2 and sockets[0] == sockets[1]  # the same client port: one connection
    finally:
        server.shutdown()
        server.server_close()


def test_an_answer_cut_off_by_a_dying_server_is_no_answer_to_the_client():
    """A server killed while writing its answer (headers sent, body cut): OSError, as when none came."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from pipeline.live.client import Connection

    class Cut(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "95")
            self.end_headers()
            self.wfile.write(b'{"predictions"')
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Cut)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(OSError, match="IncompleteRead"):
            http(url + "/invocations", b"{}")
        with pytest.raises(OSError, match="IncompleteRead"):
            Connection(url).post("/invocations", b"{}")
    finally:
        server.shutdown()
        server.server_close()

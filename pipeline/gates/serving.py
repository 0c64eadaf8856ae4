"""Serving gates: the model served by `mlflow models serve` on loopback answers as in process.

The server starts once for the module, in this Python environment (no conda or
virtualenv), and stops with its workers. Where the environment requires no serving gate
they are skipped (a skipped required gate refuses promotion, so this never opens a door).
"""

import json
import time

import numpy as np
import pytest

from pipeline import checks, registry, servers
from pipeline.gates import family
from pipeline.live.client import http, scoring_payload

__all__ = ["served", "test_serving_matches_in_process", "test_serving_rejects_malformed", "test_serving_latency"]


@pytest.fixture(scope="module")
def served(gate_plugin, gate_session, pipeline_settings, candidate_model, feature_spec, tmp_path_factory):
    """The candidate behind `mlflow models serve` on a free 127.0.0.1 port."""
    if not gate_plugin.required_in_family("serving"):
        pytest.skip(f"no serving gate is required at {pipeline_settings.env}")
    folder = tmp_path_factory.mktemp("serving")
    uri = gate_session.model_uri
    if uri is None:  # fitted in this session: serve it from an MLflow model folder
        uri = str(folder / "model")
        registry.save_model(candidate_model, feature_spec, folder / "model")
    server = servers.model_server(uri, folder / "server.log", env={"MLFLOW_TRACKING_URI": pipeline_settings.mlflow.tracking_uri})
    with server.start(timeout=pipeline_settings.gates.serving.start_timeout_s):
        yield server.url + "/invocations"


@family("serving")
def test_serving_matches_in_process(served, eval_predictions, feature_spec, gate):
    status, body = http(served, scoring_payload(eval_predictions.frame[feature_spec.columns]))
    assert status == 200, f"the model server answered {status} to the evaluation rows: {body[:200]!r}"
    finding = checks.serving_matches_in_process(eval_predictions.p, np.asarray(json.loads(body)["predictions"], float))
    assert gate.holds(finding), gate.explain(finding)


@family("serving")
def test_serving_rejects_malformed(served, eval_frame, feature_spec, gate):
    row = eval_frame[feature_spec.columns].head(2)
    text_in_numeric = row.astype(object).copy()
    if feature_spec.numeric:
        text_in_numeric[feature_spec.numeric[0]] = "not a number"
    cases = {
        "not JSON": (b"{this is not json", "application/json"),
        "no dataframe key": (json.dumps({"rows": [1, 2, 3]}).encode(), "application/json"),
        "missing a column": (scoring_payload(row.drop(columns=[feature_spec.columns[0]])), "application/json"),
        "text in a numeric column": (scoring_payload(text_in_numeric), "application/json"),
        "unsupported content type": (b"a,b\n1,2", "text/plain"),
    }
    finding = checks.serving_rejects_malformed({name: http(served, body, content_type=ctype)[0] for name, (body, ctype) in cases.items()})
    assert gate.holds(finding), gate.explain(finding)


@family("serving")
def test_serving_latency(served, eval_frame, feature_spec, pipeline_settings, gate):
    X = eval_frame[feature_spec.columns]
    n = pipeline_settings.gates.serving.requests
    bodies = [scoring_payload(X.iloc[[i]]) for i in np.random.default_rng(pipeline_settings.seed).integers(0, len(X), size=n + 5)]
    for body in bodies[:5]:  # warm-up: first requests load lazily
        http(served, body)
    times = []
    for body in bodies[5:]:
        t0 = time.perf_counter()
        status, _ = http(served, body)
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200, f"single-row request answered {status}"
    finding = checks.serving_latency(np.asarray(times))
    assert gate.holds(finding), gate.explain(finding)

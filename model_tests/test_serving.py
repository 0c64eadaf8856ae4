"""Serving gates: the model served by `mlflow models serve` on loopback answers as in process.

The server starts once for the module, in this Python environment (no conda or
virtualenv), and stops with its workers. Environments that do not require the serving
family skip these gates (a skipped required gate refuses promotion, so this never opens
a door).
"""

import json
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from pipeline import figures, registry, servers
from pipeline.evidence import FAMILIES

pytestmark = [pytest.mark.gates, pytest.mark.serving]
assert "serving" in FAMILIES

SERVING_GATES = ("serving_matches_in_process", "serving_rejects_malformed", "serving_latency")


def _post(url: str, body: bytes, content_type: str = "application/json", timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _payload(frame) -> bytes:
    # pandas writes missing values as null, which the server reads back as missing.
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()


@pytest.fixture(scope="module")
def served(gate_session, pipeline_settings, candidate_model, feature_spec, tmp_path_factory):
    """The candidate behind `mlflow models serve` on a free 127.0.0.1 port."""
    required = set(pipeline_settings.environment.required_gates)
    if not required.intersection(SERVING_GATES):
        pytest.skip(f"the serving family is not required at {pipeline_settings.env}")
    folder = tmp_path_factory.mktemp("serving")
    uri = gate_session.model_uri
    if uri is None:  # fitted in this session: serve it from an MLflow model folder
        uri = str(folder / "model")
        registry.save_model(candidate_model, feature_spec, folder / "model")
    server = servers.model_server(uri, folder / "server.log", env={"MLFLOW_TRACKING_URI": pipeline_settings.mlflow.tracking_uri})
    with server.start(timeout=pipeline_settings.gates.serving.start_timeout_s):
        yield server.url + "/invocations"


def test_serving_matches_in_process(served, eval_predictions, feature_spec, thresholds, record_gate):
    th = thresholds.prediction_difference
    status, body = _post(served, _payload(eval_predictions.frame[feature_spec.columns]))
    assert status == 200, f"the model server answered {status} to the evaluation rows: {body[:200]!r}"
    answered = np.asarray(json.loads(body)["predictions"], float)
    diff = figures.max_abs_difference(eval_predictions.p, answered)
    detail = f"{len(answered)} rows over HTTP vs in process"
    record_gate("prediction_difference", diff, th, detail)
    assert th.holds(diff), th.explain("max difference between served and in-process predictions", diff, detail)


def test_serving_rejects_malformed(served, eval_frame, feature_spec, thresholds, record_gate):
    th = thresholds.serving_malformed_not_4xx
    assert th is not None, "no serving_malformed_not_4xx threshold in this environment's config"
    row = eval_frame[feature_spec.columns].head(2)
    numeric = feature_spec.numeric[0] if feature_spec.numeric else None
    text_in_numeric = row.astype(object).copy()
    if numeric:
        text_in_numeric[numeric] = "not a number"
    cases = {
        "not JSON": (b"{this is not json", "application/json"),
        "no dataframe key": (json.dumps({"rows": [1, 2, 3]}).encode(), "application/json"),
        "missing a column": (_payload(row.drop(columns=[feature_spec.columns[0]])), "application/json"),
        "text in a numeric column": (_payload(text_in_numeric), "application/json"),
        "unsupported content type": (b"a,b\n1,2", "text/plain"),
    }
    bad = {}
    for name, (body, ctype) in cases.items():
        status, _ = _post(served, body, ctype)
        if not 400 <= status < 500:
            bad[name] = status
    detail = f"{len(cases)} malformed requests; not 4xx: {bad or 'none'}"
    record_gate("serving_malformed_not_4xx", len(bad), th, detail)
    assert th.holds(len(bad)), th.explain("malformed requests not answered 4xx", len(bad), detail)


def test_serving_latency(served, eval_frame, feature_spec, pipeline_settings, thresholds, record_gate):
    th = thresholds.serving_p99_ms
    assert th is not None, "no serving_p99_ms threshold in this environment's config"
    X = eval_frame[feature_spec.columns]
    n = pipeline_settings.gates.serving.requests
    rng = np.random.default_rng(pipeline_settings.seed)
    bodies = [_payload(X.iloc[[i]]) for i in rng.integers(0, len(X), size=n + 5)]
    for body in bodies[:5]:  # warm-up: first requests load lazily
        _post(served, body)
    times = []
    for body in bodies[5:]:
        t0 = time.perf_counter()
        status, _ = _post(served, body)
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200, f"single-row request answered {status}"
    p99, p50 = float(np.percentile(times, 99)), float(np.percentile(times, 50))
    detail = f"p50 {p50:.1f} ms over {n} single-row HTTP requests on loopback"
    record_gate("serving_p99_ms", p99, th, detail)
    assert th.holds(p99), th.explain("served single-row p99", p99, detail)

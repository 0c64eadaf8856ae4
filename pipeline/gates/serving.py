"""Serving gates: the model served by `mlflow models serve` on loopback answers as in process.

The server starts once for the module, in this Python environment (no conda or
virtualenv), and stops with its workers. Where the environment requires no serving gate
they are skipped (a skipped required gate refuses promotion, so this never opens a door).
"""

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from pipeline import checks, registry, servers
from pipeline.catalogue import Inputs, export, spec
from pipeline.checks import Finding
from pipeline.live.client import http, scoring_payload


@pytest.fixture(scope="module")
def served(gate_plugin: Any, gate_session: Any, pipeline_settings: Any, tmp_path_factory: Any) -> Iterator[str]:
    """The candidate behind `mlflow models serve` on a free 127.0.0.1 port: its scoring URL."""
    if not gate_plugin.required_in_family("serving"):
        pytest.skip(f"no serving gate is required at {pipeline_settings.env}")
    folder = tmp_path_factory.mktemp("serving")
    uri = gate_session.model_uri
    if uri is None:  # fitted in this session: serve it from an MLflow model folder
        uri = str(folder / "model")
        registry.save_model(gate_session.model, gate_session.features, folder / "model")
    server = servers.model_server(
        uri, folder / "server.log", env={"MLFLOW_TRACKING_URI": pipeline_settings.mlflow.tracking_uri}
    )
    with server.start(timeout=pipeline_settings.gates.serving.start_timeout_s):
        yield server.url + "/invocations"


def _url(run: Inputs) -> str:
    assert run.served is not None, "the serving gates need the served fixture"
    return run.served


@spec(
    "serving",
    needs=("served",),
    defaults={
        "staging": "{max: 0, required: false}",
        "production": "{max: 0}",
    },
)
def serving_matches_in_process(run: Inputs) -> Finding:
    """The largest difference between the served and the in-process predictions of the evaluation rows."""
    pr, columns = run.session.predictions, run.session.features.columns
    status, body = http(_url(run), scoring_payload(pr.frame[columns]))
    if status != 200:
        return Finding(
            float("nan"),
            "max difference between served and in-process predictions",
            f"the model server answered {status} to the evaluation rows: {body[:200]!r}",
        )
    return checks.serving_matches_in_process(pr.p, np.asarray(json.loads(body)["predictions"], float))


@spec(
    "serving",
    needs=("served",),
    defaults={
        "staging": "{max: 0, unit: requests, required: false}",
        "production": "{max: 0, unit: requests}",
    },
)
def serving_rejects_malformed(run: Inputs) -> Finding:
    """Malformed requests are refused with a client error, never answered."""
    s = run.session
    row = s.eval_frame[s.features.columns].head(2)
    text_in_numeric = row.astype(object).copy()
    if s.features.numeric:
        text_in_numeric[s.features.numeric[0]] = "not a number"
    cases = {
        "not JSON": (b"{this is not json", "application/json"),
        "no dataframe key": (json.dumps({"rows": [1, 2, 3]}).encode(), "application/json"),
        "missing a column": (scoring_payload(row.drop(columns=[s.features.columns[0]])), "application/json"),
        "text in a numeric column": (scoring_payload(text_in_numeric), "application/json"),
        "unsupported content type": (b"a,b\n1,2", "text/plain"),
    }
    return checks.serving_rejects_malformed(
        {name: http(_url(run), body, content_type=ctype)[0] for name, (body, ctype) in cases.items()}
    )


@spec(
    "serving",
    needs=("served",),
    defaults={
        "staging": "{max: 200, unit: ms, required: false}",
        "production": "{max: 200, unit: ms}",
    },
)
def serving_latency(run: Inputs) -> Finding:
    """Single-row request p99 over HTTP (ms)."""
    s, settings = run.session, run.settings
    X = s.eval_frame[s.features.columns]
    n = settings.gates.serving.requests
    bodies = [
        scoring_payload(X.iloc[[i]]) for i in np.random.default_rng(settings.seed).integers(0, len(X), size=n + 5)
    ]
    for body in bodies[:5]:  # warm-up: first requests load lazily
        http(_url(run), body)
    times = []
    for body in bodies[5:]:
        t0 = time.perf_counter()
        status, _ = http(_url(run), body)
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            return Finding(float("nan"), "served single-row p99", f"a single-row request was answered {status}")
    return checks.serving_latency(np.asarray(times))


__all__ = export(__name__, "served")

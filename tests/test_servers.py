"""Beyond one machine: the pipeline against real `mlflow server`s on loopback.

Backends: SQLite and PostgreSQL (a fresh database on 127.0.0.1:5432, dropped afterwards),
artifacts served through the server (--serve-artifacts). PostgreSQL tests carry the
`postgres` marker: where CI=true they run (and fail when no PostgreSQL answers); elsewhere
they skip with the reason when none answers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from pipeline import servers
from tests.conftest import CHEAP, LIGHT_MODEL, ROOT, deep_merge, write_project

pytestmark = [pytest.mark.slow, pytest.mark.solo]

# These tests are about the registry behind a server, not about the gates or the model: each
# project gates only the metric and champion families (the champion gate reads the registry),
# with cheap gate settings and conftest's lighter model. Every other step of `run` is the real one.
REGISTRY_ONLY = {"families": ("metrics", "champion"), "model": LIGHT_MODEL}


def registry_project(folder: Path, mlflow: dict, **overrides) -> Path:
    return write_project(folder, deep_merge(CHEAP, {"mlflow": mlflow, **overrides}), **REGISTRY_ONLY)

PG_HOST, PG_PORT = "127.0.0.1", 5432


def _pg_answers() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def postgres_db():
    """A fresh PostgreSQL database for one server, dropped afterwards."""
    if not _pg_answers():
        reason = f"no PostgreSQL answers on {PG_HOST}:{PG_PORT}"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{reason}, and CI=true requires the postgres tests to run")
        pytest.skip(reason)
    import psycopg2

    name = f"mlflow_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sqlite-server")
    with servers.tracking_server(f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts", folder / "server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory, postgres_db):
    folder = tmp_path_factory.mktemp("pg-server")
    with servers.tracking_server(postgres_db, folder / "artifacts", folder / "server.log") as srv:
        yield srv


def cli(*args: str, cwd: Path, uri: str, timeout: float = 900, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _pipeline_round_trip(server: servers.Server, folder: Path) -> dict[str, float]:
    """run, run, list, rollback, list against `server`; returns wall times."""
    cfg = registry_project(folder, {"experiment": "server-test", "registered_model": "ames-server"})
    times = {}
    t0 = time.perf_counter()
    first = cli("run", "--config", str(cfg), "--json", cwd=folder, uri=server.url)
    times["run"] = time.perf_counter() - t0
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads(first.stdout)["aliases"] == {"staging": "1"}
    second = cli("run", "--config", str(cfg), "--json", cwd=folder, uri=server.url)
    assert second.returncode == 0, second.stderr[-2000:]
    doc = json.loads(second.stdout)
    assert doc["aliases"] == {"staging": "2", "previous-staging": "1"}
    champion = next(g for g in doc["evidence"]["gates"] if g["gate"] == "champion_mae")
    assert champion["figure"]["name"] == "champion_mae" and "ames-server v1" in champion["figure"]["detail"]
    listed = cli("list", "--config", str(cfg), "--json", cwd=folder, uri=server.url)
    assert listed.returncode == 0, listed.stderr
    rows = {r["version"]: r for r in json.loads(listed.stdout)["versions"]}
    assert rows["2"]["aliases"] == ["staging"] and rows["2"]["gates.staging"] == "passed"
    back = cli("rollback", "--config", str(cfg), "--env", "staging", cwd=folder, uri=server.url)
    assert back.returncode == 0, back.stderr
    holders = {a: str(v) for a, v in _client(server.url).get_registered_model("ames-server").aliases.items()}
    assert holders == {"staging": "1", "previous-staging": "2"}
    # Nothing of this run lives in a local store: every artifact went through the server.
    assert not (folder / "mlruns").exists()
    return times


def test_pipeline_against_sqlite_server(sqlite_server, tmp_path, record_property):
    times = _pipeline_round_trip(sqlite_server, tmp_path / "p")
    record_property("run_seconds_sqlite_server", round(times["run"], 1))


@pytest.mark.postgres
def test_pipeline_against_postgres_server(postgres_server, tmp_path, record_property):
    times = _pipeline_round_trip(postgres_server, tmp_path / "p")
    record_property("run_seconds_postgres_server", round(times["run"], 1))


def _concurrent_runs(server: servers.Server, folder: Path, n: int = 8) -> list[subprocess.CompletedProcess]:
    """n pipelines at once, each with its own model seed, all promoting to staging."""
    model_name = f"concurrent-{uuid.uuid4().hex[:6]}"
    cfgs = []
    for i in range(n):
        cfgs.append(registry_project(folder / f"p{i}", {"experiment": model_name, "registered_model": model_name}, seed=100 + i))
    env = {"OMP_NUM_THREADS": "1"}
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(cli, "run", "--config", str(c), "--json", cwd=c.parent, uri=server.url, extra_env=env) for c in cfgs]
        results = [f.result() for f in futures]
    return model_name, results


def _check_registry_after(server: servers.Server, model_name: str, promoted_ok: int) -> None:
    client = _client(server.url)
    versions = client.search_model_versions(f"name = '{model_name}'")
    for mv in versions:
        tags = mv.tags or {}
        if "gates.staging.evidence" in tags:
            arts = [a.path for a in client.list_artifacts(mv.run_id, "evidence/staging")]
            assert arts, f"version {mv.version}: evidence tag without its artifact"
    holder = client.get_model_version_by_alias(model_name, "staging")
    assert holder.tags.get("gates.staging.status") == "passed", f"@staging on version {holder.version} without passing evidence"
    promoted = [mv for mv in versions if "promoted.staging.at" in (mv.tags or {})]
    assert len(promoted) == promoted_ok, f"{len(promoted)} versions carry a promotion record, {promoted_ok} runs promoted"
    for mv in promoted:
        assert mv.tags["promoted.staging.evidence_sha256"] == mv.tags["gates.staging.evidence_sha256"]


@pytest.mark.postgres
def test_eight_concurrent_pipelines_on_postgres(postgres_server, tmp_path, record_property):
    t0 = time.perf_counter()
    model_name, results = _concurrent_runs(postgres_server, tmp_path)
    record_property("eight_way_seconds_postgres", round(time.perf_counter() - t0, 1))
    failures = [(r.returncode, r.stderr.strip().splitlines()[-1:] ) for r in results if r.returncode != 0]
    assert not failures, failures
    _check_registry_after(postgres_server, model_name, promoted_ok=8)


def test_eight_concurrent_pipelines_on_sqlite_server(sqlite_server, tmp_path, record_property):
    """SQLite is documented as unfit for concurrent writers: each run must succeed or fail
    clearly, and the alias must never rest on an ungated version."""
    t0 = time.perf_counter()
    model_name, results = _concurrent_runs(sqlite_server, tmp_path)
    record_property("eight_way_seconds_sqlite", round(time.perf_counter() - t0, 1))
    ok = [r for r in results if r.returncode == 0]
    for r in results:
        if r.returncode != 0:
            last = r.stderr.strip().splitlines()[-1]
            assert r.returncode in (1, 2) and last.startswith("error:"), r.stderr[-1500:]
    record_property("eight_way_ok_sqlite", len(ok))
    assert ok, "no pipeline finished against the SQLite-backed server"
    _check_registry_after(sqlite_server, model_name, promoted_ok=len(ok))


def test_server_stopped_mid_run_then_rerun(tmp_path):
    """Stop the server after the version is registered, before the alias moves."""
    folder = tmp_path / "srv"
    backend = f"sqlite:///{folder / 'mlflow.db'}"
    port = servers.free_port()
    server = servers.tracking_server(backend, folder / "artifacts", folder / "server.log", port=port).start()
    # One retry with a short timeout: the run is to give up on the stopped server, not to wait it out.
    cfg = registry_project(tmp_path / "p", {"experiment": "fault", "registered_model": "fault-model", "http_timeout_s": 5,
                                            "http_max_retries": 1})
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--config", str(cfg)], cwd=cfg.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        client = _client(server.url)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if client.search_model_versions("name = 'fault-model'"):
                    break
            except Exception:
                pass
            time.sleep(0.5)
        assert proc.poll() is None, "the run ended before its version was registered"
        server.stop()
        out, err = proc.communicate(timeout=300)
    finally:
        server.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("error:") and f"127.0.0.1:{port}" in last, err[-2000:]
    # Same port, same backend: the registry kept the version, and no alias points at it.
    server = servers.tracking_server(backend, folder / "artifacts", folder / "server.log", port=port).start()
    try:
        client = _client(server.url)
        assert not client.get_registered_model("fault-model").aliases
        rerun = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(cfg), "--json"], cwd=cfg.parent,
                               env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        holder = client.get_model_version_by_alias("fault-model", "staging")
        assert holder.version == "2" and holder.tags["gates.staging.status"] == "passed"
    finally:
        server.stop()


def test_unreachable_server_fails_fast_in_one_line(tmp_path):
    cfg = write_project(tmp_path / "p")
    port = servers.free_port()  # nothing listens there
    t0 = time.perf_counter()
    out = cli("run", "--config", str(cfg), cwd=cfg.parent, uri=f"http://127.0.0.1:{port}", timeout=120)
    elapsed = time.perf_counter() - t0
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"tracking server http://127.0.0.1:{port} unreachable" in lines[0], out.stderr
    assert elapsed < 60, f"took {elapsed:.0f} s to give up"
    assert not (cfg.parent / "mlruns").exists()


def test_compose_and_dockerfile_match_what_the_tests_run():
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "mlflow", "serving"} <= set(services)
    mlflow_cmd = services["mlflow"]["command"]
    ours = servers.tracking_server("postgresql://x", Path("/tmp/a"), Path("/tmp/log")).args
    flags = {a for a in ours if a.startswith("--")}
    assert flags <= set(mlflow_cmd), f"compose's mlflow server lacks {flags - set(mlflow_cmd)}"
    assert mlflow_cmd[:2] == ["mlflow", "server"]
    value = dict(zip(mlflow_cmd, mlflow_cmd[1:]))
    assert value["--backend-store-uri"].startswith("postgresql+psycopg2://")
    assert value["--default-artifact-root"] == "mlflow-artifacts:/"
    assert value["--artifacts-destination"].startswith("s3://")
    assert "5000:5000" in services["mlflow"]["ports"]
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"].startswith("http://minio:9000")
    serving = services["serving"]
    served = servers.model_server("m", Path("/tmp/log")).args
    assert "models serve" in " ".join(served) and "models serve" in serving["command"][-1]
    assert "--env-manager local" in serving["command"][-1] and "--env-manager local" in " ".join(served)
    assert "5001:5001" in serving["ports"]
    docker = (ROOT / "Dockerfile").read_text()
    assert "EXPOSE 5001" in docker and "mlflow models serve" in docker and "--env-manager local" in docker
    assert "/ping" in docker  # the health path the tests wait on

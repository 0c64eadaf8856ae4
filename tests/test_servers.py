"""Beyond one machine: the pipeline against real `mlflow server`s on loopback.

Backends: SQLite and PostgreSQL (a fresh database on 127.0.0.1:5432, dropped afterwards),
artifacts served through the server (--serve-artifacts). PostgreSQL tests carry the
`postgres` marker: where CI=true they run (and fail when no PostgreSQL answers); elsewhere
they skip with the reason when none answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import CHEAP, LIGHT_MODEL, ROOT, deep_merge, empty_store, missing_on_this_machine, write_project
from pipeline import servers

pytestmark = pytest.mark.slow

# Each test starts the servers it uses (function-scoped fixtures), so that every test is a unit
# of its own for the suite's workers (tests/conftest.py); the two concurrent-pipeline tests are
# `solo`: eight (or four) pipelines at once take both cores, and run after the other tests, alone.

# These tests are about the registry behind a server, not about the gates or the model: each
# project gates only the metric and champion families (the champion gate reads the registry),
# with cheap gate settings and conftest's lighter model. Every other step of `run` is the real one.
REGISTRY_ONLY = {"families": ("metrics", "champion"), "model": LIGHT_MODEL}


def registry_project(folder: Path, mlflow: dict, **overrides) -> Path:
    return write_project(folder, deep_merge(CHEAP, {"mlflow": mlflow, **overrides}), **REGISTRY_ONLY, store=False)  # the server's store only

PG_HOST, PG_PORT = "127.0.0.1", 5432


def _pg_answers() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_db():
    """A fresh PostgreSQL database for one server, dropped afterwards."""
    with fresh_pg_database() as uri:
        yield uri


@contextlib.contextmanager
def fresh_pg_database():
    if not _pg_answers():
        missing_on_this_machine(f"no PostgreSQL answers on {PG_HOST}:{PG_PORT}", "postgres tests")
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


def sqlite_backend(folder: Path) -> str:
    """A SQLite backend for a server in `folder`, starting as conftest's empty store (as after a first start)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store(), folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


# Eight pipelines at once are served by two uvicorn workers, as a deployment would; a test's
# one client by one (servers.tracking_server).
CONCURRENT_WORKERS = 2


def server_in(folder: Path, backend_uri: str, workers: int = 1) -> servers.Server:
    return servers.tracking_server(backend_uri, folder / "artifacts", folder / "server.log", workers=workers)


@pytest.fixture
def sqlite_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sqlite-server")
    with server_in(folder, sqlite_backend(folder)) as srv:
        yield srv


@pytest.fixture
def postgres_server(tmp_path_factory, postgres_db):
    """mlflow server on a fresh PostgreSQL database."""
    with server_in(tmp_path_factory.mktemp("pg-server"), postgres_db) as srv:
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


def _concurrent_runs(server: servers.Server, folder: Path, n: int = 8, lock_url: str | None = None):
    """n pipelines at once, each with its own model seed, all promoting to staging; with
    `lock_url`, their alias moves take turns by that database's advisory lock."""
    model_name = f"concurrent-{uuid.uuid4().hex[:6]}"
    cfgs = []
    mlflow = {"experiment": model_name, "registered_model": model_name, **({"lock_url": lock_url} if lock_url else {})}
    for i in range(n):
        cfgs.append(registry_project(folder / f"p{i}", mlflow, seed=100 + i))
    env = {"OMP_NUM_THREADS": "1"}
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(cli, "run", "--config", str(c), "--json", cwd=c.parent, uri=server.url, extra_env=env) for c in cfgs]
        results = [f.result() for f in futures]
    return model_name, results, cfgs


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


LOST_RACE = re.compile(r"(\S+) version (\d+): @staging is held by version (\d+) now, not by (nobody|version \d+) "
                       r"as when its gates ran: another promotion moved it since; gate the version again against the new holder")


@pytest.mark.solo
@pytest.mark.postgres
def test_eight_concurrent_pipelines_on_postgres(postgres_db, tmp_path, record_property):
    """Eight pipelines promote different versions to one alias at once, taking turns by an
    advisory lock in the server's PostgreSQL database: each run promotes or loses the race in
    one line (exit 1, its version gated against a holder that was replaced meanwhile), the
    history is one sequence of moves, and the audit finds nothing wrong."""
    with server_in(tmp_path / "server", postgres_db, workers=CONCURRENT_WORKERS) as server:
        t0 = time.perf_counter()
        model_name, results, cfgs = _concurrent_runs(server, tmp_path, lock_url=postgres_db)
        record_property("eight_way_seconds_postgres", round(time.perf_counter() - t0, 1))
        won = [r for r in results if r.returncode == 0]
        for r in results:
            if r.returncode != 0:  # gated and recorded; its promotion refused, said in its JSON document
                refused = json.loads(r.stdout)["evidence"].get("promotion_refused") if r.returncode == 1 else None
                assert refused and LOST_RACE.fullmatch(refused), (r.returncode, r.stdout[-800:], r.stderr[-600:])
        record_property("eight_way_promoted_postgres", len(won))
        assert won, "no pipeline promoted"
        _check_registry_after(server, model_name, promoted_ok=len(won))
        client = _client(server.url)
        moves = [m for m in _history(server, model_name) if m["alias"] == "staging"]
        assert len(moves) == len(won) and all(m["action"] == "promote" for m in moves)
        # One sequence: each move replaced the version the one before it put there.
        assert [m["replaced"] for m in moves] == [None] + [m["version"] for m in moves[:-1]], moves
        holders = {a: str(v) for a, v in client.get_registered_model(model_name).aliases.items()}
        assert holders == {"staging": moves[-1]["version"], **({"previous-staging": moves[-2]["version"]} if len(moves) > 1 else {})}
        audit = cli("audit", "--config", str(cfgs[0]), "--env", "staging", cwd=cfgs[0].parent, uri=server.url)
        assert audit.returncode == 0, audit.stdout + audit.stderr


def _history(server: servers.Server, model_name: str) -> list[dict]:
    """The registered model's history records (pipeline.registry's history.<alias>.<stamp> tags), oldest first."""
    tags = _client(server.url).get_registered_model(model_name).tags or {}
    return sorted((json.loads(v) for k, v in tags.items() if k.startswith("history.")), key=lambda m: m["at"])


@pytest.mark.solo
def test_four_concurrent_pipelines_on_sqlite_server(tmp_path, record_property):
    """SQLite is documented as unfit for concurrent writers: each run must succeed or fail
    clearly, and the alias must never rest on an ungated version. Four pipelines race as well
    as eight do (two server workers, two cores) at half the suite's time; the eight-way
    promotion the registry must order is the PostgreSQL test's."""
    folder = tmp_path / "server"
    with server_in(folder, sqlite_backend(folder), workers=CONCURRENT_WORKERS) as server:
        t0 = time.perf_counter()
        model_name, results, _ = _concurrent_runs(server, tmp_path, n=4)
        record_property("four_way_seconds_sqlite", round(time.perf_counter() - t0, 1))
        ok = [r for r in results if r.returncode == 0]
        for r in results:
            if r.returncode != 0:  # a clear error, or gated and its promotion refused (a lost race)
                last = r.stderr.strip().splitlines()[-1]
                refused = json.loads(r.stdout)["evidence"].get("promotion_refused") if r.returncode == 1 and r.stdout.strip() else None
                assert (refused and LOST_RACE.fullmatch(refused)) or (r.returncode in (1, 2) and last.startswith("error:")), r.stderr[-1500:]
        record_property("four_way_ok_sqlite", len(ok))
        assert ok, "no pipeline finished against the SQLite-backed server"
        _check_registry_after(server, model_name, promoted_ok=len(ok))


def test_server_stopped_mid_run_then_rerun(tmp_path):
    """Stop the server after the version is registered, before the alias moves."""
    folder = tmp_path / "srv"
    backend = sqlite_backend(folder)
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


AUTH_INI = ROOT / "deploy" / "mlflow_basic_auth.ini"  # what docker-compose's server reads


@pytest.fixture
def auth_server(tmp_path_factory):
    """`mlflow server --app-name basic-auth` on a fresh PostgreSQL database (runs and users both),
    with deploy/mlflow_basic_auth.ini pointed at it and secrets made up for this test."""
    import configparser

    folder = tmp_path_factory.mktemp("auth-server")
    with fresh_pg_database() as uri:
        ini = configparser.ConfigParser()
        ini.read(AUTH_INI)
        ini["mlflow"]["database_uri"] = uri
        with open(folder / "basic_auth.ini", "w") as f:
            ini.write(f)
        admin = secrets.token_urlsafe(18)
        env = {"MLFLOW_AUTH_ADMIN_PASSWORD": admin, "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
        with servers.tracking_server(uri, folder / "artifacts", folder / "server.log", auth_config=folder / "basic_auth.ini", env=env) as srv:
            yield srv, admin


@pytest.mark.postgres
def test_only_the_promoter_moves_an_alias_on_a_basic_auth_server(auth_server, tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    server, admin_password = auth_server
    name = "ames-auth"
    users = {"ci": secrets.token_urlsafe(16), "reader": secrets.token_urlsafe(16)}
    # The admin sets it up: two users, the registered model, EDIT on it for the promoter only.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
    auth = AuthServiceClient(server.url)
    for user, password in users.items():
        auth.create_user(user, password)
    _client(server.url).create_registered_model(name)
    auth.grant_user_permission("ci", "registered_model", name, "EDIT")

    cfg = registry_project(tmp_path / "p", {"experiment": "auth-test", "registered_model": name})
    as_user = {u: {"MLFLOW_TRACKING_USERNAME": u, "MLFLOW_TRACKING_PASSWORD": p} for u, p in users.items()}
    run = cli("run", "--config", str(cfg), "--no-promote", "--json", cwd=cfg.parent, uri=server.url, extra_env=as_user["ci"])
    assert run.returncode == 0, run.stderr[-2000:]
    version = json.loads(run.stdout)["model"]["version"]
    client = _client(server.url)

    def state():
        mv = client.get_model_version(name, version)
        return dict(client.get_registered_model(name).aliases), {k: v for k, v in mv.tags.items() if k.startswith(("approval.", "promoted."))}

    before = state()
    assert before == ({}, {})
    needs = f"which needs EDIT permission on registered model '{name}'; nothing was changed by this call"
    # The reader can read (list, audit) but not promote, approve or move an alias by hand.
    for args, endpoint in ((("promote", version), "registered-models/alias"), (("approve", version), "model-versions/set-tag")):
        r = cli(*args, "--config", str(cfg), cwd=cfg.parent, uri=server.url, extra_env=as_user["reader"])
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.strip().splitlines() == [
            f"error: tracking server {server.url}: permission denied to user 'reader' for /api/2.0/mlflow/{endpoint}, {needs}"]
        assert state() == before
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", users["reader"])
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403") as e:
        client.set_registered_model_alias(name, "staging", version)
    assert e.value.error_code == "PERMISSION_DENIED" and state() == before
    wrong = cli("list", "--config", str(cfg), cwd=cfg.parent, uri=server.url,
                extra_env={"MLFLOW_TRACKING_USERNAME": "reader", "MLFLOW_TRACKING_PASSWORD": "not-the-password"})
    assert wrong.returncode == 2 and "user 'reader' not authenticated (401 on " in wrong.stderr

    # The promoter's gated promotion moves it, on record; the reader's audit agrees.
    promoted = cli("promote", version, "--config", str(cfg), cwd=cfg.parent, uri=server.url, extra_env=as_user["ci"])
    assert promoted.returncode == 0, promoted.stderr
    assert {a: str(v) for a, v in client.get_registered_model(name).aliases.items()} == {"staging": version}
    audit = cli("audit", "--config", str(cfg), "--json", cwd=cfg.parent, uri=server.url, extra_env=as_user["reader"])
    assert audit.returncode == 0, audit.stdout + audit.stderr
    staging = next(r for r in json.loads(audit.stdout)["aliases"] if r["alias"] == "staging")
    assert staging["status"] == "ok" and staging["detail"].startswith("promote by ci at ")


def test_unreachable_server_fails_fast_in_one_line(tmp_path):
    cfg = write_project(tmp_path / "p", store=False)
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
    ours = servers.tracking_server("postgresql://x", Path("/tmp/a"), Path("/tmp/log"), auth_config=AUTH_INI).args
    flags = {a for a in ours if a.startswith("--")}
    assert flags <= set(mlflow_cmd), f"compose's mlflow server lacks {flags - set(mlflow_cmd)}"
    assert mlflow_cmd[:2] == ["mlflow", "server"]
    value = dict(zip(mlflow_cmd, mlflow_cmd[1:]))
    assert value["--backend-store-uri"].startswith("postgresql+psycopg2://")
    assert value["--default-artifact-root"] == "mlflow-artifacts:/"
    assert value["--artifacts-destination"].startswith("s3://")
    assert "5000:5000" in services["mlflow"]["ports"]
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"].startswith("http://minio:9000")
    assert servers.SERVER_ENV.items() <= services["mlflow"]["environment"].items()  # the same server settings
    # The basic-auth app as the permission test runs it: the same ini, its secrets from files.
    assert value["--app-name"] == "basic-auth"
    mount = next(v for v in services["mlflow"]["volumes"] if v.endswith(":ro"))
    src, dst, _ = mount.split(":")
    assert (ROOT / src).resolve() == AUTH_INI and services["mlflow"]["environment"]["MLFLOW_AUTH_CONFIG_PATH"] == dst
    assert set(services["mlflow"]["secrets"]) == {"mlflow_admin_password", "mlflow_flask_secret_key"}
    assert all("file" in spec and spec["file"].startswith("./secrets/") for spec in compose["secrets"].values())
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()
    text = (ROOT / "docker-compose.yaml").read_text() + AUTH_INI.read_text()
    assert "MLFLOW_AUTH_ADMIN_PASSWORD:" not in text and "admin_password =" not in text  # no password in either file
    serving = services["serving"]
    served = servers.model_server("m", Path("/tmp/log")).args
    assert "models serve" in " ".join(served) and "models serve" in serving["command"][-1]
    assert "--env-manager local" in serving["command"][-1] and "--env-manager local" in " ".join(served)
    assert "5001:5001" in serving["ports"]
    docker = (ROOT / "Dockerfile").read_text()
    assert "EXPOSE 5001" in docker and "mlflow models serve" in docker and "--env-manager local" in docker
    assert "/ping" in docker  # the health path the tests wait on

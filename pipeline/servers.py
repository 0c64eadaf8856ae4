"""Real servers on loopback for tests and the serving gate: `mlflow server`, `mlflow models serve`.

Each starts in its own process group on a free 127.0.0.1 port, is waited for on its health
endpoint, and is stopped with its workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.errors import PipelineError


class ServerError(PipelineError):
    """A server did not start or answer in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlflow_bin() -> str:
    path = Path(sys.executable).parent / "mlflow"
    return str(path) if path.exists() else "mlflow"


class Server:
    """A subprocess serving HTTP on 127.0.0.1:port, waited for on `health_path`."""

    def __init__(
        self,
        args: list[str],
        port: int,
        health_path: str,
        log: Path,
        env: dict[str, str] | None = None,
        name: str = "server",
    ):
        self.args, self.port, self.health_path, self.log, self.name = args, port, health_path, Path(log), name
        # The server's own helpers (uvicorn, gunicorn) live beside this Python.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "PATH": path, **(env or {})}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self.args,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} on {self.url} exited with {self.proc.returncode} while starting: {self.tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + self.health_path, timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise ServerError(
            f"{self.name} on {self.url} did not answer {self.health_path} within {timeout:.0f} s: {self.tail()}"
        )

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and every worker it started (its whole process group)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> Server:
        # `with server.start(timeout=...)` and `with server` both work; never start twice.
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# What the harness's tracking server runs without: MLflow's job execution (GenAI scorers,
# prompt optimisation) starts a job runner and seven huey consumers beside the server, about
# 7 s of CPU at every start here, for jobs the harness never submits. docker-compose.yaml's
# server is set the same way (tests/test_servers.py checks it).
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def tracking_server(
    backend_uri: str,
    artifacts: Path,
    log: Path,
    port: int | None = None,
    workers: int = 1,
    auth_config: Path | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    """`mlflow server` with its artifacts served through it (--serve-artifacts); with
    `auth_config` (a basic_auth.ini), MLflow's basic-auth app: users, passwords, permissions.
    Its secrets (MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY) come in `env`.
    One uvicorn worker serves one client's calls; more `workers` for many clients at once
    (each imports MLflow's app and opens its stores: ~3 s of CPU and 2 s more to start here)."""
    port = port or free_port()
    args = [
        _mlflow_bin(),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        backend_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        Path(artifacts).resolve().as_uri(),
        "--default-artifact-root",
        "mlflow-artifacts:/",
        "--workers",
        str(workers),
    ]
    env = {**SERVER_ENV, **(env or {})}
    if auth_config is not None:
        args += ["--app-name", "basic-auth"]
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(Path(auth_config).resolve())
    return Server(args, port, "/health", log, env=env, name="mlflow tracking server")


def model_server(model_uri: str, log: Path, port: int | None = None, env: dict[str, str] | None = None) -> Server:
    """`mlflow models serve` in this environment (no conda or virtualenv creation)."""
    port = port or free_port()
    args = [
        _mlflow_bin(),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # Single requests are served on one thread (see the latency gate).
    return Server(args, port, "/ping", log, env={"OMP_NUM_THREADS": "1", **(env or {})}, name="model server")

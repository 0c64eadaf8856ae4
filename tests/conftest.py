"""Shared helpers for the harness's own tests: throwaway projects and stores in tmp_path."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

# Under pytest-xdist, workers carry PYTEST_XDIST_* variables; a gate run started from a test
# would inherit them, and pytest-benchmark then disables itself (the latency gates skip).
# A user's MLFLOW_TRACKING_URI or PIPELINE_CONFIG must not point the tests at their store.
for _var in [v for v in os.environ if v.startswith("PYTEST_XDIST") or v in ("MLFLOW_TRACKING_URI", "PIPELINE_CONFIG")]:
    del os.environ[_var]

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "pipeline_config.yaml"
MODEL_CONFIG = ROOT / "configs" / "model_config.yaml"
AMES = ROOT / "data" / "raw" / "ames.csv"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def write_project(folder: Path, overrides: dict[str, Any] | None = None, model: dict[str, Any] | None = None) -> Path:
    """A copy of the Ames config in `folder`, its MLflow store inside `folder`; returns the config path.

    `overrides` are merged into the pipeline config, `model` into the model config's `model`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["data"]["path"] = str(AMES)
    cfg["gate_tests"] = str(ROOT / "model_tests")
    cfg["mlflow"]["tracking_uri"] = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    cfg["mlflow"]["artifact_location"] = str(folder / "mlruns" / "artifacts")
    cfg = deep_merge(cfg, overrides or {})
    model_cfg = yaml.safe_load(MODEL_CONFIG.read_text())
    if model:
        model_cfg["model"] = deep_merge(model_cfg["model"], model)
    (folder / "model_config.yaml").write_text(yaml.safe_dump(model_cfg, sort_keys=False))
    cfg["model_config"] = "model_config.yaml"
    path = folder / "pipeline_config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def store_state(folder: Path) -> str | tuple[int, int]:
    """'absent' when no store file exists, else (runs, model versions) in it."""
    import sqlite3

    db = folder / "mlruns" / "mlflow.db"
    if not db.exists():
        return "absent"
    con = sqlite3.connect(db)
    try:
        runs = con.execute("select count(*) from runs").fetchone()[0]
        versions = con.execute("select count(*) from model_versions").fetchone()[0]
    finally:
        con.close()
    return runs, versions


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: a subprocess, no standard input."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None) if env is None or "MLFLOW_TRACKING_URI" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=full_env, capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A throwaway copy of the Ames project config with its own embedded store."""
    return write_project(tmp_path / "project")

"""Gates under pytest-xdist (-n 2): evidence collected once by the controller, promotion still correct.

Workers run the gates; each report carries its gate identity and figures
(user_properties) to the controller, which alone writes the evidence and promotes.
pytest-benchmark disables itself under xdist, so the latency gates skip there: a run
whose environment requires them is refused, one whose environment does not is promoted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, write_project

from pipeline import config as config_mod
from pipeline import data as data_mod
from pipeline import figures, registry, train

pytestmark = pytest.mark.slow

NAME = "ames-price"
METRICS = ["r2", "mae", "rmse", "mape"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xdist")
    cfg = write_project(folder, {"gates": {"latency": {"single_row_rounds": 20, "batch_rows": 200}}})
    raw = yaml.safe_load(cfg.read_text())
    raw["environments"]["dev"]["required_gates"] = list(METRICS)
    raw["environments"]["staging"]["required_gates"] = [*METRICS, "single_row_latency", "batch_throughput"]
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings = config_mod.load(cfg, "staging")
    dataset = data_mod.load(settings)
    parts = data_mod.split(settings, dataset)
    model = train.fit(settings, dataset.features, parts.train)
    metrics = figures.regression_metrics(parts.eval[settings.data.target].to_numpy(), model.predict(parts.eval[dataset.features.columns]))
    versions = [registry.log_candidate(settings, model, dataset, parts.eval, metrics).version for _ in range(2)]
    return folder, cfg, versions


def gates_n2(folder: Path, cfg: Path, version: str, env: str, out: Path) -> subprocess.CompletedProcess:
    env_vars = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PIPELINE_CONFIG", "PYTEST_ADDOPTS")}
    env_vars["OMP_NUM_THREADS"] = "1"
    tests = [str(ROOT / "model_tests" / f) for f in ("test_metrics.py", "test_latency.py")]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-m", "gates", "-n", "2", "--model-uri", f"models:/{NAME}/{version}",
         "--pipeline-config", str(cfg), "--env", env, "--evidence-dir", str(out), "--promote", "-p", "no:cacheprovider", "-q"],
        cwd=folder, env=env_vars, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )


def test_xdist_run_writes_one_evidence_with_every_gate_and_promotes_when_nothing_required_is_missing(store):
    folder, cfg, (v1, _) = store
    out = folder / "dev-run"
    proc = gates_n2(folder, cfg, v1, "dev", out)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "bringing up nodes" in proc.stdout  # xdist workers ran the gates
    files = sorted(out.glob("evidence-*.json"))
    assert [f.name for f in files] == [f"evidence-{NAME}-v{v1}-dev.json"]
    doc = json.loads(files[0].read_text())
    gates = {g["gate"]: g for g in doc["gates"]}
    # Every gate once, with the figure its worker measured (latency gates skip under xdist).
    assert sorted(gates) == sorted([*METRICS, "single_row_latency", "batch_throughput"])
    assert all(gates[g]["outcome"] == "passed" and gates[g]["figures"][0]["value"] > 0 for g in METRICS)
    assert gates["single_row_latency"]["outcome"] == gates["batch_throughput"]["outcome"] == "skipped"
    assert doc["status"] == "passed"
    assert f"promoted {NAME} version {v1} to @dev" in proc.stdout
    client = registry.connect(config_mod.load(cfg, "dev"))
    assert str(client.get_registered_model(NAME).aliases["dev"]) == v1


def test_xdist_run_is_refused_where_the_skipped_latency_gates_are_required(store):
    folder, cfg, (_, v2) = store
    out = folder / "staging-run"
    proc = gates_n2(folder, cfg, v2, "staging", out)
    assert proc.returncode == 1
    assert len(list(out.glob("evidence-*.json"))) == 1
    assert (f"promotion refused: {NAME} version {v2}: staging gates did not pass: "
            "gates skipped: batch_throughput, single_row_latency") in proc.stdout
    client = registry.connect(config_mod.load(cfg, "staging"))
    assert "staging" not in (client.get_registered_model(NAME).aliases or {})

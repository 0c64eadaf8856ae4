"""The installed plugin serves a project that is not this repository.

A second project in a temporary folder: its own small data set (its own target and one
categorical column), its own config and model config, one gate file of its own, no
conftest.py and nothing copied from here. Everything it uses (options, markers, fixtures,
the collection check, the evidence) must come from the `pytest11` entry point alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

TARGET = "yield_kg"
GATES = ["r2", "mae"]

GATE_FILE = '''
"""This project's own quality gates: explained variance and absolute error in kilograms."""

import numpy as np
import pytest

pytestmark = [pytest.mark.gates, pytest.mark.metrics]


def test_r2(eval_predictions, thresholds, record_gate):
    y, p = eval_predictions.y, eval_predictions.p
    r2 = 1.0 - float(np.sum((y - p) ** 2)) / float(np.sum((y - y.mean()) ** 2))
    record_gate("r2", r2, thresholds.r2, f"{len(y)} held-out plots")
    assert thresholds.r2.holds(r2), thresholds.r2.explain("R2", r2)


def test_mae(eval_predictions, thresholds, record_gate):
    mae = float(np.mean(np.abs(eval_predictions.y - eval_predictions.p)))
    record_gate("mae", mae, thresholds.mae)
    assert thresholds.mae.holds(mae), thresholds.mae.explain("MAE", mae)
'''

ORPHAN_GATE = '''
import pytest


@pytest.mark.gates
def test_orphan_gate():
    raise AssertionError("the plugin must refuse this gate at collection, before it runs")
'''


def _thresholds() -> dict:
    """Every threshold key the config schema requires; only r2 and mae are gated here."""
    loose = {"max": 1e9}
    th = {k: dict(loose) for k in (
        "contract_violations", "train_eval_overlap", "feature_drift", "champion_mae_delta",
        "slice_error_ratio", "residual_skew", "residual_excess_kurtosis", "residual_spread_ratio",
        "noise_prediction_change", "nonfinite_predictions", "directional_drop", "prediction_difference",
        "single_row_p99_ms", "rmse", "mape")}
    th["durbin_watson"] = {"min": 0, "max": 4}
    th["batch_throughput"] = {"min": 0}
    th["r2"] = {"min": 0.9}
    th["mae"] = {"max": 15, "unit": "kg"}
    return th


def _write_project(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    n = 300
    zone = rng.choice(["north", "south", "east"], size=n)
    area = rng.uniform(20, 200, n).round(1)
    age = rng.integers(0, 40, n)
    rain = rng.normal(600, 80, n).round(0)
    effect = pd.Series(zone).map({"north": 30.0, "south": -10.0, "east": 5.0}).to_numpy()
    y = 120 + 2.5 * area - 1.2 * age + 0.05 * rain + effect + rng.normal(0, 8, n)
    assert y.min() > 0
    pd.DataFrame({"zone": zone, "area_m2": area, "orchard_age": age, "rain_mm": rain, TARGET: y.round(2)}).to_csv(
        folder / "crops.csv", index=False)
    (folder / "model.yaml").write_text(yaml.safe_dump({"model": {"type": "ridge", "log_target": False, "params": {"alpha": 1.0}}}))
    cfg = {
        "model_config": "model.yaml",
        "default_env": "dev",
        "seed": 7,
        "gate_tests": ".",
        "data": {"path": "crops.csv", "target": TARGET, "contract": {"min_rows": 100, "ranges": {TARGET: {"min": 0}}}},
        "split": {"test_size": 0.25, "seed": 7},
        "mlflow": {"tracking_uri": "sqlite:///mlruns/mlflow.db", "artifact_location": "mlruns/artifacts",
                   "experiment": "crops", "registered_model": "crop-yield"},
        "environments": {"dev": {"alias": "dev", "required_gates": GATES, "thresholds": _thresholds()}},
    }
    (folder / "crops_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (folder / "test_quality.py").write_text(textwrap.dedent(GATE_FILE))
    # Only so that pytest does not look above the folder for a rootdir: no markers, no options.
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder / "crops_config.yaml"


def _pytest(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_CONFIG", "MLFLOW_TRACKING_URI", "PYTEST_ADDOPTS")}
    full_env["OMP_NUM_THREADS"] = "1"
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=folder, env=full_env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("elsewhere") / "crops"
    return folder, _write_project(folder)


def test_the_project_is_standalone(elsewhere):
    folder, _ = elsewhere
    assert not list(folder.rglob("conftest.py"))
    assert not [p for p in folder.parents if (p / "conftest.py").exists()]
    assert (folder / "pytest.ini").read_text() == "[pytest]\n"


def test_help_lists_the_plugin_options(elsewhere):
    folder, _ = elsewhere
    r = _pytest(folder, "--help")
    assert r.returncode == 0, r.stderr
    assert "model quality gates" in r.stdout
    for opt in ("--model-uri", "--env", "--promote", "--pipeline-config", "--evidence-dir"):
        assert opt in r.stdout, opt


def test_gates_run_with_the_plugin_fixtures_and_write_evidence(elsewhere):
    folder, cfg = elsewhere
    r = _pytest(folder, "-m", "gates", "--strict-markers", "--evidence-dir", "reports",
                env={"PIPELINE_CONFIG": str(cfg)})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "2 passed" in r.stdout, out
    assert "model gates (dev)" in r.stdout, out
    evidence = json.loads((folder / "reports" / "evidence-dev.json").read_text())
    assert evidence["status"] == "passed", evidence["reasons"]
    assert evidence["reasons"] == []
    assert evidence["environment"] == "dev"
    assert evidence["required_gates"] == GATES
    assert evidence["model"]["fitted_in_session"] is True
    gates = {g["gate"]: g for g in evidence["gates"]}
    assert sorted(gates) == sorted(GATES)
    for name in GATES:
        g = gates[name]
        assert g["outcome"] == "passed", g
        assert g["family"] == "metrics"
        assert g["nodeids"] == [f"test_quality.py::test_{name}"]
        (fig,) = g["figures"]
        assert fig["name"] == name and isinstance(fig["value"], float)
        assert fig["threshold"]["env"] == "dev"
    assert gates["r2"]["figures"][0]["value"] >= 0.9
    assert gates["r2"]["figures"][0]["detail"] == "75 held-out plots"
    assert gates["mae"]["figures"][0]["threshold"]["text"] == "<= 15 kg"
    # This project's own data went through the contract and the digests.
    assert evidence["data_sha256"] and evidence["eval_data_sha256"]
    # The gated run never touched a registry: a model fitted in session is not registered.
    assert not (folder / "mlruns").exists()


def test_markers_come_from_the_plugin(elsewhere):
    folder, cfg = elsewhere
    r = _pytest(folder, "--markers", "--pipeline-config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "@pytest.mark.gates:" in r.stdout
    assert "@pytest.mark.metrics:" in r.stdout


def test_a_gate_without_a_family_is_a_usage_error(elsewhere, tmp_path):
    _, cfg = elsewhere
    folder = tmp_path / "orphan"
    folder.mkdir()
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_orphan.py").write_text(ORPHAN_GATE)
    r = _pytest(folder, "--strict-markers", "--pipeline-config", str(cfg))
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ERROR: test_orphan.py::test_orphan_gate: a gate needs exactly one family marker of data, metrics"), r.stderr
    assert lines[0].endswith("; found none"), r.stderr
    assert "passed" not in r.stdout

"""The installed package serves a project that is not this repository, without copying a file.

A second project made by pytester in a temporary folder: its own small data set (its own
target and one categorical column), ONE config file (model settings inline), and ONE test
file that selects two standard gates from the installed suite by import and adds a gate of
its own with its own threshold key. No conftest.py, nothing copied from here. Options,
markers, fixtures, the collection checks and the evidence come from the `pytest11` entry
point alone. The runs are in process (pytester): a subprocess would add nothing here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

# pytester restores sys.modules after each in-process run: what the gate runs import is
# imported here first, so that every run shares one copy of each library's classes.
import pipeline.gates.metrics  # noqa: E402,F401
import pipeline.gating  # noqa: E402,F401
import pipeline.report  # noqa: E402,F401
import pipeline.session  # noqa: E402,F401
import pipeline.train  # noqa: E402,F401
import sklearn.linear_model  # noqa: E402,F401
from pipeline import registry  # noqa: E402,F401

pipeline.report._plt()
registry.store.connect  # noqa: B018  (mlflow itself is imported when a run first needs it)

TARGET = "yield_kg"
GATES = ["mae", "median_absolute_error", "r2"]

TEST_FILE = '''
"""This project's quality gates: two standard ones, selected, and one of its own."""

import numpy as np

from pipeline import checks
from pipeline.gates import family
from pipeline.gates.metrics import test_mae, test_r2  # noqa: F401  the standard gates this project runs


@checks.check(0)
def median_absolute_error(y, p):
    return checks.Finding(float(np.median(np.abs(y - p))), "median absolute error", f"{len(y)} held-out plots")


@family("metrics")
def test_median_absolute_error(eval_predictions, gate):
    finding = median_absolute_error(eval_predictions.y, eval_predictions.p)
    assert gate.holds(finding), gate.explain(finding)
'''

ORPHAN_GATE = '''
import pytest


@pytest.mark.gates
def test_orphan_gate():
    raise AssertionError("the plugin must refuse this gate at collection, before it runs")
'''


def thresholds(**over) -> dict:
    th = {"r2": {"min": 0.9}, "mae": {"max": 15, "unit": "kg"}, "median_absolute_error": {"max": 12, "unit": "kg"}}
    th.update(over)
    return {k: v for k, v in th.items() if v is not None}


def config(folder: Path, **over) -> dict:
    cfg = {
        "default_env": "dev",
        "seed": 7,
        "gate_tests": ".",
        "data": {"path": "crops.csv", "target": TARGET, "contract": {"min_rows": 100, "ranges": {TARGET: {"min": 0}}}},
        "split": {"test_size": 0.25, "seed": 7},
        "model": {"type": "ridge", "log_target": False, "params": {"alpha": 1.0}},
        "mlflow": {"tracking_uri": "sqlite:///mlruns/mlflow.db", "artifact_location": "mlruns/artifacts",
                   "experiment": "crops", "registered_model": "crop-yield"},
        "environments": {"dev": {"thresholds": thresholds()}},
    }
    cfg.update(over)
    return cfg


@pytest.fixture
def crops(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The second project: crops.csv, crops.yaml, test_quality.py, a bare pytest.ini."""
    monkeypatch.delenv("PIPELINE_CONFIG", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rng = np.random.default_rng(7)
    n = 300
    zone = rng.choice(["north", "south", "east"], size=n)
    area = rng.uniform(20, 200, n).round(1)
    age = rng.integers(0, 40, n)
    rain = rng.normal(600, 80, n).round(0)
    effect = pd.Series(zone).map({"north": 30.0, "south": -10.0, "east": 5.0}).to_numpy()
    y = 120 + 2.5 * area - 1.2 * age + 0.05 * rain + effect + rng.normal(0, 8, n)
    pd.DataFrame({"zone": zone, "area_m2": area, "orchard_age": age, "rain_mm": rain, TARGET: y.round(2)}).to_csv(
        pytester.path / "crops.csv", index=False)
    write_config(pytester)
    pytester.makepyfile(test_quality=TEST_FILE)
    # Only so that pytest does not look above the folder for a rootdir: no markers, no options.
    pytester.makefile(".ini", pytest="[pytest]\n")
    return pytester


def write_config(pytester: pytest.Pytester, **over) -> Path:
    path = pytester.path / "crops.yaml"
    path.write_text(yaml.safe_dump(config(pytester.path, **over), sort_keys=False))
    return path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--pipeline-config", "crops.yaml", *args)


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts}


def usage_line(result: pytest.RunResult) -> str:
    """The one line a usage error prints: pytest exits 4 and no gate ran."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    lines = [ln for ln in result.errlines if ln.strip()]
    assert len(lines) == 1, result.errlines
    assert "passed" not in result.stdout.str() and "failed" not in result.stdout.str()
    return lines[0].removeprefix("ERROR: ")


def test_the_project_is_standalone(crops):
    assert files(crops.path) == {"crops.csv", "crops.yaml", "test_quality.py", "pytest.ini"}
    assert (crops.path / "pytest.ini").read_text().strip() == "[pytest]"
    assert not [p for p in [crops.path, *crops.path.parents] if (p / "conftest.py").exists()]


def test_help_lists_the_plugin_options(crops):
    r = crops.runpytest("--help")
    assert r.ret == 0
    out = r.stdout.str()
    assert "model quality gates" in out
    for opt in ("--model-uri", "--env", "--promote", "--pipeline-config", "--eval-data", "--evidence-dir"):
        assert opt in out, opt


def test_standard_and_own_gates_run_and_the_evidence_holds_them(crops):
    r = run(crops, "-m", "gates", "--strict-markers", "--evidence-dir", "reports")
    r.assert_outcomes(passed=3)
    assert "model gates (dev)" in r.stdout.str()
    evidence = json.loads((crops.path / "reports" / "evidence-dev.json").read_text())
    assert evidence["status"] == "passed", evidence["reasons"]
    assert evidence["required_gates"] == GATES
    assert evidence["model"]["fitted_in_session"] is True
    gates = {g["gate"]: g for g in evidence["gates"]}
    assert sorted(gates) == GATES
    for name, g in gates.items():
        assert g["outcome"] == "passed", g
        assert g["family"] == "metrics"
        assert g["nodeids"] == [f"test_quality.py::test_{name}"]
        assert g["figure"]["name"] == name and isinstance(g["figure"]["value"], float)
        assert g["figure"]["threshold"]["env"] == "dev"
    own = gates["median_absolute_error"]["figure"]
    assert 0 < own["value"] <= 12
    assert own["threshold"]["text"] == "<= 12 kg" and own["detail"] == "75 held-out plots"
    assert gates["r2"]["figure"]["value"] >= 0.9
    assert evidence["data_sha256"] and evidence["eval_data_sha256"]
    # A model fitted in session is not registered: the run never touched a registry.
    assert not (crops.path / "mlruns").exists()


def test_a_failing_own_gate_names_its_figure_threshold_and_environment(crops):
    write_config(crops, environments={"dev": {"thresholds": thresholds(median_absolute_error={"max": 0.5, "unit": "kg"})}})
    r = run(crops, "-m", "gates", "--evidence-dir", "reports")
    r.assert_outcomes(passed=2, failed=1)
    evidence = json.loads((crops.path / "reports" / "evidence-dev.json").read_text())
    g = {g["gate"]: g for g in evidence["gates"]}["median_absolute_error"]
    assert g["outcome"] == "failed"
    assert g["message"].startswith("median absolute error ") and "> 0.5 kg" in g["message"] and g["message"].endswith("(dev)")
    assert evidence["status"] == "failed"


def test_markers_come_from_the_plugin(crops):
    r = run(crops, "--markers")
    assert r.ret == 0
    assert "@pytest.mark.gates:" in r.stdout.str() and "@pytest.mark.metrics:" in r.stdout.str()


def test_collect_only_fits_nothing_and_writes_nothing(crops):
    before = files(crops.path)
    r = run(crops, "-m", "gates", "--collect-only", "-q")
    assert r.ret == 0
    assert "3 tests collected" in r.stdout.str()
    assert files(crops.path) == before


def test_a_gate_without_a_family_is_a_usage_error(crops):
    crops.makepyfile(test_orphan=ORPHAN_GATE)
    line = usage_line(run(crops, "--strict-markers"))
    assert line.startswith("test_orphan.py::test_orphan_gate: a gate needs exactly one family marker of data, metrics")
    assert line.endswith("; found none")


@pytest.mark.parametrize("gate, threshold, expect", [
    ("r2", {"min": 5}, "environments.dev.thresholds.r2: impossible threshold: min 5 is above the highest possible figure 1"),
    ("mae", {"max": -5}, "environments.dev.thresholds.mae: impossible threshold: max -5 is below the lowest possible figure 0"),
    ("median_absolute_error", {"max": -1},
     "environments.dev.thresholds.median_absolute_error: impossible threshold: max -1 is below the lowest possible figure 0"),
    ("mae", {"max": math.nan}, "environments.dev.thresholds.mae.max: Input should be a finite number"),
    ("r2", {"min": math.inf}, "environments.dev.thresholds.r2.min: Input should be a finite number"),
    ("mae", None, "environments.dev.thresholds.mae: missing: the gate test_quality.py::test_mae has no threshold at dev"),
    ("rmse", {"max": 20}, "environments.dev.thresholds.rmse: required at dev, but no collected test is that gate"),
])
def test_a_bad_threshold_stops_before_any_gate_runs(crops, gate, threshold, expect):
    write_config(crops, environments={"dev": {"thresholds": thresholds(**{gate: threshold})}})
    line = usage_line(run(crops, "-m", "gates", "--evidence-dir", "reports"))
    assert line.startswith(str(crops.path / "crops.yaml") + ": "), line
    assert expect in line, line
    assert not (crops.path / "reports").exists()


def test_a_threshold_not_required_needs_no_gate(crops):
    write_config(crops, environments={"dev": {"thresholds": thresholds(rmse={"max": 20, "required": False})}})
    run(crops, "-m", "gates").assert_outcomes(passed=3)


def test_environments_extend_one_another_and_declare_their_strictness(crops):
    envs = {"dev": {"strictness": 0, "thresholds": thresholds()},
            "prod": {"extends": "dev", "strictness": 1, "thresholds": {"mae": {"max": 0.5, "unit": "kg"}}}}
    write_config(crops, environments=envs)
    r = run(crops, "-m", "gates", "--env", "prod", "--evidence-dir", "reports")
    r.assert_outcomes(passed=2, failed=1)
    evidence = json.loads((crops.path / "reports" / "evidence-prod.json").read_text())
    th = {g["gate"]: g["figure"]["threshold"] for g in evidence["gates"]}
    assert th["mae"]["text"] == "<= 0.5 kg" and th["mae"]["env"] == "prod"
    assert th["r2"]["text"] == ">= 0.9" and th["r2"]["env"] == "prod"  # inherited, with its own environment's name
    envs["prod"]["strictness"] = 0
    write_config(crops, environments=envs)
    line = usage_line(run(crops, "-m", "gates", "--env", "prod"))
    assert "'dev' and 'prod' both have strictness 0" in line


@pytest.mark.parametrize("args, expect", [
    (["--env", "nope"], "environments: unknown environment 'nope' (from --env; known: dev)"),
    (["--pipeline-config", "missing.yaml"], "missing.yaml: config file not found"),
    (["--model-uri", "models:/nosuch/1"], "--model-uri models:/nosuch/1: no model registry at sqlite:///"),
    (["--model-uri", "no/such/folder"], "--model-uri no/such/folder: not an MLflow model folder"),
    (["--eval-data", "other.csv"], "--eval-data other.csv: column 'zone' of crops.csv is missing"),
    (["--eval-data", "absent.csv"], "--eval-data absent.csv: file not found"),
])
def test_a_bad_option_is_one_usage_line_and_writes_nothing(crops, args, expect):
    pd.DataFrame({"area_m2": [1.0], "orchard_age": [2], "rain_mm": [3.0], TARGET: [4.0], "colour": ["red"]}).to_csv(
        crops.path / "other.csv", index=False)
    before = files(crops.path)
    line = usage_line(run(crops, "-m", "gates", "--evidence-dir", "reports", *args))
    assert expect in line, line
    # No evidence, no report, no store; pytest-benchmark's empty storage folder is its own.
    assert files(crops.path) - {".benchmarks"} == before

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
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn.linear_model  # noqa: E402,F401
import yaml

# pytester restores sys.modules after each in-process run: what the gate runs import is
# imported here first, so that every run shares one copy of each library's classes.
import pipeline.gates.metrics  # noqa: E402,F401
import pipeline.gating  # noqa: E402,F401
import pipeline.report  # noqa: E402,F401
import pipeline.session  # noqa: E402,F401
import pipeline.train  # noqa: E402,F401
from pipeline import registry  # noqa: E402,F401
from pipeline.config import fmt_number as fmt

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


# ---------------------------------------------------------------- verdicts beyond pass and fail

# The same project with two more standard gates whose preconditions it may lack: a directional
# expectation, and a declared order of its rows for the autocorrelation gate.
MORE_GATES = '''
from pipeline.gates.residuals import test_residual_autocorrelation  # noqa: F401
from pipeline.gates.robustness import test_directional  # noqa: F401
'''
LAX = {"directional": {"max": 0.01}, "residual_autocorrelation": {"min": 1.5, "max": 2.5}}


def evidence_gates(folder: Path) -> tuple[dict, dict]:
    doc = json.loads((folder / "reports" / "evidence-dev.json").read_text())
    return doc, {g["gate"]: g for g in doc["gates"]}


def junit_skips(folder: Path) -> dict[str, str]:
    import xml.etree.ElementTree as ET

    root = ET.parse(folder / "gates.xml").getroot()
    return {tc.get("name").removeprefix("test_"): tc.find("skipped").get("message")
            for tc in root.iter("testcase") if tc.find("skipped") is not None}


def test_a_gate_the_environment_does_not_require_is_advisory_it_reports_and_never_fails_the_run(crops):
    write_config(crops, environments={"dev": {"thresholds": thresholds(
        median_absolute_error={"max": 0.5, "unit": "kg", "required": False})}})
    r = run(crops, "-m", "gates", "--evidence-dir", "reports", "--junitxml", "gates.xml")
    r.assert_outcomes(passed=2, xfailed=1)
    assert r.ret == 0
    doc, gates = evidence_gates(crops.path)
    g = gates["median_absolute_error"]
    assert doc["status"] == "passed" and g["outcome"] == "advisory", doc["reasons"]
    assert g["message"].startswith("advisory at dev (not required): median absolute error ") and "> 0.5 kg" in g["message"]
    assert junit_skips(crops.path)["median_absolute_error"].startswith("advisory at dev (not required): ")
    assert re.search(r"median_absolute_error\s+\S+ kg\s+<= 0.5 kg\s+advisory", r.stdout.str()), r.stdout.str()


def test_a_waiver_turns_one_required_failure_into_a_recorded_waiver_until_it_expires(crops):
    import datetime as dt

    today = dt.datetime.now(dt.UTC).date()
    failing = {"dev": {"thresholds": thresholds(median_absolute_error={"max": 0.5, "unit": "kg"})}}
    reason = "two plots mislabelled in the survey; relabelled by the next harvest"
    write_config(crops, environments=failing,
                 waivers=[{"gate": "median_absolute_error", "env": "dev", "reason": reason, "expires": str(today)}])
    r = run(crops, "-m", "gates", "--evidence-dir", "reports", "--junitxml", "gates.xml")
    r.assert_outcomes(passed=2, xfailed=1)
    doc, gates = evidence_gates(crops.path)
    g = gates["median_absolute_error"]
    assert r.ret == 0 and doc["status"] == "passed" and g["outcome"] == "waived", doc["reasons"]
    assert g["waiver"] == {"reason": reason, "expires": str(today)}
    assert g["message"].startswith(f"waived at dev until {today} ({reason}): median absolute error ")
    assert junit_skips(crops.path)["median_absolute_error"] == g["message"]
    assert g["figure"]["value"] > 0.5  # the figure is the real one, beside the waiver

    # The day after it expires, the gate fails as it would without it, and says why.
    write_config(crops, environments=failing, waivers=[
        {"gate": "median_absolute_error", "env": "dev", "reason": reason, "expires": str(today - dt.timedelta(days=1))}])
    r = run(crops, "-m", "gates", "--evidence-dir", "reports")
    r.assert_outcomes(passed=2, failed=1)
    doc, gates = evidence_gates(crops.path)
    assert doc["status"] == "failed" and gates["median_absolute_error"]["outcome"] == "failed"
    assert gates["median_absolute_error"]["message"].endswith(
        f"(dev); the waiver of median_absolute_error at dev expired on {today - dt.timedelta(days=1)} ({reason})")


@pytest.mark.parametrize("waiver, message", [
    ({"gate": "data_contract", "env": "dev", "reason": "x", "expires": "2030-01-01"}, "waivers.0.gate: data_contract can never be waived"),
    ({"gate": "rmse", "env": "dev", "reason": "x", "expires": "2030-01-01"}, "waivers.0.gate: 'rmse' has no threshold at dev, so there is nothing to waive"),
    ({"gate": "mae", "env": "qa", "reason": "x", "expires": "2030-01-01"}, "waivers.0.env: unknown environment 'qa' (known: dev)"),
    ({"gate": "mae", "env": "dev", "reason": "", "expires": "2030-01-01"}, "waivers.0.reason: String should have at least 1 character"),
    ({"gate": "mae", "env": "dev", "reason": "x", "expires": "soon"}, "waivers.0.expires: Input should be a valid date"),
])
def test_a_bad_waiver_is_one_usage_line(crops, waiver, message):
    th = thresholds(data_contract={"max": 0, "unit": "violations", "required": False})
    write_config(crops, environments={"dev": {"thresholds": th}}, waivers=[waiver])
    assert usage_line(run(crops, "-m", "gates")).startswith(f"{crops.path / 'crops.yaml'}: {message}")


def test_a_gate_without_its_precondition_is_not_applicable_and_fails_where_required_unless_the_config_says_so(crops):
    crops.makepyfile(test_more=MORE_GATES)
    write_config(crops, environments={"dev": {"thresholds": thresholds(**LAX)}})
    r = run(crops, "-m", "gates", "--evidence-dir", "reports")
    r.assert_outcomes(passed=3, failed=2)
    doc, gates = evidence_gates(crops.path)
    assert gates["directional"]["message"] == (
        "not applicable: no directional expectation configured (gates.robustness.directional); directional is required at dev "
        "and the config does not say the absence is expected (list the expectations under gates.robustness.directional, "
        "or set it to [] to say there are none)")
    assert gates["residual_autocorrelation"]["message"].startswith(
        "not applicable: the rows have no declared order (gates.residuals.order_by); residual_autocorrelation is required at dev")

    # Stated: no directional expectation, no order: both not applicable, never "passed", and the run holds.
    write_config(crops, environments={"dev": {"thresholds": thresholds(**LAX)}},
                 gates={"robustness": {"directional": []}, "residuals": {"order_by": None}})
    r = run(crops, "-m", "gates", "--evidence-dir", "reports")
    r.assert_outcomes(passed=5)
    doc, gates = evidence_gates(crops.path)
    assert doc["status"] == "passed", doc["reasons"]
    assert {g: gates[g]["outcome"] for g in ("directional", "residual_autocorrelation")} == {
        "directional": "not_applicable", "residual_autocorrelation": "not_applicable"}
    assert gates["residual_autocorrelation"]["message"] == "the rows have no declared order (gates.residuals.order_by)"
    assert gates["residual_autocorrelation"]["figure"]["value"] is None


def test_autocorrelation_is_judged_along_the_declared_order_not_the_files(crops):
    # The file sorted by area, and a model that misses a curve in area: neighbouring rows of
    # the file share their error, which is the sorting's doing. Along the planting date (random
    # with respect to area) there is no such thing.
    frame = pd.read_csv(crops.path / "crops.csv")
    rng = np.random.default_rng(11)
    frame[TARGET] = frame[TARGET] + 0.05 * (frame["area_m2"] - 110) ** 2
    frame["planted_day"] = rng.permutation(len(frame))
    frame.sort_values("area_m2").to_csv(crops.path / "sorted.csv", index=False)
    crops.makepyfile(test_more=MORE_GATES)
    band = {"residual_autocorrelation": {"min": 1.7, "max": 2.3}, "directional": {"max": 0.01, "required": False}}
    data = {**config(crops.path)["data"], "path": "sorted.csv", "id_columns": ["planted_day"]}  # not a feature
    dw = {}
    for order in (["area_m2"], ["planted_day"]):
        write_config(crops, data=data, environments={"dev": {"thresholds": thresholds(**band)}},
                     gates={"residuals": {"order_by": order}, "robustness": {"directional": []}})
        run(crops, "-m", "gates", "--evidence-dir", "reports")
        _, gates = evidence_gates(crops.path)
        dw[order[0]] = gates["residual_autocorrelation"]
    assert dw["area_m2"]["outcome"] == "failed" and dw["area_m2"]["figure"]["value"] < 1.7  # the file's order
    assert dw["planted_day"]["outcome"] == "passed", dw["planted_day"]["message"]
    assert dw["planted_day"]["figure"]["detail"].endswith("rows ordered by planted_day")


def test_a_metric_threshold_may_be_relative_to_the_baseline_and_the_ratio_travels_with_the_figure(crops):
    write_config(crops, environments={"dev": {"thresholds": thresholds(mae={"max_ratio_to_baseline": 0.2, "unit": "kg"})}})
    r = run(crops, "-m", "gates", "--evidence-dir", "reports", "--junitxml", "gates.xml")
    r.assert_outcomes(passed=3)
    doc, gates = evidence_gates(crops.path)
    fig = gates["mae"]["figure"]
    assert fig["ratio_to_baseline"] == pytest.approx(fig["value"] / fig["baseline"]) and 0 < fig["ratio_to_baseline"] < 0.2
    assert fig["threshold"]["text"] == "<= 0.2x baseline" and fig["threshold"]["max_ratio_to_baseline"] == 0.2
    assert re.search(rf"mae\s+\S+ kg \({re.escape(fmt(fig['ratio_to_baseline']))}x baseline\)\s+<= 0.2x baseline\s+passed", r.stdout.str())
    import xml.etree.ElementTree as ET

    props = {p.get("name"): p.get("value") for p in ET.parse(crops.path / "gates.xml").getroot().iter("property")}
    assert float(props["mae.baseline"]) == fig["baseline"] and float(props["mae.ratio_to_baseline"]) == fig["ratio_to_baseline"]

    # Tighter than this model can do: it fails, naming the ratio.
    write_config(crops, environments={"dev": {"thresholds": thresholds(mae={"max_ratio_to_baseline": 0.01, "unit": "kg"})}})
    r = run(crops, "-m", "gates", "--evidence-dir", "reports")
    r.assert_outcomes(passed=2, failed=1)
    _, gates = evidence_gates(crops.path)
    assert re.fullmatch(r"MAE \S+ kg is \S+x the baseline's > 0.01x; 75 evaluation rows; baseline .*\(dev\)", gates["mae"]["message"])
    # Only an error figure has a baseline.
    write_config(crops, environments={"dev": {"thresholds": thresholds(r2={"max_ratio_to_baseline": 0.5})}})
    assert usage_line(run(crops, "-m", "gates")) == (f"{crops.path / 'crops.yaml'}: environments.dev.thresholds.r2.max_ratio_to_baseline: "
                                                    "only an error figure has a baseline to compare with (mae, rmse, mape, log_loss, brier)")


TIMING_GATE = '''
"""A timing gate of this project's own, as a spec: scripted rounds stand in for a busy machine."""

import json
from pathlib import Path

import numpy as np

from pipeline import checks, timing
from pipeline.catalogue import export, spec
from pipeline.judge import measured_until_decided

SCRIPT = [json.loads(line) for line in Path("rounds.jsonl").read_text().splitlines()]


def _rounds(ms):
    c = np.full(40, ms / 1000.0)
    c[:2] *= 1.5  # a slower tail
    ref = np.full(40, 0.002)
    return timing.Rounds(c, c, ref, ref, None, np.zeros(40))


@spec("latency", needs=("benchmark",))
def scoring_latency(run):
    attempts = []

    def measure(first):
        if first:
            run.benchmark.pedantic(lambda: None, rounds=1)  # pytest-benchmark times the first attempt
        attempts.append(SCRIPT[len(attempts)])
        return checks.single_row_latency(_rounds(attempts[-1]), seed=1)

    return measured_until_decided(measure, run.threshold, run.settings.environment.inconclusive_reruns)


__all__ = export(__name__)
'''


def test_a_timing_gate_of_its_own_is_judged_on_intervals_rerun_when_inconclusive_and_refused_when_still_so(crops, monkeypatch):
    """20 ms with a 30 ms tail straddles a 25 ms bound (inconclusive); 10 ms holds. With reruns
    the gate measures again and the second attempt decides; without, inconclusive fails the run."""
    crops.makepyfile(test_timing=TIMING_GATE)
    lines = {"scoring_latency": {"max": 25, "unit": "ms"}}
    write_config(crops, environments={"dev": {"thresholds": thresholds(**lines)}})
    (crops.path / "rounds.jsonl").write_text("20\n10\n")
    r = run(crops, "-m", "gates", "--evidence-dir", "reports")
    r.assert_outcomes(passed=3, failed=1)
    doc, gates = evidence_gates(crops.path)
    g = gates["scoring_latency"]
    assert g["outcome"] == "inconclusive" and doc["status"] == "failed" and doc["reasons"] == ["gates inconclusive: scoring_latency"]
    assert g["message"].startswith("inconclusive: single-row p99 ") and "straddles <= 25 ms" in g["message"], g["message"]
    assert re.search(r"scoring_latency\s+\S+ ms \(\S+x reference\)\s+<= 25 ms\s+inconclusive", r.stdout.str())

    write_config(crops, environments={"dev": {"inconclusive_reruns": 2, "thresholds": thresholds(**lines)}})
    r = run(crops, "-m", "gates", "--evidence-dir", "reports")
    r.assert_outcomes(passed=4)
    _, gates = evidence_gates(crops.path)
    assert gates["scoring_latency"]["outcome"] == "passed" and gates["scoring_latency"]["figure"]["value"] < 25
    assert gates["scoring_latency"]["figure"]["detail"].endswith("attempt 2 of up to 3")

    # Only a gate timed against the reference workload takes a bound in its units.
    write_config(crops, environments={"dev": {"thresholds": thresholds(mae={"max": 15, "unit": "kg", "max_ratio_to_reference": 3}, **lines)}})
    assert usage_line(run(crops, "-m", "gates")) == (f"{crops.path / 'crops.yaml'}: environments.dev.thresholds.mae.max_ratio_to_reference: "
                                                    "only a timing gate is timed against the reference workload (single_row_latency)")


FAMILY_MODULE = '''
"""This project's own gate family: fairness across zones, as specs (no edit to the package)."""

import numpy as np

from pipeline import checks
from pipeline.catalogue import export, register_family, spec

register_family("fairness", "errors even across the zones the orchard serves")


@checks.check(1)
def zone_error_gap(run):
    """The worst zone's MAE over the best zone's."""
    pr = run.session.predictions
    zones = pr.frame["zone"].to_numpy()
    mae = {z: float(np.mean(np.abs(pr.y[zones == z] - pr.p[zones == z]))) for z in np.unique(zones)}
    worst, best = max(mae, key=mae.get), min(mae, key=mae.get)
    return checks.Finding(mae[worst] / mae[best], "zone MAE gap", f"{worst} {mae[worst]:.1f} kg vs {best} {mae[best]:.1f} kg")


zone_error_gap = spec("fairness")(zone_error_gap)
__all__ = export(__name__)
'''


def test_a_family_of_its_own_is_one_module_of_specs_and_one_threshold_line(crops):
    """A repository adds a family (its marker, its gates) with one module and one threshold line."""
    crops.makepyfile(test_fairness=FAMILY_MODULE)
    write_config(crops, environments={"dev": {"thresholds": thresholds(zone_error_gap={"max": 3})}})
    r = run(crops, "-m", "fairness", "--strict-markers", "--evidence-dir", "reports", "--junitxml", "gates.xml")
    r.assert_outcomes(passed=1, deselected=3)
    assert re.search(r"zone_error_gap\s+\S+\s+<= 3\s+passed", r.stdout.str()), r.stdout.str()
    doc, gates = evidence_gates(crops.path)
    g = gates["zone_error_gap"]
    assert g["family"] == "fairness" and g["nodeids"] == ["test_fairness.py::test_zone_error_gap"]
    assert 1 <= g["figure"]["value"] <= 3 and " kg vs " in g["figure"]["detail"]
    assert "zone_error_gap.figure" in {p.get("name") for p in junit_property_elements(crops.path / "gates.xml")}
    # Its bound is judged by the one judge, as a standard gate's: past it, the run fails naming it.
    write_config(crops, environments={"dev": {"thresholds": thresholds(zone_error_gap={"max": 1.0})}})
    r = run(crops, "-m", "fairness", "--evidence-dir", "reports")
    r.assert_outcomes(failed=1, deselected=3)
    _, gates = evidence_gates(crops.path)
    assert re.fullmatch(r"zone MAE gap [\d.]+ > 1; \w+ [\d.]+ kg vs \w+ [\d.]+ kg \(dev\)", gates["zone_error_gap"]["message"])


def junit_property_elements(path: Path) -> list:
    import xml.etree.ElementTree as ET

    return list(ET.parse(path).getroot().iter("property"))

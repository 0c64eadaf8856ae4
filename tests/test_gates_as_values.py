"""Gates as values: every standard gate is a spec whose wire is the one place that chooses its
rows, settings and baseline, so bench/minimal.py (the same wires without a pytest session)
and a gate run agree on every figure and verdict, on the Ames config and on one init wrote."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import settings as hypothesis_settings

from conftest import ROOT, real_csv, run_gates_in_process, write_project
from pipeline import catalogue
from pipeline import config as config_mod

# Timings differ run to run by nature; serving needs a model server (minimal.py does not start one).
NOT_TIMED = "gates and not latency and not serving"
VERDICT = {"passed": "passed", "not_applicable": "not_applicable", "failed": "failed", "advisory": "failed", "waived": "failed"}


def _minimal():
    spec = importlib.util.spec_from_file_location("bench_minimal", ROOT / "bench" / "minimal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _both(config, folder):
    run = run_gates_in_process(folder, config, "-m", NOT_TIMED)
    profile = hypothesis_settings.get_current_profile_name()
    hypothesis_settings.load_profile("ci")  # the gate run's examples (derandomized)
    try:
        out = _minimal().run(config, None, None, "staging", champion="none")
    finally:
        hypothesis_settings.load_profile(profile)
    return run, out


def _assert_identical(run, out):
    timed = {s.id for s in catalogue.standard() if s.family in ("latency", "serving")}
    compared = {g for g in out["verdicts"] if g not in timed}
    assert compared == set(run.gates) - timed and len(compared) == 24
    for gate in sorted(compared):
        recorded = run.gates[gate]
        assert VERDICT[recorded["outcome"]] == out["verdicts"][gate], (gate, recorded["outcome"], out["verdicts"][gate])
        assert recorded["figure"]["value"] == out["figures"][gate], (gate, recorded["figure"], out["figures"][gate])


@pytest.mark.slow
def test_the_minimal_script_and_the_gates_agree_on_the_ames_config(tmp_path):
    # A copy with its own empty store: the repository's store may hold a champion (after `make run`).
    run, out = _both(write_project(tmp_path / "project"), tmp_path / "ames")
    _assert_identical(run, out)
    assert run.gates["mae"]["figure"]["ratio_to_baseline"] < 0.3


@pytest.mark.slow
def test_the_minimal_script_and_the_gates_agree_on_a_config_init_wrote(tmp_path, capsys, monkeypatch):
    """init's metric bounds are ratios to the baseline: a script that forgot the baseline reported
    MAE, RMSE and MAPE failed where the gates passed them."""
    from pipeline import cli

    real_csv(tmp_path, "AER", "CPS1985")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--data", "CPS1985.csv", "--target", "wage", "--out", "project", "--json"]) == 0
    capsys.readouterr()
    config = tmp_path / "project" / "pipeline_config.yaml"
    assert config_mod.load(config, "staging").thresholds["mae"].max_ratio_to_baseline is not None
    run, out = _both(config, tmp_path / "run")
    _assert_identical(run, out)
    assert out["verdicts"]["mae"] == "passed"


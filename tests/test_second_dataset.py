"""Another tabular regression data set, by config alone: train, register and pass the real gates.

The data set is generated here (seeded): building energy use with its own target name,
numeric and categorical features with missing values, an id column to drop and a real
signal. Nothing Ames-specific may be needed to train it and gate it at `dev`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from threadpoolctl import threadpool_limits

from conftest import ROOT, run_gates_in_process, store_state
from pipeline import config, data

TARGET = "energy_kwh"
NUMERIC = ["floor_area_m2", "outdoor_temp_c", "occupants", "insulation_age_years"]
CATEGORICAL = ["building_type", "region"]
ID = "meter_id"
REQUIRED_DEV = ["data_contract", "train_eval_overlap", "r2", "mae", "rmse", "mape"]
IDENTICAL = ["column_order", "wider_dtypes", "refit_identical", "predict_twice_identical", "mlflow_roundtrip_identical",
             "batch_independent"]
SERVING = ["serving_matches_in_process", "serving_rejects_malformed", "serving_latency"]


def make_energy(n: int = 800, seed: int = 7) -> pd.DataFrame:
    """Monthly energy use of buildings: area x intensity, intensity from type, climate, age."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(300, 2500, n).round(1)
    temp = rng.normal(11, 7, n).round(1)
    occupants = rng.integers(1, 150, n)
    age = rng.uniform(0, 45, n).round(1)
    kind = rng.choice(["office", "retail", "warehouse", "residential"], n, p=[0.3, 0.25, 0.2, 0.25])
    region = rng.choice(["north", "south", "east", "west"], n)
    per_m2 = pd.Series(kind).map({"office": 12.0, "retail": 16.0, "warehouse": 6.0, "residential": 9.0}).to_numpy()
    climate = pd.Series(region).map({"north": 1.15, "south": 0.95, "east": 1.0, "west": 1.05}).to_numpy()
    # Linear in area, nonlinear in temperature (heating and cooling) and building age.
    intensity = per_m2 * climate * (1 + 0.0025 * (temp - 17) ** 2) * (1 + 0.008 * age)
    energy = area * intensity + 25.0 * occupants
    energy = energy * rng.lognormal(0.0, 0.08, n)
    frame = pd.DataFrame({
        ID: rng.permutation(np.arange(100_000, 100_000 + n)),
        "building_type": kind,
        "floor_area_m2": area,
        TARGET: energy.round(1),
        "outdoor_temp_c": temp,
        "region": region,
        "occupants": occupants,
        "insulation_age_years": age,
    })
    # Missing values in both kinds of column.
    for col, share in [("outdoor_temp_c", 0.05), ("insulation_age_years", 0.03), ("region", 0.05), ("building_type", 0.02)]:
        hit = rng.random(n) < share
        frame[col] = frame[col].astype(object if col in CATEGORICAL else float)
        frame.loc[hit, col] = None
    return frame


def threshold_set(**over) -> dict:
    """Thresholds for energy use in kWh: MAE/RMSE are sized from the ~8 % noise on a ~20,000 kWh median."""
    base = {
        "data_contract": {"max": 0, "unit": "violations"},
        "train_eval_overlap": {"max": 0, "unit": "rows"},
        "target_leak": {"max": 0.95},
        "feature_drift": {"max": 0.3},
        "r2": {"min": 0.8},
        "mae": {"max": 4000, "unit": "kWh"},
        "rmse": {"max": 6000, "unit": "kWh"},
        "mape": {"max": 20, "unit": "%"},
        "champion_mae": {"max": 0.10},
        "slice_error": {"max": 3.0},
        "residual_skew": {"max": 2.0},
        "residual_kurtosis": {"max": 10},
        "residual_spread": {"max": 3.0},
        "residual_autocorrelation": {"min": 1.5, "max": 2.5},
        # Use is proportional to floor area: 1 %-of-spread noise (~6 m2) alone moves a 300 m2
        # building ~2 %, and a tree model on 600 rows steps at its bin edges on top of that.
        "noise_stability": {"max": 0.10},
        "missing_values": {"max": 0, "unit": "rows"},
        "unseen_categories": {"max": 0, "unit": "rows"},
        "directional": {"max": 0.02},
        **{g: {"max": 0, "unit": "kWh"} for g in IDENTICAL},
        "single_row_latency": {"max": 250, "unit": "ms"},
        "batch_throughput": {"min": 1000, "unit": "rows/s"},
        "latency_vs_champion": {"max": 2.0},
        # Serving is judged nowhere here: its lines say what a run with it would be held to.
        "serving_matches_in_process": {"max": 0, "unit": "kWh", "required": False},
        "serving_rejects_malformed": {"max": 0, "unit": "requests", "required": False},
        "serving_latency": {"max": 500, "unit": "ms", "required": False},
    }
    for k, v in over.items():
        base[k] = {**base[k], **v}
    return base


# staging is the base and requires every gate but serving's. production extends it with
# tighter metric bounds; dev extends it with dev's looser bounds (threshold_set's), and
# there only the data and metric gates are required (the data gates' lines are staging's).
STAGING = threshold_set(r2={"min": 0.9}, mae={"max": 2500}, rmse={"max": 4000}, mape={"max": 12},
                        noise_stability={"max": 0.08})
PRODUCTION = {"r2": {"min": 0.92}, "mae": {"max": 2000, "unit": "kWh"}, "rmse": {"max": 3500, "unit": "kWh"},
              "mape": {"max": 10, "unit": "%"}}
DEV = {k: {**v, "required": k in REQUIRED_DEV} for k, v in threshold_set().items()
       if k not in ("data_contract", "train_eval_overlap")}


def write_energy_project(folder: Path) -> Path:
    """The data file, a model config and a pipeline config written from scratch; returns the config."""
    folder.mkdir(parents=True, exist_ok=True)
    make_energy().to_csv(folder / "energy.csv", index=False)
    (folder / "model.yaml").write_text(yaml.safe_dump({"model": {
        "type": "hist_gradient_boosting",
        "log_target": True,  # the noise is multiplicative
        "params": {"learning_rate": 0.1, "max_iter": 150, "max_leaf_nodes": 15, "min_samples_leaf": 10,
                   "monotonic_cst": {"floor_area_m2": 1}},
    }}, sort_keys=False))
    cfg = {
        "model_config": "model.yaml",
        "default_env": "staging",
        "seed": 11,
        "gate_tests": str(ROOT / "model_tests"),
        "data": {
            "path": "energy.csv",
            "target": TARGET,
            "id_columns": [ID],
            "drop_columns": [],
            "numeric_features": None,
            "categorical_features": None,
            "contract": {
                "min_rows": 500,
                "max_missing_share": 0.2,
                "missing_share": {},
                "ranges": {TARGET: {"min": 1, "max": 1_000_000}, "floor_area_m2": {"min": 1},
                           "outdoor_temp_c": {"min": -60, "max": 60}},
                "allow_duplicate_rows": False,
                "target_positive": True,
            },
        },
        "split": {"test_size": 0.25, "seed": 11},
        "mlflow": {
            "tracking_uri": "sqlite:///mlruns/mlflow.db",  # relative: resolved next to this file
            "artifact_location": "mlruns/artifacts",
            "experiment": "energy",
            "registered_model": "energy-kwh",
            "http_timeout_s": 20,
            "http_max_retries": 2,
            "keep_versions": 10,
        },
        "gates": {
            "drift": {"min_rows": 20},
            "champion": {"alias": None, "bootstrap_resamples": 500, "confidence": 0.95},
            "slices": {"metric": "mape", "columns": ["building_type"], "target_bands": [10000, 30000], "min_rows": 30},
            "residuals": {"scale": "log", "sample_size": 5000},
            "robustness": {"noise_relative_sd": 0.01, "percentile": 95, "rows_per_example": 100,
                           "directional": [{"feature": "floor_area_m2", "direction": "increasing", "step_relative": 0.1}]},
            "determinism": {"refit_rows": 300},
            "latency": {"single_row_rounds": 50, "batch_rows": 500},
        },
        "environments": {
            "dev": {"extends": "staging", "strictness": 0, "thresholds": DEV},
            "staging": {"strictness": 1, "thresholds": STAGING},
            "production": {"extends": "staging", "strictness": 2, "thresholds": PRODUCTION},
        },
    }
    path = folder / "energy_pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def energy_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PIPELINE_CONFIG", raising=False)
    return write_energy_project(tmp_path)


def _train_main():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_features_are_inferred_without_id_or_target(energy_project: Path):
    settings = config.load(energy_project, "dev")
    dataset = data.load(settings)
    assert dataset.target == TARGET
    assert sorted(dataset.features.numeric) == sorted(NUMERIC)
    assert sorted(dataset.features.categorical) == sorted(CATEGORICAL)
    assert ID not in dataset.features.columns and TARGET not in dataset.features.columns
    assert len(dataset.frame) == 800
    # Missing values survive as missing, in both kinds of column.
    assert dataset.frame["outdoor_temp_c"].isna().sum() > 0
    assert dataset.frame["region"].isna().sum() > 0


def test_environments_resolve_from_staging(energy_project: Path):
    dev, staging, production = (config.load(energy_project, e) for e in ("dev", "staging", "production"))
    # Every gate is judged everywhere (a collected gate needs a threshold); what is required differs.
    assert set(dev.thresholds) == set(staging.thresholds) == set(production.thresholds) == set(STAGING)
    assert dev.environment.required_gates == sorted(REQUIRED_DEV)
    assert staging.environment.required_gates == production.environment.required_gates == sorted(set(STAGING) - set(SERVING))
    assert (dev.thresholds["r2"].min, staging.thresholds["r2"].min, production.thresholds["r2"].min) == (0.8, 0.9, 0.92)
    # Inherited lines: production's noise bound and dev's data contract are staging's.
    assert production.thresholds["noise_stability"].max == staging.thresholds["noise_stability"].max == 0.08
    assert dev.thresholds["data_contract"].max == 0 and dev.thresholds["data_contract"].required
    assert [dev.strictness(e) for e in ("dev", "staging", "production")] == [0, 1, 2]


def test_trains_and_registers_by_config_alone(energy_project: Path, capsys: pytest.CaptureFixture):
    folder = energy_project.parent
    assert store_state(folder) == "absent"
    with threadpool_limits(limits=1, user_api="openmp"):  # a loaded 2-core machine: no OpenMP spinning
        code = _train_main()(["--config", str(energy_project), "--env", "dev"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert store_state(folder) == (1, 1)
    assert "registered energy-kwh version 1" in out
    line = next(x for x in out.splitlines() if x.startswith("eval R2"))
    r2 = float(line.split()[2])
    mape = float(line.split("MAPE")[1].split()[0])
    # A real signal was learnt: well above a model that learnt nothing.
    assert r2 > 0.8, line
    assert mape < 20, line


def test_real_gates_pass_at_dev(energy_project: Path, tmp_path: Path):
    run = run_gates_in_process(tmp_path / "gates", energy_project, "--tb=line", env="dev")
    assert run.returncode == 0, run.output[-4000:]
    doc = run.evidence
    assert doc["status"] == "passed", doc["reasons"]
    assert doc["environment"] == "dev"
    # The required list is computed from the lines: the gates without required: false.
    assert doc["required_gates"] == sorted(REQUIRED_DEV)
    for gate in REQUIRED_DEV:
        assert run.outcomes.get(gate) == "passed", (gate, run.outcomes)
    # Every gate family ran on this data, not only the required ones, and none failed.
    assert {"slice_error", "directional", "unseen_categories", "missing_values", "residual_skew"} <= set(run.outcomes)
    assert not [g for g, o in run.outcomes.items() if o in ("failed", "error")], run.outcomes
    assert run.figure("r2")["value"] >= 0.8
    assert run.figure("data_contract")["value"] == 0
    assert run.figure("mae")["threshold"] == {"min": None, "max": 4000, "unit": "kWh", "direction": "<=", "env": "dev",
                                              "required": True, "text": "<= 4,000 kWh"}
    assert run.figure("residual_skew")["threshold"]["required"] is False
    # Nothing was registered by an in-process gate run.
    assert store_state(tmp_path) == "absent"

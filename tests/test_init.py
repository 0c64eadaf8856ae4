"""`run-pipeline init` on data sets the harness has never seen, then `run-pipeline run` with no
hand edit: train, the whole standard suite, a verdict, on an embedded store in tmp_path.

Three shapes: scikit-learn's diabetes data (442 rows, numeric only, no time order), house
listings (text ids, ISO sale dates, categories, missing values, a skewed positive target)
and sensor readings (a target of either sign, year and month columns).
A sound model passes staging from init's defaults and is promoted; the same data with its
target shuffled (nothing left to learn) fails the metric gates and only those.
The CLI runs in process (`pipeline.cli.main`), as `run` runs its gates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import cli


def diabetes(folder: Path) -> tuple[Path, str]:
    from sklearn.datasets import load_diabetes

    path = folder / "diabetes.csv"
    load_diabetes(as_frame=True).frame.to_csv(path, index=False)
    return path, "target"


def listings(folder: Path) -> tuple[Path, str]:
    rng = np.random.default_rng(5)
    n = 1500
    district = rng.choice(["harbour", "old town", "hills", "mills", "park", "station"], n, p=[.25, .2, .15, .15, .15, .1])
    kind = rng.choice(["flat", "terraced", "detached"], n, p=[.5, .3, .2])
    size = rng.lognormal(4.4, 0.35, n).round(1)
    rooms = np.clip((size / 25 + rng.normal(0, 0.7, n)).round(), 1, 9)
    age = rng.integers(0, 120, n).astype(float)
    age[rng.random(n) < 0.06] = np.nan  # unknown for some listings
    sold = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 5 * 365, n), unit="D")
    premium = pd.Series(district).map({"harbour": .35, "old town": .25, "hills": .3, "mills": -.1, "park": .1, "station": 0}).to_numpy()
    kind_eff = pd.Series(kind).map({"flat": 0, "terraced": .1, "detached": .25}).to_numpy()
    trend = (sold - sold.min()).days.to_numpy() / 365 * 0.04
    log_price = 11 + 0.9 * np.log(size) + premium + kind_eff - 0.002 * np.nan_to_num(age, nan=60) + trend + rng.normal(0, 0.12, n)
    frame = pd.DataFrame({"listing_id": [f"L{i:05d}" for i in rng.permutation(n)], "sold_on": sold.strftime("%Y-%m-%d"),
                          "district": district, "kind": kind, "size_m2": size, "rooms": rooms, "age_years": age,
                          "price": np.exp(log_price).round(-2)})
    path = folder / "listings.csv"
    frame.sort_values("district").to_csv(path, index=False)  # a file sorted by place, as exports often are
    return path, "price"


def sensors(folder: Path, copies: int = 0) -> tuple[Path, str]:
    rng = np.random.default_rng(9)
    n = 800
    site = rng.choice(["north", "south", "lake"], n)
    year = rng.integers(2015, 2024, n)
    month = rng.integers(1, 13, n)
    wind = rng.gamma(2.0, 2.5, n).round(1)
    humidity = rng.uniform(20, 100, n).round(0)
    season = np.sin(2 * np.pi * (month - 4) / 12)
    delta = (3 * season - 0.25 * wind + 0.02 * (humidity - 60) + pd.Series(site).map({"north": -1, "south": 1, "lake": 0}).to_numpy()
             + rng.normal(0, 0.6, n)).round(2)
    frame = pd.DataFrame({"site": site, "year": year, "month": month, "wind_ms": wind, "humidity": humidity, "temp_delta": delta})
    frame = pd.concat([frame, frame.iloc[:copies]], ignore_index=True)  # a logger that wrote readings twice
    path = folder / "sensors.csv"
    frame.to_csv(path, index=False)
    return path, "temp_delta"


DATASETS = {"diabetes": diabetes, "listings": listings, "sensors": sensors}


def cli_json(capsys, *args: str) -> tuple[int, dict]:
    code = cli.main([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.mark.parametrize("name", list(DATASETS))
def test_init_then_run_gates_and_promotes_a_sound_model_with_no_hand_edit(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data, target = DATASETS[name](tmp_path)
    code, inferred = cli_json(capsys, "init", "--data", str(data), "--target", target, "--out", "project")
    assert code == 0, inferred
    assert inferred["next"] == "run-pipeline run --config project/pipeline_config.yaml"
    (tmp_path / f"init-{name}.json").write_text(json.dumps(inferred, indent=2))  # for the closing note
    code, doc = cli_json(capsys, "run", "--config", "project/pipeline_config.yaml")
    gates = {g["gate"]: g for g in doc["evidence"]["gates"]}
    (tmp_path / f"run-{name}.json").write_text(json.dumps({g: (v["outcome"], (v["figure"] or {}).get("value")) for g, v in gates.items()}, indent=2))
    assert code == 0, {g: (v["outcome"], v["message"]) for g, v in gates.items() if v["outcome"] not in ("passed", "not_applicable", "skipped")}
    assert doc["evidence"]["status"] == "passed" and doc["aliases"] == {"staging": "1"}
    assert gates["mae"]["figure"]["ratio_to_baseline"] < 0.8
    # What init inferred for each shape, and what the gates then made of it.
    cfg = yaml.safe_load((tmp_path / "project" / "pipeline_config.yaml").read_text())
    if name == "diabetes":
        assert inferred["categorical"] == [] and inferred["order_by"] is None and inferred["id_columns"] == []
        assert {g: gates[g]["outcome"] for g in ("unseen_categories", "residual_autocorrelation", "directional", "champion_mae")} == {
            g: "not_applicable" for g in ("unseen_categories", "residual_autocorrelation", "directional", "champion_mae")}
    elif name == "listings":
        assert inferred["id_columns"] == ["listing_id", "sold_on"] and inferred["order_by"] == ["sold_on"]
        assert inferred["categorical"] == ["district", "kind"] and inferred["log_target"] is True
        assert cfg["data"]["contract"]["missing_share"]["age_years"] > 0.06
        # Along the sale date, not the file's order by district.
        assert gates["residual_autocorrelation"]["outcome"] == "passed"
        assert gates["residual_autocorrelation"]["figure"]["detail"].endswith("rows ordered by sold_on")
        assert gates["unseen_categories"]["outcome"] == "passed" and cfg["gates"]["slices"]["columns"] == ["kind", "district"]
    else:
        assert inferred["order_by"] == ["year", "month"] and inferred["log_target"] is False
        assert cfg["data"]["contract"]["allow_duplicate_rows"] is False and cfg["environments"]["staging"]["thresholds"]["mape"]["required"] is False
        assert cfg["data"]["contract"]["ranges"]["temp_delta"]["min"] < 0


def test_a_target_with_nothing_to_learn_fails_the_metric_gates(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data, target = listings(tmp_path)
    frame = pd.read_csv(data)
    frame[target] = np.random.default_rng(0).permutation(frame[target].to_numpy())  # the target shuffled: no signal left
    frame.to_csv(data, index=False)
    assert cli_json(capsys, "init", "--data", str(data), "--target", target, "--out", "project")[0] == 0
    code, doc = cli_json(capsys, "run", "--config", "project/pipeline_config.yaml")
    assert code == 1 and doc["aliases"] == {}
    failed = {g["gate"] for g in doc["evidence"]["gates"] if g["outcome"] == "failed"}
    assert {"r2", "mae", "rmse", "mape"} <= failed, failed
    assert not failed & {"data_contract", "train_eval_overlap", "feature_drift"}, failed
    mae = next(g for g in doc["evidence"]["gates"] if g["gate"] == "mae")
    assert mae["figure"]["ratio_to_baseline"] > 0.9 and "x the baseline's > 0.8x" in mae["message"]


def test_readings_written_twice_are_kept_on_one_side_of_the_split(tmp_path, capsys, monkeypatch):
    # Copies of a record: the split keeps each record's rows together, so none is judged on
    # rows it was trained on (a random split of rows put copies on both sides).
    monkeypatch.chdir(tmp_path)
    data, target = sensors(tmp_path, copies=12)
    code, inferred = cli_json(capsys, "init", "--data", str(data), "--target", target, "--out", "project")
    assert code == 0 and any(w.startswith("12 duplicated rows: allowed") for w in inferred["why"]), inferred["why"]
    code, doc = cli_json(capsys, "run", "--config", "project/pipeline_config.yaml")
    gates = {g["gate"]: g for g in doc["evidence"]["gates"]}
    assert code == 0 and gates["train_eval_overlap"]["outcome"] == "passed", gates["train_eval_overlap"]
    assert "the split kept 12 rows that repeat a record" in gates["train_eval_overlap"]["figure"]["detail"]


def test_init_refuses_bad_input_and_never_overwrites(tmp_path, capsys):
    data, target = sensors(tmp_path)
    out = tmp_path / "project"
    assert cli.main(["init", "--data", str(data), "--target", "Temp_Delta", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --target Temp_Delta: no such column in {data} (did you mean 'temp_delta'?)"
    assert not out.exists() or not any(out.iterdir())
    # Text is a classifier's labels unless --task says it is a number.
    assert cli.main(["init", "--data", str(data), "--target", "site", "--task", "regression", "--out", str(out)]) == 2
    assert "target is not a number" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    assert cli.main(["init", "--data", str(tmp_path / "nope.csv"), "--target", target, "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --data {tmp_path / 'nope.csv'}: no such file"
    assert cli.main(["init", "--data", str(data), "--target", target, "--out", str(out)]) == 0
    first = (out / "pipeline_config.yaml").read_text()
    capsys.readouterr()
    assert cli.main(["init", "--data", str(data), "--target", target, "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {out / 'pipeline_config.yaml'}: already exists; init never overwrites a config "
                                               "(use --force, or another --out)")
    assert (out / "pipeline_config.yaml").read_text() == first
    assert cli.main(["init", "--data", str(data), "--target", target, "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["gates", "model_config.yaml", "pipeline_config.yaml"]  # no scratch left


def test_check_lists_every_column_the_config_names_that_the_data_lacks_and_run_stops_before_training(tmp_path, capsys):
    data, target = sensors(tmp_path)
    out = tmp_path / "project"
    assert cli.main(["init", "--data", str(data), "--target", target, "--out", str(out)]) == 0
    cfg_path = out / "pipeline_config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["gates"]["slices"]["columns"] = ["Neighborhood", "site"]
    cfg["gates"]["robustness"]["directional"] = [{"feature": "site", "direction": "increasing"}]
    cfg["data"]["contract"]["ranges"]["Wind_ms"] = {"min": 0}
    cfg["split"]["test_size"] = 0.01
    cfg["data"]["categorical_features"] = []  # "none": but site is a text column nobody listed
    cfg["data"]["numeric_features"] = None
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    model = yaml.safe_load((out / "model_config.yaml").read_text())
    model["model"]["params"]["monotonic_cst"] = {"humidty": 1}
    (out / "model_config.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    capsys.readouterr()
    code, doc = cli_json(capsys, "check", "--config", str(cfg_path))
    assert code == 2
    assert [r["detail"] for r in doc["checks"] if r["check"] == "config columns"] == [
        f"{cfg_path}: data.contract.ranges: column 'Wind_ms' is not in sensors.csv",
        f"{cfg_path}: gates.slices.columns: column 'Neighborhood' is not in sensors.csv",
        f"{cfg_path}: gates.robustness.directional.0.feature: 'site' is not a numeric feature",
        f"{cfg_path}: data.categorical_features: 1 column of sensors.csv in no list ('site'): the model never sees them; "
        "list them, or name them in data.drop_columns",
        f"{cfg_path}: split.test_size: 0.01 leaves 8 evaluation rows of 800; the gates need at least 20",
        f"{out / 'model_config.yaml'}: model.params.monotonic_cst: column 'humidty' is not in sensors.csv",
    ]
    code = cli.main(["run", "--config", str(cfg_path)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (f"error: {cfg_path}: data.contract.ranges: column 'Wind_ms' is not in sensors.csv "
                                               "(and 2 more; run-pipeline check lists them all)")  # the header alone: no types, so not the directional line
    assert not (out / "mlruns").exists()  # nothing trained, nothing registered

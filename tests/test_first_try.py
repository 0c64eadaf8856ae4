"""Real files, first try: each assumption of the harness that refused a real file (bench/corpus.py
found them), on a small generated file that shows it, with the loader, the split, init and the
checks the gates call, in process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import CONFIG, real_csv, write_project
from pipeline import config as config_mod
from pipeline import data as data_mod
from pipeline import figures
from pipeline.errors import InputError


def _dataset(frame: pd.DataFrame, target: str, ids: tuple[str, ...] = ()) -> data_mod.Dataset:
    numeric = tuple(c for c in frame.columns if c != target and c not in ids and pd.api.types.is_numeric_dtype(frame[c]))
    categorical = tuple(c for c in frame.columns if c != target and c not in ids and c not in numeric)
    return data_mod.Dataset(path=None, frame=frame, target=target,  # type: ignore[arg-type]
                            features=data_mod.FeatureSpec(numeric, categorical), digest="")


def _settings(ids: list[str] | None = None) -> config_mod.Settings:
    settings = config_mod.load(CONFIG, "staging")
    return settings.model_copy(update={"data": settings.data.model_copy(update={"id_columns": ids or []})})


def test_the_split_keeps_a_record_and_its_copies_on_one_side():
    rng = np.random.default_rng(1)
    base = pd.DataFrame({"a": rng.integers(0, 5, 400).astype(float), "b": rng.choice(["x", "y"], 400),
                         "y": rng.normal(size=400).round(1)})
    frame = pd.concat([base, base.iloc[:60], base.iloc[:20]], ignore_index=True)  # 80 copies of 60 records
    dataset, settings = _dataset(frame, "y"), _settings()
    parts = data_mod.split(settings, dataset)
    columns, _ = data_mod.record_columns(frame, ["a", "b"], "y", [])
    assert figures.shared_rows(parts.train, parts.eval, columns) == 0
    assert len(parts.train) + len(parts.eval) == len(frame)
    assert parts.grouped == int(frame.duplicated().sum()) >= 80
    # The evaluation share is of records, near the configured one.
    assert abs(len(parts.eval) / len(frame) - settings.split.test_size) < 0.05


def test_a_file_without_copies_splits_as_its_rows_did():
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"a": rng.normal(size=300), "y": rng.normal(size=300)})
    settings = _settings()
    parts = data_mod.split(settings, _dataset(frame, "y"))
    _, eval_idx = train_test_split(frame.index, test_size=settings.split.test_size, random_state=settings.split.seed)
    assert list(parts.eval.index) == sorted(eval_idx) and parts.grouped == 0


def test_declared_ids_group_the_rows_of_one_entity():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"house": np.repeat(np.arange(100), 3), "a": rng.normal(size=300), "y": rng.normal(size=300)})
    parts = data_mod.split(_settings(ids=["house"]), _dataset(frame, "y", ids=("house",)))
    assert not set(parts.train["house"]) & set(parts.eval["house"])
    assert parts.grouped == 200


def _init(tmp_path, frame: pd.DataFrame, target: str):
    from pipeline import init

    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    inferred, _ = init.write(path, target, tmp_path / "proj")
    settings = config_mod.load(tmp_path / "proj" / "pipeline_config.yaml")
    dataset = data_mod.load(settings)
    return inferred, settings, dataset


def _settings_of(folder):
    return config_mod.load(folder / "proj" / "pipeline_config.yaml")


def test_residual_gates_leave_out_rows_at_a_censored_target_s_cap():
    from pipeline import checks

    # Top-coded at 50: the model predicts ~45 where the truth is 50 or beyond; those residuals
    # are not errors and skew the sample.
    rng = np.random.default_rng(13)
    truth = rng.normal(30, 8, 3000)
    p = truth + rng.normal(0, 2, 3000)
    y = np.minimum(truth, 50.0)
    p = np.where(y == 50, 43 + rng.normal(0, 1, 3000), p)
    cap = config_mod.Range(max=50)
    left = checks.residual_sample(y, p, "raw", 5000, 0, cap)
    assert left.censored == int((y == 50).sum()) > 0 and len(left.resid) == 3000 - left.censored
    assert "censored rows left out" in checks.residual_skew(left).detail
    assert checks.residual_skew(left).value < checks.residual_skew(checks.residual_sample(y, p, "raw", 5000, 0)).value


def test_init_drops_a_row_number_that_tracks_the_target(tmp_path):
    rng = np.random.default_rng(4)
    price = np.sort(rng.lognormal(8, 1, 500))  # a file sorted by price, numbered as R writes it
    frame = pd.DataFrame({"rownames": np.arange(1, 501), "carat": np.log(price) + rng.normal(0, 0.5, 500),
                          "Unnamed: 0": np.arange(500), "empty": np.nan, "price": price})
    inferred, settings, dataset = _init(tmp_path, frame, "price")
    assert set(inferred.dropped) == {"rownames", "Unnamed: 0", "empty"}
    assert "rownames" not in dataset.features.columns and dataset.features.columns == ["carat"]
    assert any("rownames: the integers 1..500 in file order" in w for w in inferred.why)
    # A year column counts too, but not from 0 or 1: it stays a feature.
    frame = pd.DataFrame({"year": np.arange(1900, 2300), "x": rng.normal(size=400), "y": rng.normal(size=400)})
    inferred, _, dataset = _init(tmp_path / "years", frame, "y")
    assert inferred.dropped == [] and "year" in dataset.features.columns


def test_init_writes_only_what_its_check_accepts_whatever_the_column_names(tmp_path):
    rng = np.random.default_rng(5)
    n = 400
    frame = pd.DataFrame({"sale.year": rng.integers(2000, 2010, n), "size m2": rng.normal(100, 20, n),
                          "größe": rng.normal(size=n), "kind.of": rng.choice(["a", "b", "c"], n)})
    frame["price"] = 1000 + 5 * frame["size m2"] + rng.normal(0, 20, n)
    inferred, settings, dataset = _init(tmp_path, frame, "price")
    assert settings.gates.residuals.order_by == ["sale.year"]
    header = data_mod.read_header(settings.data.path)
    assert data_mod.config_problems(settings, header, dataset.features, rows=len(dataset.frame)) == []


def test_residual_spread_of_values_on_a_grid_is_finite():
    # Heights to the inch: in a decile most residuals are equal, its MAD 0, and the ratio was inf.
    rng = np.random.default_rng(6)
    pred = np.sort(rng.normal(68, 2, 4000)).round()
    resid = np.where(rng.random(4000) < 0.6, 0.0, rng.normal(0, 2, 4000)).round()
    s = figures.spread(resid, pred)
    assert np.isfinite(s.ratio) and s.bottom > 0 and s.top > 0
    assert s.ratio < 2  # the same noise in every decile
    # And grows where errors do.
    grows = figures.spread(resid * np.linspace(0.2, 3, 4000), pred)
    assert grows.ratio > 5


def test_noise_is_a_measurement_error_of_each_column(tmp_path):
    from pipeline import robustness as rb

    rng = np.random.default_rng(7)
    train = pd.DataFrame({"lat": rng.uniform(42.0, 42.1, 2000).round(6), "cars": rng.integers(0, 4, 2000).astype(float),
                          "area": rng.integers(50, 500, 2000) * 10.0})
    cfg = _settings().gates.robustness
    sd, how = rb.noise_scale(train, ["lat", "cars", "area"], cfg)
    # Coordinates move by half their step between distinct values (~2 m), not 1 % of their spread (~30 m).
    assert sd["lat"] == 0.5 * rb.resolution(train["lat"]) < 0.1 * 0.01 * train["lat"].std()
    assert sd["cars"] == 0.01 * train["cars"].std() < 0.5  # never half a car
    assert sd["area"] == 5.0 < 0.01 * train["area"].std()  # areas to 10 square feet: half of that
    declared = cfg.model_copy(update={"noise_sd": {"lat": 0.001}})
    assert rb.noise_scale(train, ["lat", "cars"], declared)[0]["lat"] == 0.001
    spread = cfg.model_copy(update={"noise_scale": "spread"})
    assert rb.noise_scale(train, ["lat"], spread)[0]["lat"] == 0.01 * train["lat"].std()


def test_a_text_column_of_more_categories_than_the_booster_splits_on_trains(tmp_path):
    # A county name of 272 values stopped training ("cardinality <= 255"): the most frequent
    # 255 are categories, the rest unknown (as OrdinalEncoder's max_categories groups them).
    from pipeline import train

    rng = np.random.default_rng(8)
    frame = pd.DataFrame({"county": [f"c{i}" for i in rng.integers(0, 300, 3000)], "x": rng.normal(size=3000)})
    frame["y"] = frame["x"] + (frame["county"].str[1:].astype(int) % 7)
    settings = _settings()
    settings = settings.model_copy(update={"data": settings.data.model_copy(update={"target": "y"}),
                                           "model": settings.model.model_copy(update={"log_target": False, "params": {}})})
    model = train.fit(settings, data_mod.FeatureSpec(("x",), ("county",)), frame)
    encoder = model.named_steps["preprocess"]
    assert len(encoder.categories_[0]) == 255
    assert np.isfinite(model.predict(frame[["x", "county"]])).all()


def test_target_bands_cut_by_the_prediction_judge_the_model_not_regression_to_the_mean():
    from pipeline import checks

    # An honest model of a noisy target: the same error everywhere, R2 about 0.5.
    rng = np.random.default_rng(9)
    x = rng.normal(size=4000)
    y = 100 + 10 * x + rng.normal(0, 10, 4000)
    p = 100 + 10 * x
    frame = pd.DataFrame({"y": y})
    bands = list(np.quantile(y, [0.1, 0.5, 0.9]))
    args = dict(columns=[], target="y", target_bands=bands, min_rows=30, metric="mae")
    by_target = checks.slice_error(frame, y, p, band_by="target", **args)
    by_prediction = checks.slice_error(frame, y, p, **args)
    assert by_target.value > 1.5  # the extreme observed bands: the noise that put rows there
    assert by_prediction.value < 1.15 and "predicted y band" in by_prediction.detail
    # A band the model does serve badly is still found.
    worse = p + np.where(p < bands[0], rng.normal(0, 40, 4000), 0)
    assert checks.slice_error(frame, y, worse, **args).value > 2


def test_target_leak_names_a_column_that_is_the_target_in_disguise():
    from pipeline import checks

    rng = np.random.default_rng(10)
    n = 2000
    frame = pd.DataFrame({"size": rng.lognormal(4, 0.4, n), "kind": rng.choice(list("abc"), n)})
    frame["price"] = np.exp(1 + 0.9 * np.log(frame["size"]) + frame["kind"].map({"a": 0, "b": 0.2, "c": 0.4}) + rng.normal(0, 0.2, n))
    train, evaluation = frame.iloc[:1600], frame.iloc[1600:]
    honest = checks.target_leak(train, evaluation, ["size", "kind"], "price", log=True)
    assert honest.value < 0.9 and honest.label == "R2 of size alone"
    # A log of the target, a row number of the file sorted by it: each alone is the target.
    leaked = frame.assign(log_price=np.log(frame["price"])).sort_values("price").assign(row=np.arange(n)).sample(frac=1, random_state=0)
    train, evaluation = leaked.iloc[:1600], leaked.iloc[1600:]
    for col in ("log_price", "row"):
        f = checks.target_leak(train, evaluation, ["size", "kind", col], "price", log=True)
        assert f.value > 0.98 and f.label == f"R2 of {col} alone", f


def test_an_unknown_run_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from pipeline import cli

    monkeypatch.chdir(tmp_path)
    cfg = write_project(tmp_path / "project")
    run = "runs:/0123456789abcdef0123456789abcdef/model"
    assert cli.main(["validate", run, "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --model-uri {run}: no run 0123456789abcdef0123456789abcdef in {config_mod.load(cfg).mlflow.tracking_uri}"
    assert cli.main(["validate", "runs:/model", "--config", str(cfg)]) == 2
    assert "expected runs:/RUN_ID/PATH" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


def test_init_states_a_capped_target_and_chooses_the_scale_where_errors_are_even(tmp_path):
    rng = np.random.default_rng(11)
    n = 600
    x = rng.normal(size=n)
    value = np.minimum(np.exp(3 + 0.5 * x + rng.normal(0, 0.3, n)).round(1), 50.0)  # top-coded at 50, as Boston's medv
    frame = pd.DataFrame({"x": x, "medv": value})
    inferred, _, _ = _init(tmp_path, frame, "medv")
    share = float((value == 50).mean())
    assert share > 0.01 and inferred.capped.startswith(f"capped at its max 50 for {share:.1%} of rows ({int((value == 50).sum())};")
    assert any("a censored target" in w for w in inferred.why)
    assert _settings_of(tmp_path).gates.residuals.censored.max == 50
    # The scale the residuals are judged on is where a quick fit's errors are even: errors that
    # grow with the value (a car's mpg, 5x apart, hardly skewed) -> log; errors even as they
    # are, though the target is skewed -> as it is.
    grows = pd.DataFrame({"x": x, "y": np.exp(2.5 + 0.4 * x) * np.exp(rng.normal(0, 0.25, n))})
    inferred, settings, _ = _init(tmp_path / "grows", grows, "y")
    assert inferred.log_target and settings.model.log_target and settings.gates.residuals.scale == "log"
    assert any("on the log scale: the model fits log(target)" in w for w in inferred.why), inferred.why
    size = rng.exponential(1.0, n)  # a skewed feature, so a skewed target, with additive errors
    even = pd.DataFrame({"x": size, "y": 10 + 4 * size + rng.normal(0, 1, n)})
    inferred, settings, _ = _init(tmp_path / "even", even, "y")
    assert even["y"].skew() > 1 and not inferred.log_target and settings.gates.residuals.scale == "raw"
    # A target on a coarse grid whose lowest value many rows share, as its next values: no cap.
    grid = pd.DataFrame({"x": x, "mag": np.clip(4.0 + rng.exponential(0.5, n), 4.0, 6.5).round(1)})
    grid.loc[grid["mag"] < 4.05, "mag"] = 4.0
    assert _init(tmp_path / "grid", grid, "mag")[0].capped == ""
    # Counts with many zeros: zero is their floor, not a cap.
    counts = pd.DataFrame({"x": x, "visits": rng.poisson(np.exp(x), n).astype(float)})
    assert _init(tmp_path / "counts", counts, "visits")[0].capped == ""


def test_rows_without_a_target_are_dropped_by_a_policy_init_states(tmp_path):
    rng = np.random.default_rng(12)
    n = 500
    frame = pd.DataFrame({"rownames": np.arange(1, n + 1), "x": rng.normal(size=n), "y": rng.normal(size=n)})
    frame.loc[rng.choice(n, 25, replace=False), "y"] = np.nan
    inferred, settings, dataset = _init(tmp_path, frame, "y")
    assert inferred.without_target == 25 and settings.data.rows_without_target == "drop"
    assert len(dataset.frame) == n - 25 and dataset.frame["y"].notna().all()
    assert inferred.dropped == ["rownames"]  # still the file's row numbers, though rows went
    refusing = settings.model_copy(update={"data": settings.data.model_copy(update={"rows_without_target": "refuse"})})
    first = int(frame["y"].isna().to_numpy().argmax()) + 1
    with pytest.raises(InputError, match=rf"column 'y' row {first}: target is missing \(data.rows_without_target: drop"):
        data_mod.load(refusing)


# Two real files of the corpus (bench/corpus.py runs all 24): R's row names as a column, text
# categories, a car name that is nearly unique, a target whose errors grow with it.
REAL_FILES = {"CPS1985": ("AER", "CPS1985", "wage"), "Auto": ("ISLR", "Auto", "mpg")}


@pytest.mark.parametrize("name", list(REAL_FILES))
def test_a_real_file_goes_from_init_to_promotion_with_no_hand_edit(name, tmp_path, capsys, monkeypatch):
    import json

    from pipeline import cli

    package, item, target = REAL_FILES[name]
    real_csv(tmp_path, package, item)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--data", f"{item}.csv", "--target", target, "--out", "project", "--json"]) == 0
    inferred = json.loads(capsys.readouterr().out)
    assert inferred["drop_columns"] == ["rownames"] and "rownames" not in inferred["numeric"]
    code = cli.main(["run", "--config", "project/pipeline_config.yaml", "--json"])
    doc = json.loads(capsys.readouterr().out)
    failed = {g["gate"]: g["message"] for g in doc["evidence"]["gates"] if g["outcome"] not in ("passed", "not_applicable", "skipped")}
    assert code == 0 and not failed and doc["aliases"], failed

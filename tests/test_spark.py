"""The Spark engine (pipeline.spark, --engine spark) on local[2]: the same figures as the in-process engine.

The tests marked `spark` need pyspark and a Java runtime; where CI=true they run, never skip.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import (
    AMES,
    CHEAP,
    LIGHT_MODEL,
    SHARED_MACHINE,
    deep_merge,
    missing_on_this_machine,
    run_gates_in_process,
    write_project,
)
from pipeline import config as config_mod
from pipeline import spark as spark_mod

pytestmark = pytest.mark.slow

# The gates whose figures come from rows in one place: on Spark a seeded sample of them (the
# whole evaluation split on Ames, so their figures are equal there too); timings aside.
TIMED = ("latency", "serving")


@pytest.fixture(scope="module")
def spark_ready():
    why = spark_mod.available()
    if why:
        missing_on_this_machine(why, "spark tests")


@pytest.fixture(scope="module")
def ames(tmp_path_factory, spark_ready) -> tuple[Path, Path]:
    """An Ames project (the tests' cheap gate settings and latency bounds a shared machine meets,
    the light model) with version 1 at @staging and version 2 (a larger ensemble) registered beside it."""
    from pipeline import cli

    folder = tmp_path_factory.mktemp("spark-ames")
    config = write_project(folder, deep_merge(CHEAP, SHARED_MACHINE), model=LIGHT_MODEL)
    old = os.environ.get("MLFLOW_TRACKING_URI")
    cwd = os.getcwd()
    try:
        os.chdir(folder)
        assert cli.main(["run", "--config", str(config), "--json"]) == 0
        model_file = folder / "model_config.yaml"
        text = model_file.read_text()
        assert f"max_iter: {LIGHT_MODEL['params']['max_iter']}" in text
        model_file.write_text(text.replace(f"max_iter: {LIGHT_MODEL['params']['max_iter']}", "max_iter: 250"))
        assert cli.main(["run", "--config", str(config), "--no-promote", "--json"]) == 0
    finally:
        os.chdir(cwd)
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old
    return folder, config


def _figures(evidence: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for g in evidence["gates"]:
        if g["family"] in TIMED or g["figure"] is None or g["figure"]["value"] is None:
            continue
        out[g["gate"]] = g["figure"]["value"]
        for k, v in g["reported"].items():
            if isinstance(v, (int, float)):
                out[f"{g['gate']}.{k}"] = v
    return out


def _rel(a: float, b: float) -> float:
    if (isinstance(a, float) and math.isnan(a)) and (isinstance(b, float) and math.isnan(b)):
        return 0.0
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


@pytest.mark.spark
def test_the_spark_engine_gates_ames_with_the_in_process_figures(ames):
    folder, config = ames
    uri = "models:/ames-price/2"  # against @staging's v1: the champion bootstrap compares two models
    local = run_gates_in_process(folder / "local", config, model_uri=uri)
    spark = run_gates_in_process(folder / "spark", config, "--engine", "spark", "--spark-master", "local[2]", model_uri=uri)
    assert spark.returncode == 0, spark.output[-3000:]
    assert spark.evidence["status"] == local.evidence["status"] == "passed"
    a, b = _figures(local.evidence), _figures(spark.evidence)
    assert set(a) == set(b)
    worst = max(_rel(a[k], b[k]) for k in a)
    assert worst <= 1e-6, {k: (a[k], b[k]) for k in a if _rel(a[k], b[k]) > 1e-6}
    # The champion's bootstrap compared two different models: a figure that could have differed.
    assert a["champion_mae.champion_mae_change"] != 0
    engine = spark.evidence["engine"]
    assert engine["name"] == "spark" and engine["master"] == "local[2]"
    assert engine["rows"] == engine["sample_rows"] == 586
    assert "engine" not in local.evidence
    outcomes = {g["gate"]: g["outcome"] for g in local.evidence["gates"]}
    assert outcomes == {g["gate"]: g["outcome"] for g in spark.evidence["gates"]}


def _rows_file(folder: Path, config: Path, rows: int) -> tuple[Path, Path]:
    """`rows` evaluation rows resampled from Ames with noise (bench/make_data.py), as CSV and as a Parquet folder."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_data", Path(__file__).parents[1] / "bench" / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    csv = make_data.make(rows, seed=3, out_dir=folder)
    parquet = folder / "rows.parquet"
    spark = spark_mod.spark_session("local[2]")
    spark.read.csv(str(csv), header=True).repartition(3).write.mode("overwrite").parquet(str(parquet))
    return csv, parquet


@pytest.mark.spark
def test_a_parquet_folder_larger_than_the_sample_gives_the_figures_of_every_row(ames, monkeypatch):
    """--eval-data as a Parquet folder of 3 parts on Spark against the same rows as CSV in
    process: every figure over every row equal; the rows-in-one-place gates read the sample,
    whose size the engine states."""
    from pipeline.session import GateSession

    folder, config = ames
    monkeypatch.chdir(folder)
    csv, parquet = _rows_file(folder, config, 3000)
    settings = config_mod.load(config, "staging")
    settings = settings.model_copy(update={"spark": settings.spark.model_copy(update={"sample_rows": 500})})
    local = GateSession(settings, "models:/ames-price/2", csv)
    spark = GateSession(settings, "models:/ames-price/2", parquet, engine="spark", spark_master="local[2]")
    le, se = local.evaluation, spark.evaluation
    # Spark reads a Parquet folder's parts in an order of its own: the rows are compared as a set.
    assert le.rows() == se.rows() == 3000
    for name in ("r2", "mae", "rmse", "mape"):
        for of in ("model", "baseline"):
            assert se.metric(name, of) == pytest.approx(le.metric(name, of), rel=1e-9)
    ls, ss = le.slices(), se.slices()
    assert [(s.column, s.value, s.rows) for s in ls.judged] == [(s.column, s.value, s.rows) for s in ss.judged]
    for x, y in zip(ls.judged, ss.judged):
        assert y.ratio == pytest.approx(x.ratio, rel=1e-9) and y.p_holm == pytest.approx(x.p_holm, rel=1e-6, abs=1e-300)
    numeric, categorical = list(local.features.numeric), list(local.features.categorical)
    ld, sd = le.drift(numeric, categorical, 20), se.drift(numeric, categorical, 20)
    assert [d.column for d in ld] == [d.column for d in sd]
    for x, y in zip(ld, sd):
        assert y.statistic == pytest.approx(x.statistic, rel=1e-12) and y.p_value == pytest.approx(x.p_value, rel=1e-6)
    columns = [settings.data.target, *local.features.columns]
    assert se.shared_rows(columns) == le.shared_rows(columns)
    facts = se.facts()
    assert facts["rows"] == 3000 and facts["sample_rows"] == 500
    assert len(spark.eval_frame) == 500 and set(spark.eval_frame.columns) >= set(local.features.columns)


@pytest.mark.spark
def test_a_csv_file_on_spark_draws_the_in_process_bootstrap_and_residual_sample(ames, monkeypatch):
    """Row order matters to the block bootstrap and the residual sample: on a CSV file (Spark
    keeps its line order) they are the in-process engine's, draw for draw."""
    from pipeline.session import GateSession

    folder, config = ames
    monkeypatch.chdir(folder)
    csv = folder / "ames_3000.csv"
    if not csv.exists():
        _rows_file(folder, config, 3000)
    settings = config_mod.load(config, "staging")
    cfg = settings.gates.residuals
    settings = settings.model_copy(
        update={"gates": settings.gates.model_copy(update={"residuals": cfg.model_copy(update={"sample_size": 700})})}
    )
    local = GateSession(settings, "models:/ames-price/2", csv)
    spark = GateSession(settings, "models:/ames-price/2", csv, engine="spark", spark_master="local[2]")
    lb = local.evaluation.bootstrap("mae", 500, 0.95, settings.seed, 1000)  # 1,000 of 3,000 rows per resample
    sb = spark.evaluation.bootstrap("mae", 500, 0.95, settings.seed, 1000)
    assert sb.delta == pytest.approx(lb.delta, rel=1e-9)
    np.testing.assert_allclose(sb.samples, lb.samples, rtol=1e-9)
    for ordered in (False, True):
        lr, sr = local.evaluation.residuals(ordered), spark.evaluation.residuals(ordered)
        assert len(sr.resid) == 700
        np.testing.assert_allclose(sr.resid, lr.resid, rtol=1e-9)


@pytest.mark.spark
def test_a_parquet_row_that_breaks_the_contract_is_one_line_naming_its_column(ames, monkeypatch, tmp_path):
    from pipeline.errors import InputError
    from pipeline.session import GateSession

    folder, config = ames
    monkeypatch.chdir(folder)
    frame = pd.read_csv(AMES, nrows=200)
    frame["Gr_Liv_Area"] = frame["Gr_Liv_Area"].astype(object)
    frame.loc[150, "Gr_Liv_Area"] = "large"
    bad = tmp_path / "bad.parquet"
    frame.astype({"Gr_Liv_Area": str}).to_parquet(bad)
    settings = config_mod.load(config, "staging")
    session = GateSession(settings, "models:/ames-price/2", bad, engine="spark", spark_master="local[2]")
    with pytest.raises(InputError) as e:
        session.evaluation.rows()
    assert str(e.value) == f"{bad}: column 'Gr_Liv_Area' row 151: text 'large' in a numeric column"


def test_the_spark_engine_refuses_what_it_cannot_gate_in_one_line(tmp_path, monkeypatch):
    """No Java, a classifier, no logged model: one line each, before anything runs."""
    settings = config_mod.load(write_project(tmp_path), "staging")
    assert spark_mod.unusable(settings, None) == "needs --model-uri: Spark scores a logged model (mlflow.pyfunc.spark_udf)"
    binary = settings.model_copy(update={"data": settings.data.model_copy(update={"task": "binary"})})
    assert spark_mod.unusable(binary, "models:/m/1").startswith("data.task binary: the Spark engine gates regression models only")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(spark_mod, "_which", lambda name: None)
    if spark_mod.available() is None or "pyspark" not in spark_mod.available():
        assert spark_mod.available() == "no Java runtime (java on PATH or JAVA_HOME): Spark runs on the JVM"

"""The default model's fast parts predict what sklearn's own parts predict, to the last bit.

FrameEncoder stands in for ColumnTransformer(passthrough + OrdinalEncoder) and
CodedHistGradientBoostingRegressor for HistGradientBoostingRegressor's per-predict
re-encoding of categories (pipeline/features.py, pipeline/train.py: why). These tests fit
both designs on the Ames training rows and compare on rows made awkward on purpose.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.preprocessing import OrdinalEncoder

from conftest import write_project
from pipeline import config, data, train
from pipeline.features import FrameEncoder


@pytest.fixture(scope="module")
def ames(tmp_path_factory: pytest.TempPathFactory):
    settings = config.load(write_project(tmp_path_factory.mktemp("design")))
    ds = data.load(settings)
    sp = data.split(settings, ds)
    return settings, ds.features, sp.train, sp.eval


def awkward(frame: pd.DataFrame, spec: data.FeatureSpec, seed: int = 0) -> pd.DataFrame:
    """The evaluation rows with missing numbers, missing and unseen categories, and nullable dtypes."""
    rng = np.random.default_rng(seed)
    out = frame[spec.columns].copy()
    n = len(out)
    for col in spec.numeric[:10]:
        out.loc[rng.random(n) < 0.1, col] = np.nan
    for col in spec.categorical[:10]:
        out[col] = out[col].astype(object)
        out.loc[rng.random(n) < 0.1, col] = None
        out.loc[rng.random(n) < 0.05, col] = "never seen in training"
    out[spec.numeric[0]] = out[spec.numeric[0]].astype("Float64")  # pd.NA for the missing ones
    return out


def reference_encoder(spec: data.FeatureSpec) -> ColumnTransformer:
    ct = ColumnTransformer(
        [("num", "passthrough", list(spec.numeric)),
         ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan),
          list(spec.categorical))],
        verbose_feature_names_out=False,
    )
    return ct.set_output(transform="pandas")


def test_frame_encoder_gives_the_ordinal_encoders_numbers(ames):
    _, spec, train_rows, eval_rows = ames
    ours = FrameEncoder(list(spec.numeric), list(spec.categorical)).fit(train_rows[spec.columns])
    ref = reference_encoder(spec).fit(train_rows[spec.columns])
    rows = awkward(eval_rows, spec)
    expected = ref.transform(rows).astype("float64").to_numpy()
    # Many rows (one factorize per column) and a few rows (one object array) take different paths.
    np.testing.assert_array_equal(ours.transform(rows), expected)
    for i in range(0, 40):
        np.testing.assert_array_equal(ours.transform(rows.iloc[[i]]), expected[[i]])
    # Column order of the input does not matter; a missing column is an error that names it.
    np.testing.assert_array_equal(ours.transform(rows[rows.columns[::-1]]), expected)
    with pytest.raises(ValueError, match=spec.categorical[0]):
        ours.transform(rows.drop(columns=[spec.categorical[0]]))


def test_coded_booster_predicts_what_sklearns_booster_predicts(ames):
    settings, spec, train_rows, eval_rows = ames
    model = train.fit(settings, spec, train_rows)
    booster = model["regressor"].regressor_
    assert isinstance(booster, train.CodedHistGradientBoostingRegressor)
    # sklearn's own class with the same fitted state: its predict re-encodes through its ColumnTransformer.
    reference = copy.copy(booster)
    reference.__class__ = HistGradientBoostingRegressor
    X = model["preprocess"].transform(awkward(eval_rows, spec, seed=1))
    # Codes no category had in training (a negative one, a large one) and missing codes.
    X[:5, len(spec.numeric)] = [-1.0, 999.0, np.nan, 0.5, 3.0]
    np.testing.assert_array_equal(booster.predict(X), reference.predict(X))
    for i in range(20):
        assert booster.predict(X[[i]])[0] == reference.predict(X[[i]])[0]
    # Infinity in a categorical column: sklearn's error, not a silent code.
    X[0, len(spec.numeric)] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        booster.predict(X[:1])


def test_saved_and_loaded_model_predicts_the_same(ames, tmp_path: Path):
    settings, spec, train_rows, eval_rows = ames
    model = train.fit(settings, spec, train_rows)
    rows = awkward(eval_rows, spec, seed=2)
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    loaded = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))


def test_large_frames_are_predicted_in_blocks_with_the_same_numbers(ames, monkeypatch: pytest.MonkeyPatch):
    settings, spec, train_rows, eval_rows = ames
    model = train.fit(settings, spec, train_rows)
    rows = awkward(eval_rows, spec, seed=3)
    whole = model.predict(rows)
    monkeypatch.setattr(train, "_PREDICT_BLOCK", 100)
    calls = []
    original = train.Pipeline.predict
    monkeypatch.setattr(train.Pipeline, "predict", lambda self, X, **kw: calls.append(len(X)) or original(self, X, **kw))
    np.testing.assert_array_equal(model.predict(rows), whole)
    assert calls == [100] * (len(rows) // 100) + ([len(rows) % 100] if len(rows) % 100 else [])


def test_saved_booster_holds_its_trees_as_a_few_arrays(ames, tmp_path: Path):
    settings, spec, train_rows, eval_rows = ames
    booster = train.fit(settings, spec, train_rows)["regressor"].regressor_
    path = tmp_path / "booster.skops"
    skops.io.dump(booster, path)
    import zipfile

    arrays = [n for n in zipfile.ZipFile(path).namelist() if n.endswith(".npy")]
    # sklearn's own booster is saved as ~1,960 arrays (three per tree); packed, 130 (the bin edges per column remain).
    assert len(booster._predictors) == 600 and len(arrays) < 200, len(arrays)
    loaded = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    assert [len(t.nodes) for (t,) in loaded._predictors] == [len(t.nodes) for (t,) in booster._predictors]
    X = FrameEncoder(list(spec.numeric), list(spec.categorical)).fit(train_rows).transform(eval_rows)
    np.testing.assert_array_equal(loaded.predict(X), booster.predict(X))

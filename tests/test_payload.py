"""pipeline.live.payload: a request's JSON rows parsed as `mlflow models serve` parses them."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from mlflow.models import infer_signature
from mlflow.pyfunc.scoring_server import infer_and_parse_data
from mlflow.types.schema import ColSpec, Schema

from conftest import AMES
from pipeline.live import payload
from pipeline.live.client import scoring_payload

SCHEMA = Schema(
    [
        ColSpec("double", "area"),
        ColSpec("long", "rooms"),
        ColSpec("string", "kind"),
        ColSpec("boolean", "new"),
        ColSpec("float", "score"),
        ColSpec("integer", "floor"),
    ]
)
ROW = {"area": 1.5, "rooms": 3, "kind": "a", "new": True, "score": 0.25, "floor": 2}

CASES = {
    "split": {"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())]}},
    "records": {"dataframe_records": [ROW, {**ROW, "area": 2}]},
    "integers for doubles": {"dataframe_split": {"columns": ["area", "score"], "data": [[1, 2], [3, 4]]}},
    "numbers as text": {"dataframe_split": {"columns": ["area", "rooms"], "data": [["1.5", "3"]]}},
    "missing values": {"dataframe_records": [{**ROW, "area": None, "kind": None}]},
    "text all missing": {"dataframe_split": {"columns": ["kind", "area"], "data": [[None, 1.0], [None, None]]}},
    "a column the schema lacks": {"dataframe_split": {"columns": ["area", "other"], "data": [[1.0, "x"]]}},
    "columns missing": {"dataframe_split": {"columns": ["area"], "data": [[1.0]]}},
    "an index": {"dataframe_split": {"columns": ["area"], "data": [[1.0], [2.0]], "index": [7, 9]}},
    "no columns": {"dataframe_split": {"data": [[1.5, 3, "a", True, 0.25, 2]]}},
    "numbers in a text column": {"dataframe_records": [{"kind": 3}, {"kind": 4}]},
    "mixed text and numbers": {"dataframe_records": [{"kind": 3}, {"kind": "b"}]},
    "text for a long": {"dataframe_records": [{"rooms": "three"}]},
    "a missing long": {"dataframe_records": [{"rooms": None}]},
    "a float for a long": {"dataframe_records": [{"rooms": 2.5}]},
    "split as a list": {"dataframe_split": [[1.0]]},
    "records as a dict": {"dataframe_records": {"area": 1.0}},
    "split with an unknown key": {"dataframe_split": {"data": [[1.0]], "columns": ["area"], "dtype": "x"}},
    "split without data": {"dataframe_split": {"columns": ["area"]}},
    "both formats": {"dataframe_split": {"data": [[1.0]], "columns": ["area"]}, "dataframe_records": [{"area": 1.0}]},
    "instances": {"instances": [ROW]},
    "duplicate columns": {"dataframe_split": {"columns": ["area", "area"], "data": [[1.0, 2.0]]}},
    "no rows": {"dataframe_records": []},
}


def _mlflows(doc, schema):
    try:
        return infer_and_parse_data(json.loads(json.dumps(doc)), schema), None
    except Exception as e:  # noqa: BLE001  what MLflow refuses, the fast path must refuse the same way
        return None, (type(e), str(e))


def _ours(doc, schema):
    try:
        return payload.frame_from_json(json.loads(json.dumps(doc)), schema, payload.simple_casts(schema)), None
    except Exception as e:  # noqa: BLE001
        return None, (type(e), str(e))


# The same columns with a 64-bit integer for the 32-bit one, which `_typed` leaves to the slower
# paths: with it every case above takes those, without it the plain ones take `_typed`.
SCHEMAS = {
    "with int32": SCHEMA,
    "without": Schema([c if c.name != "floor" else ColSpec("long", "floor") for c in SCHEMA.inputs]),
}


def _as_objects(frame):
    """MLflow's frame with its text (pandas' str) columns and its column names held as Python
    objects, as `_typed` holds them."""
    text = [c for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)]
    frame = frame.astype({c: object for c in text}) if text else frame
    return frame.set_axis(frame.columns.astype(object), axis=1)


@pytest.mark.parametrize("schema", list(SCHEMAS))
@pytest.mark.parametrize("case", list(CASES))
def test_each_payload_parses_as_mlflows_parser_parses_it(case, schema):
    doc = CASES[case]
    theirs, their_error = _mlflows(doc, SCHEMAS[schema])
    ours, our_error = _ours(doc, SCHEMAS[schema])
    assert our_error == their_error
    if not isinstance(theirs, pd.DataFrame):  # an error, or TF-serving input MLflow returns as it is
        assert ours == theirs
    else:
        typed = payload._typed(json.loads(json.dumps(doc)), payload.simple_casts(SCHEMAS[schema])) is not None
        pd.testing.assert_frame_equal(  # `_typed`: text as objects, 0..n-1 as an Index
            ours,
            _as_objects(theirs) if typed else theirs,
            check_dtype=True,
            check_index_type="equiv" if typed else True,
            check_column_type=True,
        )


def test_plain_rows_take_the_typed_path_and_others_do_not():
    schema = SCHEMAS["without"]
    casts = payload.simple_casts(schema)
    typed = {k for k, doc in CASES.items() if len(doc) == 1 and payload._typed(json.loads(json.dumps(doc)), casts) is not None}
    assert typed == {"split", "records", "integers for doubles", "missing values", "text all missing", "columns missing"}
    assert payload._typed(CASES["split"], payload.simple_casts(SCHEMA)) is None
    frame = payload._typed({"dataframe_records": [{"kind": None, "area": None}, {"kind": "a", "area": 2}]}, casts)
    assert frame["kind"].dtype == object and math.isnan(frame.loc[0, "kind"]) and math.isnan(frame.loc[0, "area"])


def test_the_fast_path_is_taken_for_plain_schemas_and_left_for_others(monkeypatch):
    assert payload.simple_casts(SCHEMA) is not None
    assert payload.simple_casts(Schema([ColSpec("datetime", "at")])) is None
    assert payload.simple_casts(Schema([ColSpec("binary", "blob")])) is None
    assert payload.simple_casts(None) is None
    # On the fast path MLflow's parser is not called; a refused payload still reaches it.
    calls = []
    monkeypatch.setattr(
        "mlflow.pyfunc.scoring_server.infer_and_parse_data", lambda doc, schema: calls.append(doc) or "mlflow"
    )
    assert isinstance(payload.frame_from_json(CASES["split"], SCHEMA, payload.simple_casts(SCHEMA)), pd.DataFrame)
    assert not calls
    assert payload.frame_from_json(CASES["instances"], SCHEMA, payload.simple_casts(SCHEMA)) == "mlflow"
    assert payload.frame_from_json(CASES["split"], SCHEMA, None) == "mlflow"


def test_ames_rows_as_the_client_sends_them_parse_as_mlflows_parser_parses_them():
    frame = pd.read_csv(AMES, nrows=60).drop(columns=["Sale_Price"])
    frame.loc[3, "Lot_Frontage"] = math.nan
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]
    frame.loc[5, text[0]] = None
    schema = infer_signature(frame).inputs
    assert payload.simple_casts(schema) is not None
    for rows in (frame.iloc[[0]], frame.iloc[[3]], frame.iloc[[5]], frame.iloc[:40]):
        doc = json.loads(scoring_payload(rows))
        theirs, their_error = _mlflows(doc, schema)
        ours, our_error = _ours(doc, schema)
        assert their_error is None and our_error is None
        assert all(ours[c].dtype == object for c in text)  # `_typed` built it
        pd.testing.assert_frame_equal(ours, _as_objects(theirs), check_dtype=True)


def test_the_typed_frame_is_the_same_without_pandas_block_constructor(monkeypatch):
    """pandas 2 has no pandas.api.internals: the frame is joined from one frame per block instead."""
    import sys

    casts = payload.simple_casts(SCHEMAS["without"])
    doc = {"dataframe_records": [ROW, {**ROW, "area": None, "kind": None}]}
    fast = payload._typed(doc, casts)
    monkeypatch.setitem(sys.modules, "pandas.api.internals", None)  # importing it raises ImportError
    joined = payload._typed(doc, casts)
    pd.testing.assert_frame_equal(joined, fast, check_index_type=True, check_column_type=True)
    assert [str(t) for t in fast.dtypes] == ["float64", "int64", "object", "bool", "float32", "int64"]

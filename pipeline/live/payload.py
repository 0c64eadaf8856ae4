"""A scoring request's JSON rows as the DataFrame `mlflow models serve` builds from them, without
MLflow's per-column casts where they change nothing.

MLflow's parser (`infer_and_parse_data`) builds the DataFrame, then casts every column of the
schema by assigning `frame[c] = frame[c].astype(t)`: on a 73-column row that loop is ~75 % of
parsing and most of what serving added to a single-row answer. For a schema of plain column
types (numbers, booleans, strings) `frame_from_json` builds the same DataFrame the same way
and casts only the columns whose dtype differs, with MLflow's rules; any other payload or
schema, and any payload that fails on the way, goes to MLflow's parser, which gives MLflow's
answer or error. tests/test_payload.py compares both on many payloads.
"""

from __future__ import annotations

from typing import Any

SPLIT, RECORDS = "dataframe_split", "dataframe_records"
SPLIT_KEYS = {"columns", "data", "index"}


def simple_casts(schema) -> dict[str, Any] | None:
    """column -> the dtype MLflow casts it to, when every column of `schema` is a named column of a
    plain type (double, float, long, integer, boolean, string); None otherwise (MLflow parses)."""
    from mlflow.types.schema import DataType

    plain = {DataType.double, DataType.float, DataType.long, DataType.integer, DataType.boolean, DataType.string}
    if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
        return None
    types = schema.input_types()
    if not all(isinstance(t, DataType) and t in plain for t in types):
        return None
    return {name: t.to_pandas() for name, t in zip(schema.input_names(), types)}


def frame_from_json(doc: dict[str, Any], schema, casts: dict[str, Any] | None):
    """The request's rows (`doc` without its params) as MLflow's parser returns them."""
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    if casts is not None and len(doc) == 1:
        try:
            frame = _frame(doc)
            if frame is not None and frame.columns.is_unique:
                return _cast(frame, casts)
        except Exception:  # MLflow's parser says what is wrong, in its own words
            pass
    return infer_and_parse_data(doc, schema)


def _frame(doc: dict[str, Any]):
    """The DataFrame mlflow.utils.proto_json_utils.dataframe_from_parsed_json builds, for the
    shapes it accepts; None for anything else."""
    import pandas as pd

    ((key, value),) = doc.items()
    if key == RECORDS and isinstance(value, list):
        return pd.DataFrame(data=value)
    if key == SPLIT and isinstance(value, dict) and "data" in value and set(value) <= SPLIT_KEYS:
        return pd.DataFrame(index=value.get("index"), columns=value.get("columns"), data=value["data"])
    return None


def _cast(frame, casts: dict[str, Any]):
    """mlflow.utils.proto_json_utils.cast_df_types_according_to_schema for plain types, casting
    only what changes: a text column pandas read as strings stays so (as there), a column
    already of its dtype is left as it is."""
    import numpy as np
    import pandas as pd

    changed = {}
    for name, dtype in casts.items():
        if name not in frame.columns:
            continue
        have = frame[name].dtype
        if np.dtype(dtype).kind in "OU" and isinstance(have, pd.StringDtype):
            continue
        if have != dtype:
            changed[name] = dtype
    return frame.astype(changed) if changed else frame

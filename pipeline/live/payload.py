"""A scoring request's JSON rows as the DataFrame `mlflow models serve` builds from them, without
MLflow's per-column casts where they change nothing.

MLflow's parser (`infer_and_parse_data`) builds the DataFrame, then casts every column of the
schema by assigning `frame[c] = frame[c].astype(t)`: on a 73-column row that loop is ~75 % of
parsing and most of what serving added to a single-row answer. For a schema of plain column
types (numbers, booleans, strings) `frame_from_json` builds the same DataFrame the same way
and casts only the columns whose dtype differs, with MLflow's rules; any other payload or
schema, and any payload that fails on the way, goes to MLflow's parser, which gives MLflow's
answer or error. tests/test_payload.py compares both on many payloads.

The commonest payload, rows whose every value is already of its column's type (numbers in number
columns, text or null in text columns), skips pandas' per-cell inference too: `_typed` builds one
block per dtype from the values. Its text columns and its column names hold Python strings
(object dtype), as the gate run's frames do (pipeline.data), where pandas 3 infers its
Arrow-backed `str`: the same values, and on Ames the model reads an object row ~3 ms faster
(each Arrow column is converted back to objects in the model's preprocessing).
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
            frame = _typed(doc, casts)
            if frame is not None:
                return frame
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


def _rows(doc: dict[str, Any]) -> tuple[list[str], list[list[Any]]] | None:
    """(columns, rows) of a payload without an index whose columns are unique names; None otherwise."""
    ((key, value),) = doc.items()
    if key == SPLIT and isinstance(value, dict) and set(value) == {"columns", "data"}:
        columns, rows = value["columns"], value["data"]
    elif key == RECORDS and isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        columns = list(value[0])
        if any(list(r) != columns for r in value):  # keys in another order or missing: pandas aligns them
            return None
        rows = [list(r.values()) for r in value]
    else:
        return None
    if not (isinstance(columns, list) and isinstance(rows, list) and rows and columns):
        return None
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        return None
    if not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
        return None
    return columns, rows


def _number(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) or v is None


def _typed(doc: dict[str, Any], casts: dict[str, Any]):
    """The frame of a payload whose every value already has its column's type, built from one
    block per dtype: float columns from numbers (null: NaN), integer columns from integers,
    boolean from booleans, text (object) from strings and nulls (NaN, or None in a column of
    nulls only, as pandas reads them); None for anything else (a column the schema lacks, a
    number sent as text, an index), which the slower paths parse."""
    import numpy as np
    import pandas as pd

    shape = _rows(doc)
    if shape is None:
        return None
    columns, rows = shape
    if any(c not in casts for c in columns):
        return None
    values = list(zip(*rows))  # per column
    groups: dict[np.dtype, list[int]] = {}
    for j, c in enumerate(columns):
        dtype = np.dtype(casts[c])
        kind = dtype.kind
        col = values[j]
        if kind == "f":
            ok = all(_number(v) for v in col)
        elif dtype == np.int64:  # int32: MLflow's cast of what does not fit is left to it
            ok = all(isinstance(v, int) and not isinstance(v, bool) for v in col)
        elif kind == "b":
            ok = all(isinstance(v, bool) for v in col)
        elif kind == "O":
            ok = all(isinstance(v, str) or v is None for v in col)
        else:
            ok = False
        if not ok:
            return None
        groups.setdefault(dtype, []).append(j)
    # 0..n-1 as an Index of integers, not pandas' RangeIndex: MLflow's schema enforcement builds its
    # frame again from one Series per column, and aligning 73 RangeIndexes cost ~1.3 ms of a row's
    # ~4 ms predict on Ames (the same labels, the same predictions).
    # The column names as Python strings too: pandas 3 would hold them in an Arrow array, which
    # every name lookup and iteration (MLflow's enforcement does 73 of each) converts back.
    index, names = pd.Index(np.arange(len(rows))), pd.Index(columns, dtype=object)
    blocks = []  # (the block's values, one row per column; the columns' places)
    for dtype, idx in groups.items():
        if dtype.kind == "O":
            block = np.array([values[j] for j in idx], dtype=object)
            # pandas reads a text column's nulls as NaN, and a column of nulls only as None
            texts = np.array([any(v is not None for v in values[j]) for j in idx])
            block[pd.isna(block) & texts[:, None]] = np.nan  # the only missing values here are None
        else:  # float32 as MLflow gets it: the float64 (null: NaN) or int64 pandas reads, then cast
            via = {"f": np.float64, "i": np.int64, "b": np.bool_}[dtype.kind]
            block = np.array([values[j] for j in idx], dtype=via).astype(dtype, copy=False)
        blocks.append((block, np.array(idx)))
    return _from_blocks(blocks, index, names)


def _from_blocks(blocks, index, columns):
    """The DataFrame of these blocks as they are (pandas' own constructor for it, where pandas has
    one: ~0.3 ms less than joining a frame per block, on 73 columns)."""
    import pandas as pd

    try:
        from pandas.api.internals import create_dataframe_from_blocks
    except ImportError:  # pandas 2
        parts = [pd.DataFrame(b.T, index=index, columns=columns[at], dtype=b.dtype) for b, at in blocks]
        frame = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]
        frame.columns = pd.Index(list(frame.columns), dtype=object)
        return frame[columns]
    return create_dataframe_from_blocks(blocks, index=index, columns=columns)

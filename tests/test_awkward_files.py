"""Valid but awkward data files load as the plain file does, and train.

A byte-order mark, Windows line endings, quoted fields with newlines, another column
order and extra columns are all still the same data: the parsed frame, the features and
the training must not notice.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from conftest import AMES, ROOT, store_state, write_project
from pipeline import config, data

ROWS = 600  # above the Ames contract's min_rows (500)
EXTRA = ["Listing_Agent", "Notes", "Row_Number"]


def _ames_head(n: int = ROWS) -> tuple[list[str], list[list[str]]]:
    with open(AMES, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [next(reader) for _ in range(n)]


HEADER, ROWS_TEXT = _ames_head()


def _write(path: Path, header: list[str], rows: list[list[str]], *, newline: str = "\n", bom: bool = False) -> Path:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline).writerows([header, *rows])
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8"))
    return path


def _reordered(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    order = list(reversed(range(len(header))))
    return [header[i] for i in order], [[r[i] for i in order] for r in rows]


def _with_extra(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    # Text, an all-empty column and a number: none of them would pass as features.
    extra = [[f"agent {i % 7}", "", str(i + 1)] for i in range(len(rows))]
    return [*header, *EXTRA], [[*r, *e] for r, e in zip(rows, extra)]


def _with_newline_in_cell(rows: list[list[str]], row: int, column: str, value: str) -> list[list[str]]:
    rows = [list(r) for r in rows]
    rows[row - 1][HEADER.index(column)] = value
    return rows


@pytest.fixture(autouse=True)
def _own_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PIPELINE_CONFIG", raising=False)


def _load(tmp_path: Path, path: Path, **data_overrides) -> data.Dataset:
    cfg = write_project(tmp_path / f"p-{path.stem}", {"data": {"path": str(path), **data_overrides}})
    return data.load(config.load(cfg))


@pytest.fixture
def plain(tmp_path: Path) -> data.Dataset:
    return _load(tmp_path, _write(tmp_path / "plain.csv", HEADER, ROWS_TEXT))


def _same_data(a: data.Dataset, b: data.Dataset) -> None:
    assert set(a.features.numeric) == set(b.features.numeric)
    assert set(a.features.categorical) == set(b.features.categorical)
    cols = sorted([a.target, *a.features.columns])
    pd.testing.assert_frame_equal(a.frame[cols].reset_index(drop=True), b.frame[cols].reset_index(drop=True))


def test_byte_order_mark(tmp_path: Path, plain: data.Dataset):
    path = _write(tmp_path / "bom.csv", HEADER, ROWS_TEXT, bom=True)
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    loaded = _load(tmp_path, path)
    # The first column keeps its name: the mark is not part of it.
    assert "MS_SubClass" in loaded.features.categorical
    assert not any(c.startswith("\ufeff") for c in loaded.frame.columns)
    _same_data(loaded, plain)


def test_windows_line_endings(tmp_path: Path, plain: data.Dataset):
    path = _write(tmp_path / "crlf.csv", HEADER, ROWS_TEXT, newline="\r\n")
    assert path.read_bytes().count(b"\r\n") == ROWS + 1
    loaded = _load(tmp_path, path)
    # No category or column name ends in a carriage return.
    assert not any(c.endswith("\r") for c in loaded.frame.columns)
    last = HEADER[-1]
    assert last == "Sale_Price" or not loaded.frame[last].astype(str).str.endswith("\r").any()
    _same_data(loaded, plain)


def test_quoted_field_with_newlines(tmp_path: Path, plain: data.Dataset):
    rows = _with_newline_in_cell(ROWS_TEXT, 5, "Neighborhood", "North\nAmes")
    rows = _with_newline_in_cell(rows, 9, "MS_Zoning", "Residential\r\nLow")
    path = _write(tmp_path / "newlines.csv", HEADER, rows, newline="\r\n")
    assert b'"North\nAmes"' in path.read_bytes()
    loaded = _load(tmp_path, path)
    assert len(loaded.frame) == ROWS
    assert loaded.frame["Neighborhood"].iloc[4] == "North\nAmes"
    assert loaded.frame["MS_Zoning"].iloc[8] == "Residential\r\nLow"
    # Every other row and column is untouched: the newline did not shift a field.
    others = loaded.frame.drop(index=loaded.frame.index[[4, 8]])
    expected = plain.frame.drop(index=plain.frame.index[[4, 8]])
    pd.testing.assert_frame_equal(others.reset_index(drop=True), expected[others.columns].reset_index(drop=True))


def test_columns_in_another_order(tmp_path: Path, plain: data.Dataset):
    header, rows = _reordered(HEADER, ROWS_TEXT)
    assert header[0] == HEADER[-1]
    loaded = _load(tmp_path, _write(tmp_path / "reordered.csv", header, rows))
    _same_data(loaded, plain)


@pytest.mark.parametrize("how", ["drop_columns", "feature_lists"])
def test_extra_columns_are_not_features(how: str, tmp_path: Path, plain: data.Dataset):
    header, rows = _with_extra(HEADER, ROWS_TEXT)
    path = _write(tmp_path / "extra.csv", header, rows)
    if how == "drop_columns":
        overrides = {"drop_columns": EXTRA}
    else:  # both lists given: nothing else is a feature
        overrides = {"categorical_features": list(plain.features.categorical)}
    loaded = _load(tmp_path, path, **overrides)
    assert not set(EXTRA) & set(loaded.features.columns)
    assert not set(EXTRA) & set(loaded.frame.columns)
    assert loaded.features.columns == plain.features.columns
    _same_data(loaded, plain)


def _train_main():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_awkward_file_trains_and_registers(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Every awkwardness at once, through scripts/train.py; then a bad file leaves that store alone."""
    rows = _with_newline_in_cell(ROWS_TEXT, 5, "Neighborhood", "North\nAmes")
    header, rows = _with_extra(*_reordered(HEADER, rows))
    path = _write(tmp_path / "awkward.csv", header, rows, newline="\r\n", bom=True)
    folder = tmp_path / "p"
    # A small booster: this checks the file reaches the registry, not the model's quality.
    cfg = write_project(folder, {"data": {"path": str(path), "drop_columns": EXTRA}}, model={"params": {"max_iter": 60}}, store=False)
    main = _train_main()
    assert store_state(folder) == "absent"
    with threadpool_limits(limits=1, user_api="openmp"):  # a loaded 2-core machine: no OpenMP spinning
        code = main(["--config", str(cfg)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "registered ames-price version 1" in out
    assert store_state(folder) == (1, 1)

    import mlflow.models

    from pipeline import registry

    settings = config.load(cfg)
    registry.connect(settings)
    names = mlflow.models.get_model_info("models:/ames-price/1").signature.inputs.input_names()
    assert "Neighborhood" in names and "Sale_Price" not in names
    assert not set(EXTRA) & set(names)

    # The same file with one text cell in a declared numeric column: refused, store as it was.
    bad_rows = [list(r) for r in rows]
    bad_rows[2][header.index("Lot_Area")] = "n/a sq ft"
    _write(path, header, bad_rows, newline="\r\n", bom=True)
    code = main(["--config", str(cfg)])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.strip() == f"error: {path}: column 'Lot_Area' row 3: text 'n/a sq ft' in a numeric column"
    assert store_state(folder) == (1, 1)

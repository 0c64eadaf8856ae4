"""Data: read a CSV, check it against the contract, split it reproducibly.

Rows in messages are data rows counted from 1, the header not counted; the CSV line is
given where the parser knows it.
"""

from __future__ import annotations

import codecs
import csv
import ctypes
import hashlib
import io
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if int(pd.__version__.split(".")[0]) >= 3 and "pyspark.pandas" not in sys.modules and find_spec("pyspark"):
    # Where pyspark is installed (the [spark] extra), pandera imports pyspark.pandas at import and
    # again at each schema's validation. On pandas 3 that import warns, then fails (pyspark 4.3:
    # "cannot import name 'DateOffset'"), 0.35 s each time; marked absent, it fails at once, as
    # it would anyway. Nothing here uses pyspark.pandas (pipeline.spark uses pyspark.sql).
    sys.modules["pyspark.pandas"] = None  # type: ignore[assignment]
import pandera.pandas as pa  # noqa: E402
from pandera.errors import SchemaErrors

from pipeline.config import DataSettings, Settings
from pipeline.errors import InputError


@dataclass(frozen=True)
class FeatureSpec:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]


@dataclass(frozen=True)
class Dataset:
    """A contract-checked frame with its resolved features and digest."""

    path: Path
    frame: pd.DataFrame
    target: str
    features: FeatureSpec
    digest: str


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    eval: pd.DataFrame
    grouped: int = 0  # rows that repeat another row's record, kept on the same side as it


def record_columns(
    frame: pd.DataFrame, features: list[str], target: str, id_columns: list[str], classifier: bool = False
) -> tuple[list[str], str]:
    """What identifies a record (the split keeps a record's rows on one side; the overlap gate
    counts records on both): (columns, how a message names them). The id columns when the
    data declares them, else every feature and the target (distinct sales of identical
    houses at different prices are different records); a classifier's, every feature: rows
    of identical inputs with different labels are one record, or the split would send a
    group's labels to different sides, and the evaluation rows would hold the very labels
    their inputs' training rows lack (Titanic, four columns: ROC AUC 0.59 instead of 0.81)."""
    ids = [c for c in id_columns if c in frame.columns]
    if ids:
        return ids, f"id column{'s' if len(ids) > 1 else ''} ({', '.join(ids)})"
    if classifier:
        return list(features), "columns (every feature)"
    return [*features, target], "columns (every feature and the target)"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's values and column names, independent of how it was stored."""
    h = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
    return h.hexdigest()


def _read(path: Path) -> tuple[bytes, str]:
    """The file's UTF-8 bytes without a byte-order mark, and its text; refuses what is not CSV text."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError(f"{path}: file is empty")
    if b"\x00" in raw[:65536]:
        offset = raw.index(b"\x00")
        raise InputError(f"{path}: not CSV text (binary content, NUL byte at offset {offset})")
    try:
        # utf-8-sig drops a byte-order mark; newline handling is left to the csv parser.
        text = raw.decode("utf-8-sig")
        return (raw[3:] if raw.startswith(codecs.BOM_UTF8) else raw), text
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})"
        ) from None


def _lines(text: str) -> Iterator[str]:
    """The lines of `text` as io.StringIO(text) yields them (each up to and with its \\n).

    Without StringIO's copy of the whole text (4 bytes per character: 1.8 GB for a 460 MB
    file), so the csv module's strict pass costs no memory beyond the text itself.
    """
    find, start, end = text.find, 0, len(text)
    while start < end:
        stop = find("\n", start)
        stop = end if stop < 0 else stop + 1
        yield text[start:stop]
        start = stop


def read_csv(path: Path) -> pd.DataFrame:
    """Parse CSV text strictly: every row has the header's field count, column names unique."""
    path = Path(path)
    raw, text = _read(path)
    header = next(csv.reader(_lines(text)), [])
    names = [h.strip() for h in header]
    if len(names) < 2:
        raise InputError(f"{path}: line 1: not a CSV header (found {len(names)} column)")
    seen: set[str] = set()
    for name in names:
        if name == "":
            raise InputError(f"{path}: line 1: empty column name")
        if name in seen:
            raise InputError(f"{path}: column '{name}': duplicated column name")
        seen.add(name)
    # pandas pads a row with too few fields with missing values: count every row's fields here.
    reader = csv.reader(_lines(text))
    next(reader, None)
    row, start = 0, reader.line_num + 1
    try:
        for fields in reader:
            if fields:  # blank lines are skipped, as pandas skips them
                row += 1
                if len(fields) != len(names):
                    raise InputError(
                        f"{path}: line {start} (row {row}): expected {len(names)} fields as in the header, saw {len(fields)}"
                    )
            start = reader.line_num + 1
    except csv.Error as e:
        raise InputError(f"{path}: line {start} (row {row + 1}): not CSV text ({e})") from None
    # pandas parses the same characters from their UTF-8 bytes; nothing else is held meanwhile.
    data = io.BytesIO(raw)
    del reader, text, raw
    try:
        frame = pd.read_csv(data, encoding="utf-8", on_bad_lines="error", skipinitialspace=False)
    except pd.errors.ParserError as e:
        # pandas says "Expected 74 fields in line 12, saw 75": keep its words, one line.
        raise InputError(
            f"{path}: {str(e).strip().splitlines()[-1].removeprefix('Error tokenizing data. C error: ')}"
        ) from None
    except (pd.errors.EmptyDataError, csv.Error) as e:
        raise InputError(f"{path}: not CSV text ({e})") from None
    frame.columns = names
    if frame.empty:
        raise InputError(f"{path}: no data rows (header only)")
    release_memory()
    return frame


def is_parquet(path: Path) -> bool:
    """A Parquet file, or a folder of them (what Spark writes)."""
    return Path(path).is_dir() or Path(path).suffix == ".parquet"


def read_header(path: Path, what: str = "") -> list[str]:
    """The column names on a CSV file's first line (a Parquet file's or folder's schema), read without parsing the rest."""
    prefix = f"{what} {path}" if what else str(path)
    if is_parquet(path):
        import pyarrow.dataset as ds

        try:
            return list(ds.dataset(str(path), format="parquet").schema.names)
        except (OSError, ValueError) as e:  # pyarrow: ArrowInvalid is a ValueError
            raise InputError(
                f"{prefix}: not a readable Parquet file or folder ({str(e).splitlines()[0][:160]})"
            ) from None
    if not Path(path).is_file():
        raise InputError(f"{prefix}: file not found")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            first = f.readline()
    except UnicodeDecodeError as e:
        raise InputError(f"{prefix}: line 1: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise InputError(f"{prefix}: unreadable ({e.strerror})") from None
    return [h.strip() for h in next(csv.reader([first]), [])]


def check_header(path: Path, cfg: DataSettings, what: str) -> None:
    """A file meant to stand in for the configured data has every column the model and the gates read."""
    have = set(read_header(path, what))
    needed = [c for c in read_header(cfg.path, "data.path") if c not in {*cfg.drop_columns, *cfg.id_columns}]
    missing = [c for c in needed if c not in have]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{what} {path}: column '{missing[0]}' of {Path(cfg.path).name} is missing{more}")


def readable_header(settings: Settings) -> list[str] | None:
    """The data file's header when it can be read and holds the target and every listed
    feature; None otherwise (then loading the data says what is wrong, in its own words)."""
    cfg = settings.data
    try:
        header = read_header(cfg.path, "data.path")
    except InputError:
        return None
    listed = [cfg.target, *(cfg.numeric_features or []), *(cfg.categorical_features or [])]
    return header if all(c in header for c in listed) else None


MIN_EVAL_ROWS = 20  # fewer evaluation rows than this, and no gate's figure means anything


def config_problems(
    settings: Settings, header: list[str], features: FeatureSpec | None = None, rows: int | None = None
) -> list[str]:
    """Every column the config names that the data file does not have (or has as the wrong
    kind, when `features` is known), one line each naming the file and the key: what a run
    would otherwise find after training, or never."""
    cfg, g = settings.data, settings.gates
    have, out = set(header), []
    where = settings.config_path
    numeric = set(features.numeric) if features else set(cfg.numeric_features or [])
    kept = ({*features.columns} if features else set()) | set(cfg.id_columns)

    def missing(key: str, cols) -> None:
        for c in cols:
            if c not in have:
                out.append(f"{where}: {key}: column '{c}' is not in {cfg.path.name}")

    if cfg.target in (cfg.numeric_features or []) + (cfg.categorical_features or []):
        out.append(f"{where}: data: the target '{cfg.target}' is also listed as a feature")
    missing("data.id_columns", cfg.id_columns)
    missing("data.drop_columns", cfg.drop_columns)
    missing("data.contract.ranges", cfg.contract.ranges)
    missing("data.contract.missing_share", cfg.contract.missing_share)
    missing("gates.slices.columns", g.slices.columns)
    missing("gates.residuals.order_by", g.residuals.order_by or [])
    missing("gates.robustness.noise_sd", g.robustness.noise_sd)
    for c in g.robustness.noise_sd:
        if c in have and numeric and c not in numeric:
            out.append(f"{where}: gates.robustness.noise_sd: '{c}' is not a numeric feature")
    for i, exp in enumerate(g.robustness.directional):
        if exp.feature not in have:
            out.append(
                f"{where}: gates.robustness.directional.{i}.feature: column '{exp.feature}' is not in {cfg.path.name}"
            )
        elif numeric and exp.feature not in numeric:
            out.append(f"{where}: gates.robustness.directional.{i}.feature: '{exp.feature}' is not a numeric feature")
    for c in g.residuals.order_by or []:
        if c in have and kept and c not in kept:
            out.append(f"{where}: gates.residuals.order_by: '{c}' is neither a feature nor one of data.id_columns")
    if features is not None and cfg.categorical_features is not None:
        # Listed features leave the rest out of the model: say so, rather than drop them silently.
        listed = {cfg.target, *features.columns, *cfg.id_columns, *cfg.drop_columns}
        unlisted = [c for c in header if c not in listed]
        if unlisted:
            shown = ", ".join(f"'{c}'" for c in unlisted[:3]) + (
                f" and {len(unlisted) - 3} more" if len(unlisted) > 3 else ""
            )
            out.append(
                f"{where}: data.categorical_features: {len(unlisted)} column{'s' if len(unlisted) > 1 else ''} of "
                f"{cfg.path.name} in no list ({shown}): the model never sees them; list them, or name them in data.drop_columns"
            )
    if rows is not None:
        n_eval = (
            math.ceil(rows * settings.split.test_size)
            if settings.split.test_size < 1
            else int(settings.split.test_size)
        )
        if n_eval < MIN_EVAL_ROWS:
            out.append(
                f"{where}: split.test_size: {settings.split.test_size:g} leaves {n_eval} evaluation rows of {rows}; "
                f"the gates need at least {MIN_EVAL_ROWS}"
            )
    named = settings.model.params.get("monotonic_cst")
    if isinstance(named, dict):
        for c in named:
            if c not in have:
                out.append(
                    f"{settings.model_file or where}: model.params.monotonic_cst: column '{c}' is not in {cfg.path.name}"
                )
            elif numeric and c not in numeric:
                out.append(
                    f"{settings.model_file or where}: model.params.monotonic_cst: '{c}' is not a numeric feature"
                )
    return out


def release_memory() -> None:
    """Hand memory freed in small pieces back to the operating system (glibc only; else nothing).

    Parsing a large CSV and checking it free hundreds of MB that glibc's malloc keeps in
    its heap: the process's resident memory stays at its high-water mark, and the next
    large array (a predict's feature matrix) is mapped on top of it. malloc_trim(0)
    returns the free pages; it takes milliseconds.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None  # libc's malloc_trim, False where there is none, None until looked up


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def resolve_features(frame: pd.DataFrame, cfg: DataSettings) -> FeatureSpec:
    """Feature lists from config, or inferred from the parsed dtypes when not given."""
    excluded = {cfg.target, *cfg.id_columns, *cfg.drop_columns}
    given_num, given_cat = cfg.numeric_features, cfg.categorical_features
    listed = set(given_num or []) | set(given_cat or [])
    rest = [c for c in frame.columns if c not in excluded and c not in listed]
    if given_num is None:
        given_num = [c for c in rest if _is_numeric(frame[c])]
    if given_cat is None:
        given_cat = [c for c in rest if c not in given_num]
    return FeatureSpec(tuple(given_num), tuple(given_cat))


def _row(index) -> int:
    return int(index) + 1


def _first_bad_numeric(s: pd.Series) -> tuple[int, str] | None:
    coerced = pd.to_numeric(s, errors="coerce")
    bad = coerced.isna() & s.notna()
    if bad.any():
        i = bad.idxmax()
        return _row(i), str(s.loc[i])
    return None


def _schema(cfg: DataSettings, features: FeatureSpec) -> pa.DataFrameSchema:
    c = cfg.contract
    columns: dict[str, pa.Column] = {}

    def finite(s: pd.Series) -> pd.Series:
        return ~np.isinf(s)

    if cfg.classifier:  # labels: checked against data.classes when they are coded (label_codes)
        columns[cfg.target] = pa.Column(nullable=False)
    for name in [*([] if cfg.classifier else [cfg.target]), *features.numeric]:
        checks = [pa.Check(finite, element_wise=False, error="infinite value")]
        rng = c.ranges.get(name)
        if rng is not None and rng.min is not None:
            checks.append(pa.Check.ge(rng.min, error=f"value below the allowed minimum {rng.min:g}"))
        if rng is not None and rng.max is not None:
            checks.append(pa.Check.le(rng.max, error=f"value above the allowed maximum {rng.max:g}"))
        if name == cfg.target:
            if c.target_positive:
                checks.append(pa.Check.gt(0, error="target not > 0"))
            checks.append(pa.Check(lambda s: s.nunique() > 1, error="target has no variance", ignore_na=True))
        columns[name] = pa.Column(float, checks=checks, nullable=name != cfg.target, coerce=True)
    for name in features.categorical:
        columns[name] = pa.Column(nullable=True)
    return pa.DataFrameSchema(columns, strict=False, ordered=False)


def check_contract(frame: pd.DataFrame, cfg: DataSettings, path: Path) -> tuple[pd.DataFrame, FeatureSpec]:
    """Check a parsed frame against the data contract; return the typed frame and features.

    Raises InputError naming the file, column and row of the first violation.
    """
    c = cfg.contract
    features = resolve_features(frame, cfg)
    needed = [cfg.target, *features.columns]
    missing = [col for col in needed if col not in frame.columns]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        what = "target column" if missing[0] == cfg.target else "required column"
        raise InputError(f"{path}: {what} '{missing[0]}' is missing{more}")
    if not features.columns:
        raise InputError(f"{path}: no feature columns besides the target '{cfg.target}'")
    for col in [*([] if cfg.classifier else [cfg.target]), *features.numeric]:
        if not _is_numeric(frame[col]):
            bad = _first_bad_numeric(frame[col])
            if bad:
                raise InputError(f"{path}: column '{col}' row {bad[0]}: text '{bad[1]}' in a numeric column")
    target = frame[cfg.target]
    if target.isna().any():
        if cfg.rows_without_target == "refuse" or target.isna().all():
            raise InputError(
                f"{path}: column '{cfg.target}' row {_row(target.isna().idxmax())}: target is missing"
                + (" (data.rows_without_target: drop drops such rows)" if not target.isna().all() else " in every row")
            )
        frame = frame.loc[target.notna()]  # rows keep their index: messages still name the file's rows
    if len(frame) < c.min_rows:
        raise InputError(f"{path}: {len(frame)} rows < contract minimum {c.min_rows} (data.contract.min_rows)")
    for col in features.columns:
        share = float(frame[col].isna().mean())
        if share == 1.0:
            raise InputError(f"{path}: column '{col}': empty in every row")
        limit = c.missing_share.get(col, c.max_missing_share)
        if share > limit:
            raise InputError(
                f"{path}: column '{col}': missing in {share:.1%} of rows > {limit:.1%} allowed (data.contract)"
            )
    try:
        typed = _schema(cfg, features).validate(frame, lazy=True)
    except SchemaErrors as e:
        fc = e.failure_cases
        first = fc.iloc[0]
        col = first.get("column")
        idx = first.get("index")
        where = f" row {_row(idx)}" if idx is not None and not pd.isna(idx) else ""
        check = str(first.get("check"))
        value = first.get("failure_case")
        more = f" (and {len(fc) - 1} more)" if len(fc) > 1 else ""
        shown = "" if where == "" or pd.isna(value) else f" ({value})"
        raise InputError(f"{path}: column '{col}'{where}: {check}{shown}{more}") from None
    if not c.allow_duplicate_rows:
        hashes = pd.util.hash_pandas_object(typed[needed], index=False)
        dup = hashes.duplicated()
        if dup.any():
            i = dup.idxmax()
            first = hashes.index[hashes == hashes.loc[i]][0]
            raise InputError(f"{path}: row {_row(i)} duplicates row {_row(first)}")
    # Id columns stay beside the features, never among them: the gates may read them (the
    # rows' declared order, gates.residuals.order_by, may be one).
    ids = [col for col in cfg.id_columns if col in typed.columns and col not in needed]
    typed = typed[[*needed, *ids]].copy(deep=False)  # columns are replaced below, never written into
    for col in features.numeric:
        typed[col] = typed[col].astype("float64")
    if cfg.classifier:
        typed[cfg.target] = label_codes(typed[cfg.target], cfg, path)
    else:
        typed[cfg.target] = typed[cfg.target].astype("float64")
    for col in features.categorical:
        # Categories are text: numbers used as codes become strings, missing stays missing.
        typed[col] = _as_text(typed[col])
    release_memory()
    return typed, features


def label_text(s: pd.Series) -> pd.Series:
    """A target column's labels as text, numbers as written: 1 (not 1.0), 0.5, True."""
    if _is_numeric(s):
        v = s.astype("float64")
        if bool((np.isfinite(v) & (v == np.round(v))).all()):
            return v.astype("int64").astype(str)
    return s.astype(str)


def label_codes(s: pd.Series, cfg: DataSettings, path: Path) -> pd.Series:
    """A classifier's target as the model's class codes (float): binary, 1 for
    data.positive_class and 0 for the other label; multiclass, the label's place in
    data.classes. A label data.classes does not list is refused, naming its row."""
    text = label_text(s)
    codes = text.map({label: float(i) for i, label in enumerate(cfg.labels)})
    unknown = codes.isna()
    if unknown.any():
        i = unknown.idxmax()
        raise InputError(
            f"{path}: column '{cfg.target}' row {_row(i)}: label '{text.loc[i]}' is not one of data.classes "
            f"({', '.join(cfg.classes)})"
        )
    return codes.astype("float64")


def _as_text(s: pd.Series) -> pd.Series:
    """s.where(s.isna(), s.astype(str)).astype(object): text objects, missing values as they were.

    A column that already holds text is converted once per distinct value and the cells
    share those string objects: the same values, without a Python string per cell (Ames at
    a million rows, 40 text columns: 0.3 GB instead of 2.6 GB, and hashing them downstream
    hashes each distinct string once).
    """
    if not (
        isinstance(s.dtype, pd.StringDtype)
        or (s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) == "string")
    ):
        return s.where(s.isna(), s.astype(str)).astype(object)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    text = np.asarray(pd.Series(uniques, dtype=s.dtype).astype(str).astype(object), dtype=object)
    out = np.empty(len(s), dtype=object)
    present = codes >= 0
    out[present] = text[codes[present]]
    if not present.all():
        out[~present] = s[~present].to_numpy(dtype=object)
    return pd.Series(out, index=s.index, name=s.name, dtype=object)


def load(settings: Settings, path: Path | None = None) -> Dataset:
    """Read and contract-check the configured data file (or `path`, with the same contract)."""
    path = Path(path or settings.data.path)
    frame = read_csv(path)
    typed, features = check_contract(frame, settings.data, path)
    return Dataset(path=path, frame=typed, target=settings.data.target, features=features, digest=file_digest(path))


def split(settings: Settings, data: Dataset) -> Split:
    """Seeded train/evaluation split of the file's records; the evaluation rows keep the file's order.

    Rows that hold the same record (record_columns: identical in every feature and the
    target, or sharing their id) go to one side together: a random split of rows would put
    copies on both sides, and the model would be judged on rows it was trained on. A file
    without repeated records splits exactly as a split of its rows.
    """
    frame = data.frame
    columns, _ = record_columns(
        frame, list(data.features.columns), data.target, settings.data.id_columns, settings.data.classifier
    )
    codes, uniques = pd.factorize(pd.util.hash_pandas_object(frame[columns], index=False), sort=False)
    # A classifier's split keeps each label's share on both sides (stratified by record).
    strata = _record_labels(settings, data, codes) if settings.data.classifier else None
    from sklearn.model_selection import (
        train_test_split,
    )  # here: `run-pipeline check` reads data, never splits it (sklearn: 1 s)

    train_rec, eval_rec = train_test_split(
        np.arange(len(uniques)), test_size=settings.split.test_size, random_state=settings.split.seed, stratify=strata
    )
    in_eval = np.zeros(len(uniques), dtype=bool)
    in_eval[eval_rec] = True
    rows = in_eval[codes]
    n_eval = int(rows.sum())
    if n_eval < MIN_EVAL_ROWS:  # before any training: no gate's figure would mean anything
        raise InputError(
            f"{settings.config_path}: split.test_size: {settings.split.test_size:g} leaves {n_eval} evaluation rows "
            f"of {len(frame)}; the gates need at least {MIN_EVAL_ROWS}"
        )
    return Split(train=frame.loc[~rows], eval=frame.loc[rows], grouped=len(frame) - len(uniques))


def _record_labels(settings: Settings, data: Dataset, codes: np.ndarray) -> np.ndarray:
    """Each record's label code, the strata of a classifier's split (records numbered as
    `codes` numbers them): its commonest label (rows of identical inputs are one record, and
    may hold several). Each label must lead two records at least, one for each side."""
    k = len(settings.data.labels)
    labels = data.frame[data.target].to_numpy().astype(int)
    per_record = np.bincount(codes * k + labels, minlength=(int(codes.max()) + 1) * k).reshape(-1, k)
    strata = per_record.argmax(axis=1)
    counts = np.bincount(strata, minlength=k)
    for code, n in enumerate(counts):
        if n < 2:
            raise InputError(
                f"{data.path}: column '{data.target}': label '{settings.data.labels[code]}' of data.classes leads "
                f"{n} record{'' if n == 1 else 's'} (rows of identical features are one record); "
                "a split needs at least 2, one for each side"
            )
    return strata

"""The Spark engine: the figures over every evaluation row, for evaluation sets no single process holds.

`pytest model_tests -m gates --engine spark [--spark-master URL]` (or `run-pipeline validate
... --engine spark`): the evaluation rows are a Spark DataFrame (the configured split's, or
--eval-data's CSV file or Parquet folder); the candidate's and the champion's predictions
come from `mlflow.pyfunc.spark_udf` on the same rows (one DataFrame, keyed by each row's
position `_row`), and the figures of pipeline.evaluation.Evaluation from Spark aggregations:

- metrics: sums of the per-row errors and the target's deviations (two passes for R2);
- slices: per-slice count, sum and sum of squares of the per-row loss; each slice's Welch
  test against the other rows from those sufficient statistics, Holm over all of them;
- drift: the Kolmogorov-Smirnov statistic from the evaluation rows counted between the
  training rows' distinct values (exact: the same statistic and p-value as scipy's
  ks_2samp); categories' shares by a group count;
- overlap: each evaluation row's record hash (pandas', per partition) looked up in the
  training records' hashes;
- champion: the paired Poisson bootstrap by blocks of rows (figures.poisson_block_sums, one
  Spark group per block): the very draws the in-process engine makes;
- residuals: the seeded residual sample picked by position among the rows (in the declared
  order for Durbin-Watson), brought to the driver: it is a sample on either engine.

The gates that read rows in one place (robustness, determinism, latency, serving, the target
leak's one-feature fits) read a seeded sample of spark.sample_rows rows brought to the driver;
the evidence's `engine` says how many of how many. Regression only, for now: a classifier is
refused in one line.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline import checks, figures
from pipeline import data as data_mod
from pipeline.errors import InputError
from pipeline.evaluation import slice_arguments
from pipeline.robustness import RowSample

if TYPE_CHECKING:
    from pipeline.session import GateSession

ROW = "_row"  # each evaluation row's position, in the file's (the split's) order
PRED, CHAMP = "_p", "_champion_p"
BLOCK = "_block"


def available() -> str | None:
    """Why the Spark engine cannot run here (None: it can): pyspark and a Java runtime."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install -e '.[spark]', or pyspark)"
    if not (os.environ.get("JAVA_HOME") or _which("java")):
        return "no Java runtime (java on PATH or JAVA_HOME): Spark runs on the JVM"
    return None


def unusable(settings: Any, model_uri: str | None) -> str | None:
    """Why the Spark engine cannot gate this run (None: it can)."""
    if settings.data.task != "regression":
        return (
            f"data.task {settings.data.task}: the Spark engine gates regression models only for now; "
            "run without --engine spark"
        )
    if not model_uri:
        return "needs --model-uri: Spark scores a logged model (mlflow.pyfunc.spark_udf)"
    return None


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


_SESSIONS: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}


def spark_session(master: str, conf: tuple[tuple[str, str], ...] = ()) -> Any:
    """One SparkSession per master and settings for the process (Spark allows one active
    context: a second master in one process reuses the first's)."""
    key = (master, conf)
    if key not in _SESSIONS:
        _SESSIONS[key] = _start(master, conf)
    return _SESSIONS[key]


def _start(master: str, conf: tuple[tuple[str, str], ...]) -> Any:
    from pyspark.sql import SparkSession

    if master.startswith("local"):  # the workers run this interpreter, with its packages (a cluster's: its own)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName("model-gates")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.session.timeZone", "UTC")
    )
    for key, value in conf:
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _ks_from_counts(n1: int, n2: int, diffs_max: float, diffs_min: float) -> tuple[float, float]:
    """scipy.stats.ks_2samp's two-sided statistic and p-value ('auto' method) from the extreme
    differences of the two empirical distribution functions."""
    from scipy import stats
    from scipy.stats import _stats_py

    min_s, max_s = float(np.clip(-diffs_min, 0, 1)), float(diffs_max)
    d = min_s if min_s > max_s else max_s
    g = math.gcd(n1, n2)
    if max(n1, n2) <= 10000:
        ok, d2, prob = _stats_py._attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
        if ok:
            return float(d), float(np.clip(prob, 0, 1))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(d), float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))


def F_col(name: str) -> Any:  # noqa: N802
    """A column by its name as it is (dots, spaces and all)."""
    from pyspark.sql import functions as F

    return F.col(f"`{name}`")


class SparkEvaluation:
    """pipeline.evaluation.Evaluation on a Spark DataFrame of the evaluation rows."""

    engine = "spark"

    def __init__(self, session: GateSession, master: str | None = None):
        settings = session.settings
        why = available() or unusable(settings, session.model_uri)
        if why:
            raise InputError(f"--engine spark: {why}")
        self.session = session
        self.settings = settings
        self.master = master or settings.spark.master
        self.spark = spark_session(self.master, tuple(sorted(settings.spark.conf.items())))
        self.features = list(session.features.columns)
        self.target = settings.data.target

    # ------------------------------------------------------------ the rows

    @functools.cached_property
    def source(self) -> Any:
        """The evaluation rows as a Spark DataFrame with ROW, the target and the features, typed
        as the contract types them (numbers as doubles, categories as text)."""
        s = self.session
        return self._from_pandas(s.split.eval) if s.eval_data is None else self._read(Path(s.eval_data))

    def _columns(self) -> list[str]:
        cfg = self.settings.data
        order = self.settings.gates.residuals.order_by or []
        ids = [c for c in [*cfg.id_columns, *order] if c not in self.features and c != self.target]
        return [self.target, *self.features, *dict.fromkeys(ids)]

    def _from_pandas(self, frame: pd.DataFrame) -> Any:
        from pyspark.sql import types as T

        cols = [c for c in self._columns() if c in frame.columns]
        pdf = frame[cols].reset_index(drop=True)
        fields = [T.StructField(ROW, T.LongType(), False)]
        out: dict[str, Any] = {ROW: np.arange(len(pdf), dtype="int64")}
        for c in cols:
            if pd.api.types.is_numeric_dtype(pdf[c]):
                fields.append(T.StructField(c, T.DoubleType(), True))
                out[c] = pdf[c].astype("float64")
            else:
                fields.append(T.StructField(c, T.StringType(), True))
                out[c] = pdf[c].astype(object).where(pdf[c].notna(), None)
        return self.spark.createDataFrame(pd.DataFrame(out), schema=T.StructType(fields))

    def _read(self, path: Path) -> Any:
        """--eval-data: a CSV file (read as text, then typed) or a Parquet file or folder."""
        from pyspark.sql import functions as F

        if not path.exists():
            raise InputError(f"--eval-data {path}: no such file or folder")
        if path.is_dir() or path.suffix == ".parquet":
            df = self.spark.read.parquet(str(path))
        else:
            df = self.spark.read.csv(str(path), header=True, inferSchema=False, multiLine=False)
        missing = [c for c in [self.target, *self.features] if c not in df.columns]
        if missing:
            raise InputError(f"{path}: column '{missing[0]}' the model needs is missing")
        numeric = {self.target, *self.session.features.numeric}
        cols = [c for c in self._columns() if c in df.columns]
        stored = {f.name: f.dataType.typeName() for f in df.schema.fields}
        # A number column stored as text (every CSV column) keeps its text beside it, for the
        # contract to name a cell that is not a number; one stored as a number cannot hold one.
        texts = {c: f"_text_{i}" for i, c in enumerate(cols) if c in numeric and stored[c] == "string"}
        typed = df.select(
            *[
                F.expr(f"try_cast(`{c}` as double)").alias(c)
                if c in numeric
                else F.col(f"`{c}`").cast("string").alias(c)
                for c in cols
            ],
            *[F.col(f"`{c}`").alias(t) for c, t in texts.items()],
        )
        # Positions in read order: a CSV file's line order (a Parquet folder's part files, in the order Spark reads them).
        # Not cached: the contract's two passes read the file again (Parquet: the columns they
        # need), and the scored rows are cached without the text copies.
        with_row = self._positions(typed, ROW)
        self._contract(with_row, path, texts)
        out = with_row.select(ROW, *[F.col(f"`{c}`") for c in cols])
        return out

    def _positions(self, df: Any, name: str) -> Any:
        """`df` with column `name`: each row's position 0..n-1 in the order of its partitions and
        of the rows in each (a file's read order; after an orderBy, the sorted order). From
        monotonically_increasing_id (partition << 33 | offset) and each partition's row count,
        in the JVM: no row goes through Python."""
        from pyspark.sql import functions as F

        tagged = df.withColumn("_mid", F.monotonically_increasing_id())
        tagged = tagged.withColumn("_part", F.shiftright(F.col("_mid"), 33))
        counts = {
            int(r["_part"]): int(r["count"])
            for r in df.groupBy(F.spark_partition_id().alias("_part")).count().collect()
        }
        start, offsets = 0, {}
        for part in sorted(counts):
            offsets[part] = start
            start += counts[part]
        table = self.spark.createDataFrame([(k, v) for k, v in offsets.items()], "_part long, _start long")
        out = tagged.join(F.broadcast(table), "_part").withColumn(
            name, F.col("_start") + (F.col("_mid") - F.shiftleft(F.col("_part"), 33))
        )
        return out.drop("_mid", "_part", "_start")

    def _pick(self, df: Any, column: str, at: np.ndarray) -> pd.DataFrame:
        """The rows of `df` whose `column` is one of the positions `at`, to the driver in that order (a broadcast join)."""
        from pyspark.sql import functions as F

        wanted = self.spark.createDataFrame(pd.DataFrame({column: np.asarray(at, dtype="int64")}))
        return df.join(F.broadcast(wanted), column).toPandas().sort_values(column)

    def _contract(self, df: Any, path: Path, texts: dict[str, str]) -> None:
        """The data contract's checks as one aggregation pass (then a look for the first offending
        row where a check failed): text in a number column, a missing target, the minimum rows,
        each feature's missing share, infinite values, the ranges, duplicate records."""
        from pyspark.sql import functions as F

        c = self.settings.data.contract
        ranged = [self.target, *self.session.features.numeric]

        def col(name: str) -> Any:
            return F.col(f"`{name}`")

        problems: dict[str, Any] = {}  # key -> condition of an offending row
        for name, text in texts.items():
            problems[f"text:{name}"] = F.col(text).isNotNull() & col(name).isNull() & (F.trim(F.col(text)) != "")
        problems["target"] = col(self.target).isNull()
        for name in ranged:
            problems[f"inf:{name}"] = col(name).isin(float("inf"), float("-inf"))
            rng = c.ranges.get(name)
            if rng is not None and rng.min is not None:
                problems[f"min:{name}"] = col(name) < F.lit(rng.min)
            if rng is not None and rng.max is not None:
                problems[f"max:{name}"] = col(name) > F.lit(rng.max)
        if c.target_positive:
            problems["positive"] = col(self.target) <= F.lit(0.0)
        keys = list(problems)
        aggs = [F.count(F.lit(1)).alias("rows")]
        aggs += [F.min(F.when(cond, F.col(ROW))).alias(f"p{i}") for i, cond in enumerate(problems.values())]
        aggs += [F.sum(col(name).isNull().cast("long")).alias(f"m{i}") for i, name in enumerate(self.features)]
        row = df.agg(*aggs).first()
        for i, key in enumerate(keys):
            at = row[f"p{i}"]
            if at is None:
                continue
            kind, _, name = key.partition(":")
            bad = df.where(F.col(ROW) == at).first()
            where = f"{path}: column '{name or self.target}' row {at + 1}"
            if kind == "text":
                raise InputError(f"{where}: text '{bad[texts[name]]}' in a numeric column")
            if kind == "target":
                raise InputError(f"{where}: target is missing")
            if kind == "inf":
                raise InputError(f"{where}: infinite value")
            if kind == "min":
                raise InputError(f"{where}: value below the allowed minimum {c.ranges[name].min:g} ({bad[name]})")
            if kind == "max":
                raise InputError(f"{where}: value above the allowed maximum {c.ranges[name].max:g} ({bad[name]})")
            raise InputError(f"{where}: target not > 0 ({bad[self.target]})")
        rows = int(row["rows"])
        if rows < c.min_rows:
            raise InputError(f"{path}: {rows} rows < contract minimum {c.min_rows} (data.contract.min_rows)")
        for i, name in enumerate(self.features):
            share = row[f"m{i}"] / rows
            limit = c.missing_share.get(name, c.max_missing_share)
            if share == 1.0:
                raise InputError(f"{path}: column '{name}': empty in every row")
            if share > limit:
                raise InputError(
                    f"{path}: column '{name}': missing in {share:.1%} of rows > {limit:.1%} allowed (data.contract)"
                )
        if not c.allow_duplicate_rows:
            record = [col(x) for x in [self.target, *self.features]]
            # Rows whose record hash repeats (an 8-byte shuffle), then only those compared on the record itself.
            hashed = df.withColumn("_h", F.xxhash64(*record))
            repeated = hashed.groupBy("_h").count().where(F.col("count") > 1).select("_h")
            if repeated.limit(1).count() == 0:
                return
            df = hashed.join(F.broadcast(repeated), "_h")
            dup = (
                df.groupBy(*record)
                .agg(F.count(F.lit(1)).alias("n"), F.array_sort(F.collect_list(ROW)).alias("at"))
                .where(F.col("n") > 1)
                .select(F.element_at("at", 1).alias("first"), F.element_at("at", 2).alias("second"))
                .orderBy("second")
                .first()
            )
            if dup is not None:
                raise InputError(f"{path}: row {dup['second'] + 1} duplicates row {dup['first'] + 1}")

    @functools.cached_property
    def scored(self) -> Any:
        """The rows with the candidate's predictions (PRED) and the champion's (CHAMP), cached."""
        import mlflow.pyfunc
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        s = self.session
        from pipeline.registry import store

        store.connect(self.settings)
        df = self.source
        inputs = F.struct(*[F.col(f"`{c}`") for c in self.features])
        udf = mlflow.pyfunc.spark_udf(self.spark, s.model_uri, result_type="double", env_manager="local")
        df = df.withColumn(PRED, udf(inputs))
        holder = s.champion_holder
        name = self.settings.mlflow.registered_model
        if holder is not None and not (s.source.version == holder and s.source.name == name):
            champ = mlflow.pyfunc.spark_udf(
                self.spark, f"models:/{name}/{holder}", result_type="double", env_manager="local"
            )
            df = df.withColumn(CHAMP, champ(inputs))
        else:
            df = df.withColumn(CHAMP, F.col(PRED))
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        self._rows = df.count()
        return df

    def rows(self) -> int:
        _ = self.scored
        return self._rows

    def sample(self) -> pd.DataFrame:
        """The seeded sample of spark.sample_rows evaluation rows the other gates read, typed as the contract types them."""
        s = self.session
        n = self.rows()
        at = RowSample(self.settings.seed, self.settings.spark.sample_rows).positions(n)
        if s.eval_data is None:
            return s.split.eval.iloc[at]

        picked = self._pick(self.scored.drop(PRED, CHAMP), ROW, at)
        picked.index = picked.pop(ROW).to_numpy()
        for col in self.session.features.categorical:
            picked[col] = picked[col].astype(object).where(picked[col].notna(), None)
        return picked

    def digest(self) -> str:
        s = self.session
        if s.eval_data is None:
            return data_mod.frame_digest(s.split.eval)
        path = Path(s.eval_data)
        if path.is_file():
            return data_mod.file_digest(path)
        h = hashlib.sha256()
        for part in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))):
            h.update(part.relative_to(path).as_posix().encode() + b"\0" + data_mod.file_digest(part).encode())
        return h.hexdigest()

    # ------------------------------------------------------------ figures

    @functools.cached_property
    def _baseline(self) -> float:
        return float(np.median(self.session.train_frame[self.target].to_numpy(float)))

    @functools.cached_property
    def _metrics(self) -> dict[str, float]:
        from pyspark.sql import functions as F

        df, y = self.scored, F.col(f"`{self.target}`")
        out: dict[str, float] = {}
        mean_y = df.agg(F.avg(y)).first()[0]
        aggs = [F.sum((y - F.lit(mean_y)) ** 2).alias("sst")]
        for who, p in (("model", F.col(PRED)), ("baseline", F.lit(self._baseline))):
            err = y - p
            aggs += [
                F.sum(err**2).alias(f"sse_{who}"),
                F.avg(F.abs(err)).alias(f"mae_{who}"),
                F.avg(F.abs(err) / F.abs(y)).alias(f"ape_{who}"),
            ]
        row = df.agg(*aggs).first()
        n = self.rows()
        for who in ("model", "baseline"):
            sst, sse = float(row["sst"]), float(row[f"sse_{who}"])
            out[f"r2_{who}"] = 1.0 - sse / sst if sst > 0 else float("nan")
            out[f"mae_{who}"] = float(row[f"mae_{who}"])
            out[f"rmse_{who}"] = float(np.sqrt(sse / n))
            out[f"mape_{who}"] = 100.0 * float(row[f"ape_{who}"])
        return out

    def metric(self, name: str, of: str = "model") -> float:
        return self._metrics[f"{name}_{of}"]

    def _loss(self, metric: str, p: Any) -> Any:
        from pyspark.sql import functions as F

        err = F.abs(F.col(f"`{self.target}`") - p)
        return F.lit(100.0) * err / F.abs(F.col(f"`{self.target}`")) if metric == "mape" else err

    def slices(self) -> figures.Slices:
        """figures.slice_stats of each partition (the in-process code, on its rows), added up."""

        a = slice_arguments(self.session)
        target = self.target
        cols = list(dict.fromkeys([target, PRED, *a["columns"]]))

        def part(batches):
            for b in batches:
                groups, n, total, squares = figures.slice_stats(
                    b,
                    b[target].to_numpy(float),
                    b[PRED].to_numpy(float),
                    a["columns"],
                    target,
                    a["target_bands"],
                    a["metric"],
                    a["band_by"],
                )
                rows = [(g.column, g.value, g.rows, g.total, g.squares, g.events) for g in groups]
                rows.append(("", "", n, total, squares, 0))  # the whole partition
                frame = pd.DataFrame(rows, columns=["column", "value", "rows", "total", "squares", "events"])
                yield frame.astype({"column": object, "value": object})  # not pandas 3's arrow strings

        schema = "column string, value string, rows long, total double, squares double, events long"
        got = self.scored.select(*[F_col(c) for c in cols]).mapInPandas(part, schema).toPandas()
        whole = got[got["column"] == ""]
        sums = (
            got[got["column"] != ""]
            .groupby(["column", "value"], sort=False)[["rows", "total", "squares", "events"]]
            .sum()
        )
        order = {c: i for i, c in enumerate(got.loc[got["column"] != "", "column"].drop_duplicates())}
        groups = [
            figures.SliceStats(col, value, int(r.rows), float(r.total), float(r.squares), int(r.events))
            for (col, value), r in sorted(sums.iterrows(), key=lambda t: (order[t[0][0]], t[0][1]))
        ]
        return figures.slices_from_stats(
            groups, int(whole["rows"].sum()), float(whole["total"].sum()), float(whole["squares"].sum()), a["min_rows"]
        )

    def drift(self, numeric: list[str], categorical: list[str], min_rows: int) -> list[figures.Drift]:
        """One pass over the evaluation rows: each numeric column's values grouped by their place
        among the training values' distinct values (figures.ks_from_groups), each categorical
        column's counts; both added up in Spark, so the driver holds one row per group (bounded
        by the training rows' distinct values and the categories)."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        train = self.session.train_frame
        sorted_train = {c: np.sort(train[c].dropna().to_numpy(float)) for c in numeric}
        distinct = {c: np.unique(a) for c, a in sorted_train.items()}
        bd = self.spark.sparkContext.broadcast(distinct)

        def part(batches):
            for b in batches:
                out = []
                for i, c in enumerate(numeric):
                    v = b[c].to_numpy(float)
                    v = v[~np.isnan(v)]
                    if not len(v):
                        continue
                    frame = pd.DataFrame({"k": np.searchsorted(bd.value[c], v, side="right"), "v": v})
                    lo = frame.groupby("k")["v"].transform("min")
                    g = frame.assign(t=(frame["v"] == lo).astype("int64")).groupby("k")
                    agg = g.agg(lo=("v", "min"), n=("v", "size"), t=("t", "sum")).reset_index()
                    out.append(agg.assign(col=i, cat=""))
                for j, c in enumerate(categorical):
                    vc = b[c].astype(object).fillna("<missing>").value_counts()
                    out.append(
                        pd.DataFrame(
                            {
                                "k": 0,
                                "lo": np.nan,
                                "n": vc.to_numpy(),
                                "t": 0,
                                "col": -1 - j,
                                "cat": np.asarray(vc.index.astype(str), dtype=object),
                            }
                        )
                    )
                if out:
                    yield pd.concat(out, ignore_index=True)[["col", "k", "lo", "n", "t", "cat"]].astype({"cat": object})

        schema = "col long, k long, lo double, n long, t long, cat string"
        cols = list(dict.fromkeys([*numeric, *categorical]))
        per_batch = self.scored.select(*[F_col(c) for c in cols]).mapInPandas(part, schema)
        # Added up in Spark first: one row per (column, group) reaches the driver, not one per
        # Arrow batch and group (10M rows sent 15M such rows to the driver's pandas).
        low = F.min("lo").over(Window.partitionBy("col", "k", "cat"))
        got = (
            per_batch.withColumn("t", F.when(F.col("lo") == low, F.col("t")).otherwise(F.lit(0)))
            .groupBy("col", "k", "cat")
            .agg(F.min("lo").alias("lo"), F.sum("n").alias("n"), F.sum("t").alias("t"))
            .toPandas()
        )
        out: list[figures.Drift] = []
        for i, c in enumerate(numeric):
            rows = got[got["col"] == i]
            low = rows.groupby("k")["lo"].transform("min")
            rows = rows.assign(t=np.where(rows["lo"] == low, rows["t"], 0))
            merged = rows.groupby("k").agg(lo=("lo", "min"), n=("n", "sum"), t=("t", "sum"))
            n2 = int(merged["n"].sum())
            if len(sorted_train[c]) < min_rows or n2 < min_rows:
                continue
            groups = {int(k): (float(r.lo), int(r.n), int(r.t)) for k, r in merged.iterrows()}
            out.append(figures.ks_from_groups(c, sorted_train[c], distinct[c], groups, n2, _ks_from_counts))
        for j, c in enumerate(categorical):
            counts = got[got["col"] == -1 - j].groupby("cat")["n"].sum()
            a = train[c].fillna("<missing>").value_counts()
            out.append(figures.category_drift(c, a, counts))
        return sorted(out, key=lambda d: d.statistic, reverse=True)

    def shared_rows(self, columns: list[str]) -> int:

        train_hashes = np.unique(pd.util.hash_pandas_object(self.session.train_frame[columns], index=False).to_numpy())
        bh = self.spark.sparkContext.broadcast(train_hashes)
        numeric = set(self.session.features.numeric) | {self.target}

        def count(batches):
            for b in batches:
                frame = b[columns].copy()
                for c in columns:
                    if c in numeric:
                        frame[c] = frame[c].astype("float64")
                    else:
                        frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
                h = pd.util.hash_pandas_object(frame, index=False).to_numpy()
                yield pd.DataFrame({"n": [int(np.isin(h, bh.value).sum())]})

        got = self.scored.select(*[f"`{c}`" for c in columns]).mapInPandas(count, "n long")
        return int(sum(r["n"] for r in got.collect()))

    def bootstrap(self, loss: str, resamples: int, confidence: float, seed: int, max_rows: int) -> figures.Bootstrap:
        from pyspark.sql import functions as F

        if loss not in ("mae", "mape"):
            raise InputError(f"the Spark engine's champion bootstrap takes a regressor's loss, not {loss}")
        n = self.rows()
        rate = figures.bootstrap_rate(n, max_rows)
        size = figures.BOOTSTRAP_BLOCK
        df = self.scored.select(
            (F.col(ROW) / F.lit(size)).cast("long").alias(BLOCK),
            F.col(ROW),
            self._loss(loss, F.col(PRED)).alias("c"),
            self._loss(loss, F.col(CHAMP)).alias("h"),
        )
        means = df.agg(F.avg("c"), F.avg("h")).first()
        delta = (float(means[0]) - float(means[1])) / float(means[1])

        def block_sums(frame: pd.DataFrame) -> pd.DataFrame:
            frame = frame.sort_values(ROW)
            block = int(frame[BLOCK].iloc[0])
            sums = figures.poisson_block_sums(
                frame["c"].to_numpy(), frame["h"].to_numpy(), block, resamples, rate, seed
            )
            return pd.DataFrame({BLOCK: block, "b": np.arange(resamples), "c": sums[0], "h": sums[1], "w": sums[2]})

        schema = f"{BLOCK} long, b long, c double, h double, w double"
        parts = df.groupBy(BLOCK).applyInPandas(block_sums, schema).toPandas().sort_values([BLOCK, "b"])
        sums = np.zeros((3, resamples))
        for _, part in parts.groupby(BLOCK, sort=True):  # in block order, as the in-process engine adds them
            sums += part[["c", "h", "w"]].to_numpy().T
        return figures.bootstrap_from_sums(delta, sums, confidence)

    def residuals(self, ordered: bool) -> checks.ResidualSample:
        """The residual sample of checks.residual_sample, its rows picked by position in Spark."""
        from pyspark.sql import functions as F

        cfg = self.settings.gates.residuals
        by = list(cfg.order_by or []) if ordered else []
        df = self.scored.select(
            ROW, F.col(f"`{self.target}`").alias("y"), F.col(PRED).alias("p"), *[F.col(f"`{c}`") for c in by]
        )
        kept = F.lit(True)
        if cfg.censored.max is not None:
            kept = kept & (F.col("y") < F.lit(cfg.censored.max))
        if cfg.censored.min is not None:
            kept = kept & (F.col("y") > F.lit(cfg.censored.min))
        n = self.rows()
        if not by and cfg.censored.max is None and cfg.censored.min is None:  # every row, in data order: rank = ROW
            at = checks.sample_positions(n, cfg.sample_size, self.settings.seed)
            picked = self._pick(df, ROW, at)
            return checks.residuals_of(picked["y"].to_numpy(), picked["p"].to_numpy(), cfg.scale)
        df = df.where(kept)
        order = [*[F.col(f"`{c}`").asc_nulls_last() for c in by], F.col(ROW)]
        ranked = self._positions(df.orderBy(*order).select("y", "p"), "_rank")
        n_kept = ranked.count()
        at = checks.sample_positions(n_kept, cfg.sample_size, self.settings.seed)
        picked = self._pick(ranked, "_rank", at)
        return checks.residuals_of(picked["y"].to_numpy(), picked["p"].to_numpy(), cfg.scale, censored=n - n_kept)

    def facts(self) -> dict[str, Any]:
        sc = self.spark.sparkContext
        n = self.rows()
        k = min(n, self.settings.spark.sample_rows)
        return {
            "name": self.engine,
            "master": self.master,
            "spark_version": self.spark.version,
            "default_parallelism": sc.defaultParallelism,
            "executors": max(1, len(sc._jsc.sc().statusTracker().getExecutorInfos()) - 1)
            if not self.master.startswith("local")
            else 1,
            "rows": n,
            "sample_rows": k,
            "sampled": f"robustness, determinism, latency, serving and the target-leak fits read a seeded sample of {k} of the {n} evaluation rows on the driver; "
            f"the residual gates a seeded sample of at most {self.settings.gates.residuals.sample_size} (as in process)",
        }

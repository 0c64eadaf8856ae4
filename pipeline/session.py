"""The expensive inputs of a gate run, each computed once and only when a gate needs it.

No pytest here: the plugin holds one GateSession per test session and hands its parts
to gates through fixtures; bench/ and the CLI can use it the same way.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import checks, figures, registry, train
from pipeline import data as data_mod
from pipeline.config import Settings
from pipeline.data import FeatureSpec
from pipeline.errors import InputError
from pipeline.robustness import RowSample


@dataclass(frozen=True)
class Predictions:
    """Evaluation rows with truth and predictions, in the data's order."""

    frame: pd.DataFrame
    y: np.ndarray
    p: np.ndarray


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    predictions: np.ndarray
    model: Any = None  # the loaded champion (the candidate itself when it holds the alias)

    @property
    def who(self) -> str:
        """How messages name it: 'NAME vVERSION', or the name alone where there is no version."""
        return f"{self.name} v{self.version}" if self.version else self.name


@dataclass(frozen=True)
class ModelSource:
    """Where the candidate came from: a registry URI, or fitted in this session."""

    uri: str | None
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    model_sha256: str | None = None


_REGISTRY = object()  # champion: look it up in the registry


class GateSession:
    """`model`: the candidate, given (bench/minimal.py: loaded from its file), instead of loaded
    from `model_uri` or fitted. `champion`: "self" (the candidate holds the alias), None (no
    model does), or, by default, whatever the registry says holds the champion alias. `engine`:
    where the figures over every evaluation row are computed (pipeline.evaluation: "local", in
    this process, or "spark" at `spark_master`); on Spark the session's own evaluation rows
    (eval_frame, predictions: what the other gates read) are a seeded sample of them."""

    def __init__(
        self,
        settings: Settings,
        model_uri: str | None = None,
        eval_data: str | Path | None = None,
        *,
        model: Any = None,
        champion: Any = _REGISTRY,
        engine: str = "local",
        spark_master: str | None = None,
    ):
        self.settings = settings
        self.model_uri = model_uri
        self.eval_data = Path(eval_data) if eval_data else None
        self.timings: dict[str, float] = {}
        self._shared: dict[str, Any] = {}
        self._champion = champion
        self.engine = engine
        self.spark_master = spark_master
        if model is not None:
            self.__dict__["model"] = model

    def _timed(self, key: str, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    def shared(self, key: str, compute):
        """`compute()` once per session under `key`: one measurement that two gates judge, made by
        whichever of them runs first."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    @functools.cached_property
    def dataset(self) -> data_mod.Dataset:
        return self._timed("load", data_mod.load, self.settings)

    @functools.cached_property
    def split(self) -> data_mod.Split:
        return data_mod.split(self.settings, self.dataset)

    @property
    def features(self) -> FeatureSpec:
        return self.dataset.features

    @property
    def train_frame(self) -> pd.DataFrame:
        return self.split.train

    @property
    def eval_source(self) -> Path:
        """The file the evaluation rows come from: --eval-data's, else the configured file."""
        return self.eval_data if self.eval_data is not None else Path(self.settings.data.path)

    @functools.cached_property
    def evaluation(self) -> Any:
        """The figures over every evaluation row (pipeline.evaluation.Evaluation), by the session's engine."""
        if self.engine == "spark":
            from pipeline.spark import SparkEvaluation

            return SparkEvaluation(self, self.spark_master)
        from pipeline.evaluation import InProcess

        return InProcess(self)

    @functools.cached_property
    def eval_frame(self) -> pd.DataFrame:
        """Contract-checked evaluation rows the model never saw.

        The file is parsed and contract-checked once; the parsed copy is not kept beside the
        checked one (at a million rows that is ~0.8 GB). A file that breaks the contract
        raises InputError here, every time it is asked for (the data contract gate records it).
        """
        if self.engine == "spark":
            return self.evaluation.sample()
        if self.eval_data is None:
            return self.split.eval
        path = self.eval_data
        frame = data_mod.read_csv(path)
        typed, _ = data_mod.check_contract(frame, self.settings.data, path)
        del frame
        missing = [c for c in self.features.columns if c not in typed.columns]
        if missing:
            raise InputError(f"{path}: column '{missing[0]}' the model needs is missing")
        data_mod.release_memory()
        return typed

    @functools.cached_property
    def eval_digest(self) -> str:
        if self.engine == "spark":
            return self.evaluation.digest()
        return data_mod.frame_digest(self.eval_frame)

    @functools.cached_property
    def model(self) -> Any:
        if self.model_uri:
            return self._timed("load_model", registry.load_model, self.settings, self.model_uri)
        return self._timed("fit", train.fit, self.settings, self.features, self.train_frame)

    @functools.cached_property
    def source(self) -> ModelSource:
        if not self.model_uri:
            return ModelSource(uri=None)
        parsed = registry.parse_model_uri(self.model_uri)
        if parsed is None:
            return ModelSource(uri=self.model_uri)
        mv = registry.get_version(self.settings, *parsed)
        return ModelSource(
            uri=self.model_uri,
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id,
            model_sha256=registry.model_digest(self.settings, f"models:/{mv.name}/{mv.version}"),
        )

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The candidate's scores of the rows (checks.scores: a classifier's probabilities)."""
        return checks.scores(self.model, frame[self.features.columns])

    @functools.cached_property
    def predictions(self) -> Predictions:
        frame = self.eval_frame
        _ = self.model  # loaded or fitted first, so that "predict" times the predict alone
        p = self._timed("predict", self.predict, frame)
        return Predictions(frame=frame, y=frame[self.settings.data.target].to_numpy(float), p=p)

    @functools.cached_property
    def champion_holder(self) -> str | None:
        """The version holding the champion alias as this run found it, read once: the one the
        champion gates compare with, and the one the evidence says a promotion replaces (None:
        nobody held it; the candidate's own version where it is judged as the holder)."""
        if self._champion is None:
            return None
        if self._champion == "self":
            return self.source.version
        found = registry.champion_version(self.settings, self.settings.champion_alias)
        return found[1] if found else None

    @functools.cached_property
    def champion(self) -> Champion | None:
        """The model holding the champion alias, with its predictions on the same rows."""
        if self._champion is None:
            return None
        if self._champion == "self":
            return Champion("the candidate itself", "", self.predictions.p, self.model)
        version = self.champion_holder
        if version is None:
            return None
        name = self.settings.mlflow.registered_model
        if self.source.version == version and self.source.name == name:
            return Champion(name, version, self.predictions.p, self.model)
        model = registry.load_model(self.settings, f"models:/{name}/{version}")
        p = checks.scores(model, self.eval_frame[self.features.columns])
        return Champion(name, version, p, model)

    @functools.cached_property
    def residuals(self) -> checks.ResidualSample:
        """Residuals on the configured scale, a bounded seeded sample of every evaluation row kept in data order."""
        return self.evaluation.residuals(ordered=False)

    @functools.cached_property
    def baseline_predictions(self) -> np.ndarray:
        """A model that learnt nothing, on the evaluation rows: the training target's median; a
        classifier's, the training rows' share of each class (scored as checks.scores scores)."""
        data = self.settings.data
        return figures.baseline_scores(
            self.train_frame[data.target].to_numpy(float),
            len(self.predictions.y),
            data.labels if data.classifier else None,
        )

    @functools.cached_property
    def ordered_residuals(self) -> checks.ResidualSample:
        """The same kind of sample, of the rows sorted by gates.residuals.order_by (stable)."""
        cfg, frame = self.settings.gates.residuals, self.predictions.frame
        missing = [c for c in cfg.order_by or [] if c not in frame.columns]
        if missing:
            raise InputError(
                f"{self.settings.config_path}: gates.residuals.order_by: column '{missing[0]}' is neither a feature "
                "nor one of data.id_columns of the evaluation data"
            )
        return self.evaluation.residuals(ordered=True)

    @functools.cached_property
    def compared(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The evaluation rows the determinism gates compare, with the session's predictions of
        them: every row, or a seeded sample of compare_rows (a prediction that changes between
        two asks shows on any rows)."""
        X = self.predictions.frame[self.features.columns]
        at = RowSample(self.settings.seed, self.settings.gates.determinism.compare_rows).positions(len(X))
        return X.iloc[at], self.predictions.p[at]

    @functools.cached_property
    def spread(self) -> pd.Series:
        """Each numeric feature's training standard deviation: the unit of noise."""
        return self.train_frame[list(self.features.numeric)].std().fillna(0.0)

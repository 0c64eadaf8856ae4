"""Settings: the YAML config read once into frozen, validated models.

Only this module reads YAML. Relative paths in a config file resolve against the folder
that holds the file, so a config means the same thing from any working directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import InputError

DEFAULT_CONFIG = Path("configs/pipeline_config.yaml")
CONFIG_ENV_VAR = "PIPELINE_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def fmt_number(x: float | None) -> str:
    """Render a figure for people: thousands separators for big numbers, 4 significant digits else."""
    if x is None:
        return "none"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x == int(x):
        return f"{int(x)}"
    return f"{x:.4g}"


Bound = Annotated[float, Field(allow_inf_nan=False)]


class Threshold(_Strict):
    """A bound on one gate's figure: `min`, `max` or both (a band), with its unit.

    `required: false` lets the environment judge and report the gate without making its
    verdict a condition of promotion. `gate` and `env` are filled in from where the line
    stands in the config, for messages.
    """

    min: Bound | None = None
    max: Bound | None = None
    # The figure over a baseline's on the same rows (a constant predictor: the training
    # target's median), at most this: a bound that means the same on any data set's scale.
    # Only for error figures (checks.BASELINE_GATES); alone or beside min/max (both must hold).
    max_ratio_to_baseline: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    # A timing over the reference workload's timed between its rounds (pipeline.timing), at
    # most this: a bound that moves less with the machine's load than milliseconds do. Only
    # for checks.REFERENCE_GATES; alone or beside max (each is judged, see pipeline.judge).
    max_ratio_to_reference: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    unit: str = ""
    required: bool = True
    gate: str = ""
    env: str = ""

    @model_validator(mode="after")
    def _bounds(self) -> Threshold:
        if (
            self.min is None
            and self.max is None
            and self.max_ratio_to_baseline is None
            and self.max_ratio_to_reference is None
        ):
            raise ValueError("a threshold needs min, max, both, max_ratio_to_baseline or max_ratio_to_reference")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {fmt_number(self.min)} > max {fmt_number(self.max)}")
        return self

    @property
    def direction(self) -> str:
        if self.min is not None and self.max is not None:
            return "between"
        return "<=" if self.max is not None else ">="

    def holds(self, figure: float, ratio: float | None = None) -> bool:
        """The figure meets the bounds; with max_ratio_to_baseline, so does its `ratio` to the
        baseline's figure (a ratio bound with no ratio measured does not hold)."""
        figure = float(figure)
        if math.isnan(figure):
            return False
        if self.min is not None and figure < self.min:
            return False
        if self.max is not None and figure > self.max:
            return False
        ratio_bound = self.max_ratio_to_baseline
        return ratio_bound is None or (
            ratio is not None and not math.isnan(float(ratio)) and float(ratio) <= ratio_bound
        )

    def impossible(self, lowest: float, highest: float) -> str | None:
        """Why no figure in [lowest, highest] (the figure's possible values) can pass, or None."""
        if self.min is not None and self.min > highest:
            return f"min {fmt_number(self.min)} is above the highest possible figure {fmt_number(highest)}"
        if self.max is not None and self.max < lowest:
            return f"max {fmt_number(self.max)} is below the lowest possible figure {fmt_number(lowest)}"
        return None

    def _u(self) -> str:
        return f" {self.unit}" if self.unit and self.unit != "%" else self.unit

    def describe(self) -> str:
        """The bound as text, e.g. '<= 15,000 USD', 'in [1.5, 2.5]' or '<= 0.5x baseline'."""
        ratio = (
            f"<= {fmt_number(self.max_ratio_to_baseline)}x baseline" if self.max_ratio_to_baseline is not None else ""
        )
        if self.max_ratio_to_reference is not None:
            ratio = " and ".join(filter(None, [ratio, f"<= {fmt_number(self.max_ratio_to_reference)}x reference"]))
        return " and ".join(filter(None, [self.describe_figure(), ratio]))

    def describe_figure(self) -> str:
        """The bound on the figure itself (min, max or both) as text; '' when there is none."""
        if self.min is None and self.max is None:
            return ""
        if self.direction == "between":
            return f"in [{fmt_number(self.min)}, {fmt_number(self.max)}]{self._u()}"
        bound = self.max if self.max is not None else self.min
        return f"{self.direction} {fmt_number(bound)}{self._u()}"

    def explain(self, label: str, figure: float, detail: str = "", ratio: float | None = None) -> str:
        """One line with figure, threshold and environment: 'MAE 17,412 > 15,000 USD (staging)'."""
        f = fmt_number(figure)
        if not math.isnan(float(figure)) and self.max is not None and float(figure) > self.max:
            text = f"{label} {f} > {fmt_number(self.max)}{self._u()}"
        elif not math.isnan(float(figure)) and self.min is not None and float(figure) < self.min:
            text = f"{label} {f} < {fmt_number(self.min)}{self._u()}"
        elif (
            self.max_ratio_to_baseline is not None
            and ratio is not None
            and not (float(ratio) <= self.max_ratio_to_baseline)
        ):
            text = f"{label} {f}{self._u()} is {fmt_number(ratio)}x the baseline's > {fmt_number(self.max_ratio_to_baseline)}x"
        else:
            text = f"{label} {f}{self._u()} {'holds' if self.holds(figure, ratio) else 'fails'} {self.describe()}"
        if detail:
            text += f"; {detail}"
        return f"{text} ({self.env})" if self.env else text


class Environment(_Strict):
    """One environment: its alias, how strict it is, and a threshold per gate it judges.

    The thresholds are an open mapping keyed by gate id (a gate test's name without
    `test_`), so a repository adds a gate without touching this library. Every gate with
    a threshold is required for promotion unless its line says `required: false`.
    """

    alias: str
    # Evidence from an environment serves every environment of lower or equal strictness.
    strictness: int = 0
    # required: promotion also needs a person's approval of the very evidence that allows it
    # (`run-pipeline approve VERSION --env ENV`). Inherited through `extends` unless restated.
    approval: Literal["none", "required"] = "none"
    # A timing gate whose rounds cannot be judged (pipeline.judge: "inconclusive") is
    # measured again up to this many times; inconclusive after them, it refuses promotion
    # (0, the default: the first inconclusive refuses). Inherited through `extends`.
    inconclusive_reruns: int = Field(default=0, ge=0, le=10)
    thresholds: dict[str, Threshold] = Field(min_length=1)

    @property
    def required_gates(self) -> list[str]:
        return sorted(g for g, th in self.thresholds.items() if th.required)


class Range(_Strict):
    min: float | None = None
    max: float | None = None


class Contract(_Strict):
    min_rows: int = Field(default=1, ge=1)
    max_missing_share: float = Field(default=0.95, ge=0, le=1)
    missing_share: dict[str, float] = {}
    ranges: dict[str, Range] = {}
    allow_duplicate_rows: bool = False
    target_positive: bool = True


TASKS = ("regression", "binary", "multiclass")
REGRESSION = ("regression",)
CLASSIFIERS = ("binary", "multiclass")
Task = Literal["regression", "binary", "multiclass"]
# The model types of each task (model.type): the same names where sklearn has both kinds.
MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "regression": ("hist_gradient_boosting", "ridge", "random_forest"),
    "binary": ("hist_gradient_boosting", "logistic_regression", "random_forest"),
    "multiclass": ("hist_gradient_boosting", "logistic_regression", "random_forest"),
}
# Each task's per-row loss: what its champion gate and the live challenger comparison judge
# (a paired bootstrap of the mean), and its slices unless gates.slices.metric says otherwise.
TASK_LOSS = {"regression": "mae", "binary": "log_loss", "multiclass": "log_loss"}
# The per-row losses a task's slices can be judged on (gates.slices.metric), TASK_LOSS first.
SLICE_METRICS: dict[str, tuple[str, ...]] = {
    "regression": ("mae", "mape"),
    "binary": ("log_loss", "brier"),
    "multiclass": ("log_loss", "brier"),
}
# The figures `run-pipeline list` shows of each version (eval_<name>, logged with it), per task.
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "regression": ("r2", "mae", "rmse", "mape"),
    "binary": ("roc_auc", "log_loss", "accuracy", "f1"),
    "multiclass": ("roc_auc", "log_loss", "accuracy", "f1"),
}
LOSS_LABELS = {"mae": "MAE", "mape": "MAPE", "log_loss": "log loss", "brier": "Brier"}  # as messages name them


class DataSettings(_Strict):
    path: Path
    target: str
    # What the target is: a number (regression), one of two labels (binary) or of several
    # (multiclass). A classifier's labels are `classes`, as text (a number label as written:
    # 1, not 1.0); a binary task names the label it scores, `positive_class`.
    task: Task = "regression"
    classes: list[str] = []
    positive_class: str | None = None
    id_columns: list[str] = []
    drop_columns: list[str] = []
    numeric_features: list[str] | None = None
    categorical_features: list[str] | None = None
    # A row whose target is missing can be neither trained on nor judged: refused (the
    # default), or dropped when the data is loaded, a policy init states where the file has such rows.
    rows_without_target: Literal["refuse", "drop"] = "refuse"
    contract: Contract = Contract()

    @model_validator(mode="after")
    def _labels(self) -> DataSettings:
        if self.task == "regression":
            for key, given in (("classes", self.classes), ("positive_class", self.positive_class is not None)):
                if given:
                    raise ValueError(f"data.{key}: given, but data.task is regression (a classifier's labels)")
            return self
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("data.classes: a label is listed twice")
        want = "exactly 2" if self.task == "binary" else "at least 3"
        if (len(self.classes) != 2) if self.task == "binary" else (len(self.classes) < 3):
            raise ValueError(
                f"data.classes: {len(self.classes)} labels; data.task {self.task} needs {want} (the target's labels)"
            )
        if self.task == "binary":
            if self.positive_class is None:
                raise ValueError("data.positive_class: missing: data.task binary scores one of data.classes")
            if self.positive_class not in self.classes:
                raise ValueError(
                    f"data.positive_class: '{self.positive_class}' is not one of data.classes "
                    f"({', '.join(self.classes)})"
                )
        elif self.positive_class is not None:
            raise ValueError("data.positive_class: only for data.task binary (multiclass scores every class)")
        return self

    @property
    def classifier(self) -> bool:
        return self.task != "regression"

    @property
    def labels(self) -> list[str]:
        """The labels in the order of the model's classes (codes 0, 1, ...): binary, the other
        class first and the positive one (code 1) second; multiclass, as data.classes lists them."""
        if self.task == "binary":
            return [c for c in self.classes if c != self.positive_class] + [str(self.positive_class)]
        return list(self.classes)


class SplitSettings(_Strict):
    test_size: float = Field(gt=0, lt=1)
    seed: int


class ModelSettings(_Strict):
    type: Literal["hist_gradient_boosting", "ridge", "random_forest", "logistic_regression"]
    log_target: bool = False
    # A binary classifier's decision: positive where its probability is at least this
    # (the gates that judge decisions, accuracy and F1, read it; probabilities are scored).
    decision_threshold: float = Field(default=0.5, gt=0, lt=1, allow_inf_nan=False)
    params: dict[str, Any] = {}


class MlflowSettings(_Strict):
    tracking_uri: str
    artifact_location: Path
    experiment: str
    registered_model: str
    # Bounded patience with a tracking server: MLflow's own default retries for minutes.
    http_timeout_s: int = Field(default=20, ge=1)
    http_max_retries: int = Field(default=2, ge=0)
    keep_versions: int = Field(default=10, ge=1)
    # Where promotions to one alias take turns (registry.alias_lock): a PostgreSQL database
    # (SQLAlchemy URL) every pipeline sharing this registry reaches, e.g. the tracking server's
    # own. Unset: the tracking store itself where it is a database (postgresql://: an advisory
    # lock; sqlite:///: a lock file beside it); with an HTTP server and no lock_url, a move is
    # checked by re-reading the alias after it (a lost race is seen, not prevented).
    lock_url: str | None = None


class DirectionalExpectation(_Strict):
    feature: str
    direction: Literal["increasing", "decreasing"]
    step_relative: float = Field(default=0.1, gt=0)


class DriftSettings(_Strict):
    min_rows: int = Field(default=20, ge=2)


class ChampionSettings(_Strict):
    # The model the candidate must not be worse than: the holder of this alias; null means
    # the alias of the environment being gated (the model a promotion would replace).
    alias: str | None = None
    bootstrap_resamples: int = Field(default=2000, ge=100)
    # Rows drawn per resample (an m-out-of-n bootstrap above this many rows): the interval
    # is then that of a 100k-row evaluation, while the work stops growing with the row count.
    bootstrap_rows: int = Field(default=100_000, ge=1000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    # non_inferiority: the upper confidence bound of the relative MAE change must stay within
    # the margin (champion_mae's max): the candidate is shown to be at most that much worse.
    # not_confidently_worse: only the lower bound is judged, so a noisy candidate that is
    # probably worse still passes; say so explicitly if that is what is wanted.
    test: Literal["non_inferiority", "not_confidently_worse"] = "non_inferiority"


class SliceSettings(_Strict):
    # The per-row loss a slice is judged on (SLICE_METRICS, the task's): a regressor's mae
    # (absolute error) or mape (relative error, for targets whose errors grow with them); a
    # classifier's log_loss or brier. Unset: the task's first (Settings.slice_metric).
    metric: Literal["mae", "mape", "log_loss", "brier"] | None = None
    columns: list[str] = []
    target_bands: list[float] = []
    # What the target bands cut: the rows' predictions (the slice a decision is made on), or
    # the observed target (whose extreme bands are the worst for any imperfect model).
    band_by: Literal["prediction", "target"] = "prediction"
    min_rows: int = Field(default=30, ge=1)
    # A binary task's slice with fewer rows of the positive class than this is not judged (its
    # loss is a handful of events'), and the gate says how many were left out.
    min_positives: int = Field(default=10, ge=1)


class ResidualSettings(_Strict):
    scale: Literal["raw", "log"] = "raw"
    sample_size: int = Field(default=5000, ge=100)
    # The rows' real order (time), for the autocorrelation gate: Durbin-Watson means something
    # only along one. Features or data.id_columns, sorted on in this order. Unset: the gate
    # cannot apply and says so (a failure where it is required); null: there is no such
    # order, stated, so "not applicable" is accepted.
    order_by: list[str] | None = None
    # A censored target's cap (init states it: Boston's medv at 50): rows whose observed
    # target is at or beyond it are left out of the residual gates, their error unknown (the
    # true value is that or beyond), and counted in the gates' detail.
    censored: Range = Range()


class RobustnessSettings(_Strict):
    # The noise gate's noise sd, per numeric feature: the smaller of noise_steps x the
    # column's resolution (the median step between its distinct training values) and
    # noise_relative_sd x its training sd; with noise_scale: spread, the latter alone;
    # noise_sd declares a column's sd in its own unit.
    noise_scale: Literal["resolution", "spread"] = "resolution"
    noise_steps: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    noise_relative_sd: float = Field(default=0.01, gt=0, allow_inf_nan=False)
    noise_sd: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]] = {}
    percentile: float = Field(default=95, gt=0, le=100)
    # The noise gate's figure: the percentile over one fixed, seeded sample of this many
    # evaluation rows, every numeric feature perturbed at once; a stable statistic, not the
    # worst of random examples.
    noise_rows: int = Field(default=2000, ge=50)
    rows_per_example: int = Field(default=200, ge=10)
    directional: list[DirectionalExpectation] = []


class DeterminismSettings(_Strict):
    # The refit gate's bound: up to 2 x refit_rows training rows, one refit on all of them is
    # compared with the model; beyond, two refits on a seeded sample of refit_rows rows.
    refit_rows: int = Field(default=2000, ge=50)
    # Evaluation rows the determinism gates compare, a seeded sample beyond this many: whether
    # a prediction changes between two asks shows on any rows (at a million rows, comparing
    # them all cost four full predicts, ~4 minutes here).
    compare_rows: int = Field(default=20_000, ge=100)


class LatencySettings(_Strict):
    single_row_rounds: int = Field(default=200, ge=20)
    batch_rows: int = Field(default=1000, ge=1)
    batch_rounds: int = Field(default=10, ge=5)
    # Of the timing figures' bootstrap intervals (rounds resampled with replacement).
    confidence: float = Field(default=0.95, gt=0.5, lt=1)


class ServingSettings(_Strict):
    requests: int = Field(default=100, ge=20)
    start_timeout_s: float = Field(default=120, gt=0)


class GateSettings(_Strict):
    drift: DriftSettings = DriftSettings()
    champion: ChampionSettings = ChampionSettings()
    slices: SliceSettings = SliceSettings()
    residuals: ResidualSettings = ResidualSettings()
    robustness: RobustnessSettings = RobustnessSettings()
    determinism: DeterminismSettings = DeterminismSettings()
    latency: LatencySettings = LatencySettings()
    serving: ServingSettings = ServingSettings()


# A waiver never applies to these gates: the data contract is the contract everywhere.
UNWAIVABLE = ("data_contract",)


class Waiver(_Strict):
    """One required gate's failure accepted, visibly, at one environment, until a date."""

    gate: str
    env: str
    reason: str = Field(min_length=1)
    expires: dt.date  # the last day it applies (UTC); afterwards the gate fails as before


class SigningSettings(_Strict):
    # Evidence is signed at the end of each gate run with this Ed25519 private key (PEM);
    # $PIPELINE_SIGNING_KEY, the key's PEM text (a CI secret), takes its place. Neither is
    # ever logged. None and no variable: evidence is written unsigned, and says so.
    private_key: Path | None = None
    # Promotion accepts only evidence signed by one of these public keys (PEM files);
    # empty: unsigned evidence is accepted, as before signing existed.
    public_keys: list[Path] = []


class LiveSettings(_Strict):
    """`run-pipeline serve` and `monitor`: the challenger's traffic, the prediction log, the live window."""

    # Share of rows routed to the challenger in split mode (by a stable hash of the request key).
    share: float = Field(default=0.1, ge=0, le=1)
    # The column whose value routes a row (one entity, one arm); unset: the X-Route-Key header,
    # else the request id.
    key: str | None = None
    # The prediction log: a SQLAlchemy URL (postgresql://... when several servers run); unset:
    # SQLite beside the config, live/predictions.db. A relative sqlite path is beside the config.
    log_url: str | None = None
    # Rows the answer path may queue for the log writer; beyond them a row is dropped and counted.
    queue_rows: int = Field(default=20_000, ge=100)
    # The monitor judges each arm on the latest `window` rows it scored (answered, or in the
    # shadow), and acts only on at least `min_feedback_rows` of them with feedback.
    window: int = Field(default=5000, ge=10)
    min_feedback_rows: int = Field(default=200, ge=5)
    # Of the live figures' bootstrap intervals and of "confidently worse".
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    bootstrap_resamples: int = Field(default=1000, ge=100)
    # How often a running server asks the registry who holds its aliases (and the log whether
    # its challenger was stopped).
    poll_s: float = Field(default=5.0, gt=0)


# Where the figures over every evaluation row are computed (pipeline.evaluation): in this process, or Spark.
ENGINES = ("local", "spark")


class SparkSettings(_Strict):
    """The Spark engine's (pipeline.spark; `--engine spark`): where it runs and how many rows
    the gates that read rows in one place (robustness, determinism, latency, serving, the
    target-leak fits, the residual sample's source) bring to the driver."""

    master: str = "local[*]"  # a cluster's master URL in production; --spark-master overrides it
    sample_rows: int = Field(default=20_000, ge=100)
    # Spark settings passed as they are (spark.executor.memory, spark.sql.shuffle.partitions, ...).
    conf: dict[str, str] = {}


class Settings(_Strict):
    """The whole resolved config, with the active environment chosen."""

    env: str
    config_path: Path
    model_file: Path | None = (
        None  # the model config file, when the pipeline config names one: where model.* errors point
    )
    seed: int
    gate_tests: Path  # the folder of gate tests the CLI runs
    data: DataSettings
    split: SplitSettings
    model: ModelSettings
    mlflow: MlflowSettings
    gates: GateSettings = GateSettings()
    signing: SigningSettings = SigningSettings()
    live: LiveSettings = LiveSettings()
    spark: SparkSettings = SparkSettings()
    waivers: list[Waiver] = []
    environments: dict[str, Environment]

    @model_validator(mode="after")
    def _model_fits_task(self) -> Settings:
        task, m = self.data.task, self.model
        if m.type not in MODEL_TYPES[task]:
            raise ValueError(
                f"model.type: {m.type} is not a model for data.task {task} (one of: {', '.join(MODEL_TYPES[task])})"
            )
        if task != "regression" and m.log_target:
            raise ValueError(f"model.log_target: a {task} classifier has no target scale to log")
        if task == "multiclass" and "decision_threshold" in m.model_fields_set:
            raise ValueError(
                "model.decision_threshold: only for data.task binary (multiclass takes the likeliest class)"
            )
        sl = self.gates.slices
        if sl.metric is not None and sl.metric not in SLICE_METRICS[task]:
            raise ValueError(
                f"gates.slices.metric: {sl.metric} is not a loss of data.task {task} (one of: {', '.join(SLICE_METRICS[task])})"
            )
        if task != "regression" and sl.target_bands:
            raise ValueError(
                "gates.slices.target_bands: bands of a number target; a classifier's slices are its columns' values"
            )
        return self

    @property
    def slice_metric(self) -> str:
        """The loss the slice gate judges: gates.slices.metric, or the task's default."""
        return self.gates.slices.metric or TASK_LOSS[self.data.task]

    @model_validator(mode="after")
    def _env_known(self) -> Settings:
        if self.env not in self.environments:
            raise ValueError(f"environments: unknown environment '{self.env}' (known: {', '.join(self.environments)})")
        seen: dict[int, str] = {}
        for name, env in self.environments.items():
            if env.strictness in seen:
                raise ValueError(
                    f"environments: '{seen[env.strictness]}' and '{name}' both have strictness {env.strictness}: "
                    "give each environment its own (higher is stricter)"
                )
            seen[env.strictness] = name
        for i, w in enumerate(self.waivers):
            where = f"waivers.{i}"
            if w.env not in self.environments:
                raise ValueError(f"{where}.env: unknown environment '{w.env}' (known: {', '.join(self.environments)})")
            if w.gate in UNWAIVABLE:
                raise ValueError(f"{where}.gate: {w.gate} can never be waived")
            if w.gate not in self.environments[w.env].thresholds:
                raise ValueError(f"{where}.gate: '{w.gate}' has no threshold at {w.env}, so there is nothing to waive")
        return self

    def waiver(self, gate: str) -> Waiver | None:
        """The active environment's waiver of `gate` (expired or not), the last one listed."""
        found = [w for w in self.waivers if w.gate == gate and w.env == self.env]
        return found[-1] if found else None

    def stated(self, section: Any, key: str) -> bool:
        """Whether the config file set `key` of `section` (a settings block) itself, rather
        than leaving it to its default: an absence the config states is an expected one."""
        return key in section.model_fields_set

    @property
    def environment(self) -> Environment:
        return self.environments[self.env]

    @property
    def champion_alias(self) -> str:
        return self.gates.champion.alias or self.environment.alias

    @property
    def thresholds(self) -> dict[str, Threshold]:
        """The active environment's threshold per gate id."""
        return self.environment.thresholds

    def strictness(self, env: str) -> int:
        """How strict an environment is, as declared: higher is stricter."""
        return self.environments[env].strictness

    def resolved(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    @property
    def digest(self) -> str:
        """SHA-256 of the resolved config (canonical JSON)."""
        text = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def with_env(self, env: str) -> Settings:
        return _build(self.config_path, {**self.resolved(), "env": env})

    def with_data_path(self, path: Path) -> Settings:
        raw = self.resolved()
        raw["data"]["path"] = str(Path(path).resolve())
        return _build(self.config_path, raw)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last
    silently: a threshold written twice would be judged by whichever came second)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' given twice (first on line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}:{where} not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of keys at the top level")
    return raw


def _resolve_path(base: Path, value: str | Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _resolve_tracking_uri(base: Path, uri: str) -> str:
    # A relative sqlite path means "next to the config", like every other path in it.
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(_resolve_path(base, uri[len(prefix) :]))
    return uri


def _resolve_environments(config_path: Path, envs: Any) -> Any:
    """Apply `extends` (a child lists only the threshold lines that differ; `KEY: null` drops
    one; `approval` is inherited unless restated), default each alias to the environment's name, and give every threshold its gate
    id and environment for its messages."""
    if not isinstance(envs, dict):
        return envs
    done: dict[str, Any] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> Any:
        if name in done:
            return done[name]
        env = envs[name]
        if not isinstance(env, dict):
            return env
        env = dict(env)
        parent = env.pop("extends", None)
        own = env.get("thresholds")
        if own is not None and not isinstance(own, dict):
            return env
        thresholds: dict[str, Any] = {}
        if parent is not None:
            if parent not in envs:
                raise InputError(
                    f"{config_path}: environments.{name}.extends: unknown environment '{parent}' (known: {', '.join(map(str, envs))})"
                )
            if parent in chain:
                raise InputError(
                    f"{config_path}: environments.{name}.extends: '{parent}' extends '{name}' in turn (a cycle)"
                )
            base = resolve(parent, (*chain, name))
            thresholds = {k: dict(v) if isinstance(v, dict) else v for k, v in (base.get("thresholds") or {}).items()}
            for key in ("approval", "inconclusive_reruns"):  # a stricter child never silently drops them
                if isinstance(base, dict) and key in base:
                    env.setdefault(key, base[key])
        for key, th in (own or {}).items():
            if th is None:
                thresholds.pop(key, None)
            else:
                thresholds[key] = th
        for key, th in thresholds.items():
            if isinstance(th, dict):
                thresholds[key] = {**th, "gate": str(key), "env": name}
        env["thresholds"] = thresholds
        env.setdefault("alias", name)
        done[name] = env
        return env

    return {name: resolve(name, ()) for name in envs}


def _build(config_path: Path, raw: dict[str, Any], model_path: Path | None = None) -> Settings:
    raw = {**raw, "environments": _resolve_environments(config_path, raw.get("environments"))}
    try:
        return Settings.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            if err["loc"][-1:] == ("required_gates",):
                msg += " (every gate with a threshold is required; a threshold line with required: false is not)"
        elif err["type"] == "missing":
            msg = "missing key"
        # model.* keys live in the model config file when the pipeline config names one.
        model_path = model_path or (Path(raw["model_file"]) if isinstance(raw.get("model_file"), str) else None)
        in_model = err["loc"][:1] == ("model",) or (not err["loc"] and msg.startswith("model."))
        where = model_path if model_path is not None and in_model else config_path
        if not err["loc"] or msg.startswith(f"{key}."):  # a check that names its own key (waivers.0.gate, data.classes)
            raise InputError(f"{where}: {msg}{more}") from None
        raise InputError(f"{where}: {key}: {msg}{more}") from None


def load(path: str | Path | None = None, env: str | None = None) -> Settings:
    """Read the pipeline config (and the model config it names) into Settings for `env`.

    `path` defaults to $PIPELINE_CONFIG, then configs/pipeline_config.yaml; `env` defaults
    to the file's `default_env`. $MLFLOW_TRACKING_URI, when set, overrides the tracking URI.
    """
    path = Path(path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG).resolve()
    raw = _read_yaml(path)
    base = path.parent
    model_file = raw.pop("model_config", None)
    model_path = None
    if model_file is not None:
        if not isinstance(model_file, str):
            raise InputError(f"{path}: model_config: expected a file name")
        model_path = _resolve_path(base, model_file)
        model_raw = _read_yaml(model_path)
        unknown = set(model_raw) - {"model"}
        if unknown:
            raise InputError(f"{model_path}: {sorted(unknown)[0]}: unknown key")
        if "model" in raw:
            raise InputError(f"{path}: model: given here and in {model_path}")
        raw["model"] = model_raw.get("model")
        raw["model_file"] = str(model_path)
    default_env = raw.pop("default_env", None)
    raw["env"] = env or default_env or "dev"
    envs = raw.get("environments")
    if isinstance(envs, dict) and raw["env"] not in envs:
        # Name where the environment came from, not "(top level)".
        source = "--env" if env else "default_env"
        raise InputError(
            f"{path}: environments: unknown environment '{raw['env']}' (from {source}; known: {', '.join(map(str, envs))})"
        )
    raw["config_path"] = str(path)
    raw["gate_tests"] = str(_resolve_path(base, raw.get("gate_tests") or "../model_tests"))
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        data["path"] = str(_resolve_path(base, data["path"]))
    signing = raw.get("signing")
    if isinstance(signing, dict):
        if isinstance(signing.get("private_key"), str):
            signing["private_key"] = str(_resolve_path(base, signing["private_key"]))
        if isinstance(signing.get("public_keys"), list):
            signing["public_keys"] = [
                str(_resolve_path(base, k)) if isinstance(k, str) else k for k in signing["public_keys"]
            ]
    ml = raw.get("mlflow")
    if isinstance(ml, dict):
        if os.environ.get("MLFLOW_TRACKING_URI"):
            ml["tracking_uri"] = os.environ["MLFLOW_TRACKING_URI"]
        if isinstance(ml.get("tracking_uri"), str):
            ml["tracking_uri"] = _resolve_tracking_uri(base, ml["tracking_uri"])
        if isinstance(ml.get("artifact_location"), str):
            ml["artifact_location"] = str(_resolve_path(base, ml["artifact_location"]))
    return _build(path, raw, model_path)

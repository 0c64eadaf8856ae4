"""The pytest plugin: options, markers, the gate fixture, and one session object.

Registered through the `pytest11` entry point, so any repository that installs the
package gets it. It stays dormant in sessions that collect no test marked `gates`. Its
state lives in one `GatePlugin` registered with the plugin manager (as pytest's junitxml
and pytest-benchmark hold theirs); what the suite needs is checked at collection, before
any gate runs; the session's outcome is one typed `GateRunResult`.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipeline import catalogue, checks, gating, registry, signing
from pipeline import config as config_mod
from pipeline.config import ENGINES, Settings, Threshold
from pipeline.errors import InputError, PipelineError, PromotionRefused
from pipeline.evidence import FAMILIES, GateReport, figure_dict
from pipeline.judge import judge
from pipeline.teardown import fast_interpreter_exit

if TYPE_CHECKING:
    from pipeline.session import GateSession

# pipeline.session (0.4 s: sklearn, the training code) and pipeline.data (0.25 s) are imported inside
# functions: pytest loads this plugin in every session (pytest11), and one collecting no gate needs neither.

PLUGIN = pytest.StashKey["GatePlugin"]()
RECORDED = pytest.StashKey[dict]()  # what a gate recorded, on its item
NOT_APPLICABLE = pytest.StashKey[str]()  # why a gate's precondition is absent, on its item
INCONCLUSIVE = pytest.StashKey[str]()  # why a timing gate's rounds could not be judged, on its item


@dataclass
class GateRunResult:
    """What one gate run decided: pytest's exit code, the evidence and the promotion."""

    exit_code: int = 0
    evidence: dict[str, Any] | None = None
    evidence_path: Path | None = None
    promotion: str | None = None
    promotion_refused: str | None = None
    report_files: dict[str, Path] = field(default_factory=dict)
    error: PipelineError | None = None
    usage: str | None = None  # why the run stopped before any gate ran (bad config, options or suite)


@dataclass(eq=False)  # compared and hashed by identity: the plugin manager keeps it in a set
class GateRunRequest:
    """A gate run asked for in process (the CLI): settings already loaded, the result handed back.

    Passed to `pytest.main(..., plugins=[request])`; the plugin takes its settings instead of
    reading --pipeline-config and --env, and fills `result`.
    """

    settings: Settings
    result: GateRunResult = field(default_factory=GateRunResult)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("model-gates", "model quality gates")
    group.addoption(
        "--env",
        dest="gate_env",
        metavar="NAME",
        default=None,
        help="Environment whose thresholds apply and whose required gates decide (e.g. dev, staging, production). "
        "Default: the config's default_env.",
    )
    group.addoption(
        "--model-uri",
        dest="model_uri",
        metavar="URI",
        default=None,
        help="Gate this model (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/model or a model folder). "
        "Default: fit the configured model in process.",
    )
    group.addoption(
        "--promote",
        dest="promote",
        action="store_true",
        default=False,
        help="After a complete, green run, move the environment's alias to the gated version. "
        "Needs --model-uri models:/NAME/VERSION. Default: off.",
    )
    group.addoption(
        "--pipeline-config",
        dest="pipeline_config",
        metavar="PATH",
        default=None,
        help=f"Pipeline config file. Default: ${config_mod.CONFIG_ENV_VAR}, then {config_mod.DEFAULT_CONFIG}.",
    )
    group.addoption(
        "--eval-data",
        dest="eval_data",
        metavar="PATH",
        default=None,
        help="Evaluate on this CSV (checked by the same contract) instead of the held-out split. "
        "Default: the seeded split of the configured data.",
    )
    group.addoption(
        "--engine",
        dest="engine",
        choices=ENGINES,
        default="local",
        help="Where the figures over every evaluation row are computed: local (in this process) or spark "
        "(Spark aggregations, predictions by mlflow.pyfunc.spark_udf; needs pyspark and Java). Default: local.",
    )
    group.addoption(
        "--spark-master",
        dest="spark_master",
        metavar="URL",
        default=None,
        help="Spark master for --engine spark (local[*], spark://host:7077, yarn, ...). Default: the config's spark.master.",
    )
    group.addoption(
        "--evidence-dir",
        dest="evidence_dir",
        metavar="DIR",
        default="reports",
        help="Where the evidence JSON and the gate report are written. Default: reports",
    )


def pytest_configure(config: pytest.Config) -> None:
    _collect_only_writes_nothing(config)
    config.addinivalue_line("markers", "gates: a quality gate that decides promotion")
    for family, text in FAMILIES.items():
        config.addinivalue_line("markers", f"{family}: gate family: {text}")

    def family_marker(name: str, text: str) -> None:  # a family registered later, by a repository's module
        config.addinivalue_line("markers", f"{name}: gate family: {text}")

    catalogue.FAMILY_LISTENERS.append(family_marker)
    config.add_cleanup(lambda: catalogue.FAMILY_LISTENERS.remove(family_marker))
    if config.option.promote and not config.option.model_uri:
        raise pytest.UsageError(
            "--promote needs --model-uri models:/NAME/VERSION: only a registered version can be promoted"
        )
    request = next((p for p in config.pluginmanager.get_plugins() if isinstance(p, GateRunRequest)), None)
    plugin = GatePlugin(config, request)
    config.stash[PLUGIN] = plugin
    config.pluginmanager.register(plugin, "model_gates_session")


def _collect_only_writes_nothing(config: pytest.Config) -> None:
    """pytest-benchmark makes its storage folder (./.benchmarks) when it starts, even to collect:
    under --collect-only, point it at a temporary folder that goes with the session."""
    if not config.option.collectonly or not hasattr(config.option, "benchmark_storage"):
        return
    folder = tempfile.mkdtemp(prefix="benchmarks-")
    config.option.benchmark_storage = f"file://{folder}"
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.stash.get(PLUGIN, None)
    if plugin is not None:
        if plugin._session is not None:  # a gate run: its heap makes the exit slow
            fast_interpreter_exit()
        config.pluginmanager.unregister(plugin)
        del config.stash[PLUGIN]


def gate_identity(item: pytest.Item) -> tuple[str, str] | None:
    """(gate id, family) of a gate test, None for other tests; a gate needs one family marker."""
    if item.get_closest_marker("gates") is None:
        return None
    families = [f for f in FAMILIES if item.get_closest_marker(f) is not None]
    if len(families) != 1:
        raise pytest.UsageError(
            f"{item.nodeid}: a gate needs exactly one family marker of {', '.join(FAMILIES)}; found {families or 'none'}"
        )
    name = getattr(item, "originalname", item.name)
    return name.removeprefix("test_"), families[0]


def _spec_of(item: pytest.Item) -> Any:
    """The catalogue spec a standard gate's test was generated from (None for other tests)."""
    return getattr(getattr(item, "function", None), "gate_spec", None)


def _message(report: pytest.TestReport) -> str:
    lr = report.longrepr
    if lr is None:
        return ""
    if isinstance(lr, tuple):  # skip: (path, line, reason)
        return str(lr[2]).removeprefix("Skipped: ")
    crash = getattr(lr, "reprcrash", None)
    text = crash.message if crash is not None else str(lr)
    first = text.strip().splitlines()[0] if text.strip() else ""
    # A gate's assertion message is the sentence; the exception's class name is noise.
    return first.removeprefix("AssertionError: ").removeprefix("Failed: ")


def _today():
    return dt.datetime.now(dt.UTC).date()


def _outcome(report: pytest.TestReport) -> str | None:
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.passed:
            return "xpassed" if xfail else "passed"
        return "failed" if report.failed else ("xfailed" if xfail else "skipped")
    if report.when == "setup" and not report.passed:
        return "error" if report.failed else ("xfailed" if xfail else "skipped")
    if report.when == "teardown" and report.failed:
        return "error"
    return None


class GatePlugin:
    """The session's gate state: settings, identities, the gate report and the result."""

    def __init__(self, config: pytest.Config, request: GateRunRequest | None = None):
        self.config = config
        opt = config.option
        self.request = request
        self.model_uri: str | None = opt.model_uri
        self.eval_data: str | None = opt.eval_data
        self.promote: bool = opt.promote
        self.evidence_dir = Path(opt.evidence_dir)
        self.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.worker = hasattr(config, "workerinput")  # pytest-xdist: the controller writes the evidence
        self.items: dict[str, tuple[str, str]] = {}  # nodeid -> (gate, family)
        self.deselected: list[pytest.Item] = []
        self.report = GateReport()
        self.result = request.result if request is not None else GateRunResult()
        self._settings: Settings | None = request.settings if request is not None else None
        self._session: GateSession | None = None
        self.signing_key = None  # the Ed25519 key that signs this run's evidence, read at collection

    # ------------------------------------------------------------ settings and session

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            opt = self.config.option
            try:
                self._settings = config_mod.load(opt.pipeline_config, opt.gate_env)
            except InputError as e:
                self.result.usage = str(e)
                raise pytest.UsageError(str(e)) from None
        return self._settings

    @property
    def active(self) -> bool:
        return bool(self.items)

    @property
    def gate_session(self) -> GateSession:
        from pipeline.session import GateSession

        if self._session is None:
            opt = self.config.option
            self._session = GateSession(
                self.settings, self.model_uri, self.eval_data, engine=opt.engine, spark_master=opt.spark_master
            )
        return self._session

    def required_in_family(self, family: str) -> list[str]:
        """The collected gates of `family` that the active environment requires."""
        required = set(self.settings.environment.required_gates)
        return sorted(g for g, f in self.items.values() if f == family and g in required)

    # ------------------------------------------------------------ collection

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected.extend(items)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Know every gate, then check what the suite needs before any gate runs."""
        if any(_spec_of(it) for it in [*items, *self.deselected]):
            # A standard gate judges the models of its tasks (data.task); the others are not this run's.
            task = self.settings.data.task
            items[:] = [it for it in items if task in getattr(_spec_of(it), "tasks", (task,))]
            self.deselected = [it for it in self.deselected if task in getattr(_spec_of(it), "tasks", (task,))]
        deselected = {it.nodeid for it in self.deselected}
        for item in [*items, *self.deselected]:
            ident = gate_identity(item)
            if ident:
                self.items[item.nodeid] = ident
        if not self.items:
            return
        try:
            self._check_suite()
        except pytest.UsageError as e:
            self.result.usage = str(e)
            raise
        for item in self.deselected:
            ident = self.items.get(item.nodeid)
            if ident and not self.worker:
                g = self.report.gate(*ident)
                g.nodeids.append(item.nodeid)
                g.merge_outcome("deselected")
        for item in items:
            ident = self.items.get(item.nodeid)
            if ident and not self.worker and item.nodeid not in deselected:
                self.report.gate(*ident).nodeids.append(item.nodeid)

    def _check_suite(self) -> None:
        """Thresholds for every collected gate, a gate for every required threshold, sane bounds, usable options."""
        s = self.settings
        where = f"{s.config_path}: environments.{s.env}.thresholds"
        gates: dict[str, str] = {}
        for nodeid, (gate, _family) in self.items.items():
            gates.setdefault(gate, nodeid)
        for gate, nodeid in gates.items():
            th = s.thresholds.get(gate)
            if th is None:
                raise pytest.UsageError(f"{where}.{gate}: missing: the gate {nodeid} has no threshold at {s.env}")
            if th.max_ratio_to_baseline is not None and gate not in checks.BASELINE_GATES:
                raise pytest.UsageError(
                    f"{where}.{gate}.max_ratio_to_baseline: only an error figure has a baseline to compare with "
                    f"({', '.join(checks.BASELINE_GATES)})"
                )
            if th.max_ratio_to_reference is not None and gate not in checks.REFERENCE_GATES:
                raise pytest.UsageError(
                    f"{where}.{gate}.max_ratio_to_reference: only a timing gate is timed against the reference "
                    f"workload ({', '.join(checks.REFERENCE_GATES)})"
                )
            if gate in checks.DOMAINS:
                why = th.impossible(*checks.DOMAINS[gate])
                if why:
                    raise pytest.UsageError(
                        f"{where}.{gate}: impossible threshold: {why}, so the gate could never pass"
                    )
        absent = [g for g in s.environment.required_gates if g not in gates]
        if absent:
            raise pytest.UsageError(
                f"{where}.{absent[0]}: required at {s.env}, but no collected test is that gate"
                + (f" (nor is {', '.join(absent[1:])})" if len(absent) > 1 else "")
                + "; run the whole suite and select with -k or -m (a deselected required gate refuses promotion), "
                "or mark the line required: false"
            )
        from pipeline import data as data_mod

        if self.config.option.engine == "spark":
            from pipeline import spark

            why = spark.available() or spark.unusable(s, self.model_uri)
            if why:
                raise pytest.UsageError(f"--engine spark: {why}")
        elif self.eval_data is not None and data_mod.is_parquet(Path(self.eval_data)):
            raise pytest.UsageError(
                f"--eval-data {self.eval_data}: a Parquet file or folder is read by --engine spark only"
            )
        if self.eval_data is not None:
            try:
                data_mod.check_header(Path(self.eval_data), s.data, "--eval-data")
            except InputError as e:
                raise pytest.UsageError(str(e)) from None
        if not self.worker and not self.config.option.collectonly:
            try:  # a missing or broken key stops the run here, not after every gate ran
                self.signing_key = signing.load_private(s.signing.private_key)
                signing.load_public_keys(s.signing.public_keys)
            except InputError as e:
                raise pytest.UsageError(str(e)) from None
        if self.promote and not str(self.model_uri).startswith("models:/"):
            raise pytest.UsageError(
                f"--model-uri {self.model_uri}: only a registered version (models:/NAME/VERSION) can be promoted"
            )
        if self.model_uri is not None and not self.config.option.collectonly:
            try:
                registry.resolve(s, self.model_uri)
            except PipelineError as e:
                raise pytest.UsageError(str(e)) from None

    # ------------------------------------------------------------ reports

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        # The gate's identity and what it recorded travel with the report as plain data, so
        # that under pytest-xdist the controller, which collects nothing, still has both.
        report: pytest.TestReport = yield
        ident = self.items.get(item.nodeid)
        if ident is not None:
            report.model_gate = {"gate": ident[0], "family": ident[1], "recorded": item.stash.get(RECORDED, None)}  # type: ignore[attr-defined]
            if report.when == "call":
                self._verdict(item, report, ident[0])
        return report

    def _verdict(self, item: pytest.Item, report: pytest.TestReport, gate: str) -> None:
        """The outcomes pytest has no word for, on a gate's call report.

        not_applicable: it passed without a figure, its precondition absent. inconclusive: a
        timing gate could not judge its rounds (a required one fails the run). advisory: a gate
        the environment does not require failed: reported, and pytest counts it xfailed (the
        run does not fail on it). waived: a required gate failed under a valid waiver: the
        same, with the waiver recorded. An expired waiver leaves the failure as it is.
        """
        info, s = report.model_gate, self.settings
        if report.passed and NOT_APPLICABLE in item.stash:
            info["verdict"], info["message"] = "not_applicable", item.stash[NOT_APPLICABLE]
            return
        if not report.failed:
            return
        message = _message(report)
        th = s.thresholds.get(gate)
        waiver = s.waiver(gate)
        # inconclusive: a timing gate's rounds could not be judged; it refuses like a failure.
        inconclusive = INCONCLUSIVE in item.stash
        if inconclusive:
            info["verdict"], info["message"] = "inconclusive", message
        if th is not None and not th.required:
            info["verdict"] = "inconclusive" if inconclusive else "advisory"
            info["message"] = f"advisory at {s.env} (not required): {message}"
        elif waiver is not None and waiver.expires >= _today():
            info["verdict"] = "waived"
            info["message"] = f"waived at {s.env} until {waiver.expires} ({waiver.reason}): {message}"
            info["waiver"] = {"reason": waiver.reason, "expires": waiver.expires.isoformat()}
        else:
            if waiver is not None:
                info["message"] = (
                    f"{message}; the waiver of {gate} at {s.env} expired on {waiver.expires} ({waiver.reason})"
                )
            return
        report.outcome = "skipped"  # with wasxfail: pytest's xfailed, in the terminal and in JUnit
        report.wasxfail = info["message"]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Fold one report into the gate report (in a plain session, or in xdist's controller)."""
        info = getattr(report, "model_gate", None)
        if self.worker or not info:
            return
        gate, family = info["gate"], info["family"]
        g = self.report.gate(gate, family)
        if report.nodeid not in g.nodeids:
            g.nodeids.append(report.nodeid)
        g.duration_s += report.duration
        if info.get("recorded"):
            self.report.record(gate, family, info["recorded"])
        outcome = info.get("verdict") or _outcome(report)
        if outcome:
            g.merge_outcome(outcome)
            if info.get("waiver"):
                g.waiver = info["waiver"]
            if outcome != "passed":
                g.message = g.message or info.get("message") or _message(report)

    # ------------------------------------------------------------ session end

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.worker or not self.report or self.config.option.collectonly:
            return
        if exitstatus in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
            return  # stopped by bad input or by the user: nothing is written
        try:
            gating.finish(self, self.result)
        except PromotionRefused as e:
            self.result.promotion_refused = str(e)
        except PipelineError as e:  # the store or the data failed us after the gates ran
            self.result.error = e
        # Test outcomes already decide pytest's exit code; a refused promotion must too.
        if (self.result.promotion_refused or self.result.error) and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.result.exit_code = int(session.exitstatus)

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        # Run by the CLI (a GateRunRequest): it prints the one gate table and the verdict itself.
        if self.worker or not self.report or config.option.collectonly or self.request is not None:
            return
        tr = terminalreporter
        r = self.result
        tr.section(f"model gates ({self._settings.env if self._settings else '?'})")
        for line in gate_table(self.report):
            tr.write_line(line)
        if r.evidence is not None:
            tr.write_line(f"evidence: {r.evidence_path} status={r.evidence['status']}")
            for reason in r.evidence["reasons"]:
                tr.write_line(f"  {reason}")
        if r.promotion:
            tr.write_line(r.promotion)
        if r.promotion_refused:
            tr.write_line(f"promotion refused: {r.promotion_refused}", red=True)
        if r.error:
            tr.write_line(f"error: {r.error}", red=True)


def gate_table(report: GateReport) -> list[str]:
    rows = [("gate", "figure", "threshold", "status")]
    order = list(FAMILIES)
    for g in sorted(report.gates.values(), key=lambda g: (order.index(g.family), g.gate)):
        rows.append((g.gate, g.figure_text, g.threshold_text, g.outcome))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


# ---------------------------------------------------------------- the gate fixture


class Gate:
    """One gate in the active environment: its id, its threshold, and how it records its figure."""

    def __init__(self, item: pytest.Item, gate: str, family: str, threshold: Threshold):
        self.item, self.id, self.family, self.threshold = item, gate, family, threshold

    def record(self, finding: checks.Finding | None, detail: str = "") -> None:
        """Record the gate's figure for the JUnit XML and the evidence (None: no figure, with why)."""
        value = None if finding is None else finding.value
        label = "" if finding is None else finding.label
        detail = detail or ("" if finding is None else finding.detail)
        fig = figure_dict(self.id, value, self.threshold, label, detail)
        if finding is not None and finding.baseline_ratio is not None:  # beside the figure, where tables read it
            fig["baseline"] = float(finding.baseline) if finding.baseline is not None else float("nan")
            fig["ratio_to_baseline"] = float(finding.baseline_ratio)
        if finding is not None and "ratio_to_reference" in finding.reported:
            fig["ratio_to_reference"] = float(finding.reported["ratio_to_reference"])
        self.item.stash[RECORDED] = {
            "figure": fig,
            "reported": {} if finding is None else {k: float(v) for k, v in finding.reported.items()},
            "plot": {} if finding is None else dict(finding.plot),
        }
        props = [(k, v) for k, v in self.item.user_properties if not k.startswith(f"{self.id}.")]
        props += [
            (f"{self.id}.figure", "none" if value is None else repr(float(value))),
            (f"{self.id}.threshold", self.threshold.describe()),
            (f"{self.id}.direction", self.threshold.direction),
            (f"{self.id}.unit", self.threshold.unit),
            (f"{self.id}.env", self.threshold.env),
        ]
        if "baseline" in fig:
            props += [
                (f"{self.id}.baseline", repr(fig["baseline"])),
                (f"{self.id}.ratio_to_baseline", repr(fig["ratio_to_baseline"])),
            ]
        if "ratio_to_reference" in fig:
            props.append((f"{self.id}.ratio_to_reference", repr(fig["ratio_to_reference"])))
        if detail:
            props.append((f"{self.id}.detail", detail))
        self.item.user_properties[:] = props

    def holds(self, finding: checks.Finding) -> bool:
        """Record the finding and say whether the one judge passes it (a repository's own gate)."""
        self.record(finding)
        return judge(self.threshold, finding).passed

    def explain(self, finding: checks.Finding) -> str:
        """One line: figure, threshold, detail and environment."""
        return judge(self.threshold, finding).why

    def not_applicable(self, reason: str, *, stated: bool = True, how: str = "") -> None:
        """The gate's precondition is absent here: no figure, the reason in its place, and the
        outcome "not_applicable", never "passed" (see catalogue.NotApplicable)."""
        self.record(None, reason)
        if not stated and self.threshold.required:
            pytest.fail(
                f"not applicable: {reason}; {self.id} is required at {self.threshold.env} and the config does not "
                f"say the absence is expected ({how})",
                pytrace=False,
            )
        self.item.stash[NOT_APPLICABLE] = reason

    def decide(self, **fixtures: Any) -> None:
        """Run this standard gate's spec on the session, record its finding and judge it: passes,
        fails with one line, or fails marked inconclusive (a timing its rounds could not decide;
        never a pass). With benchmarking disabled a timing gate has no figure: skipped."""
        spec = getattr(self.item, "function", None)
        spec = getattr(spec, "gate_spec", None)
        if spec is None:
            raise pytest.UsageError(
                f"{self.item.nodeid}: gate.decide() is for the tests of standard gates (catalogue.as_test)"
            )
        bench = fixtures.get("benchmark")
        if bench is not None and bench.disabled:
            pytest.skip("benchmarking disabled: latency not measured, gate not passed")
        plugin = self.item.config.stash[PLUGIN]
        found = spec.run(catalogue.Inputs(plugin.gate_session, self.threshold, **fixtures))
        if isinstance(found, catalogue.NotApplicable):
            return self.not_applicable(found.reason, stated=found.stated, how=found.how)
        self.record(found)
        verdict = judge(self.threshold, found)
        if verdict.outcome == "inconclusive":
            self.item.stash[INCONCLUSIVE] = verdict.why
            pytest.fail(verdict.why, pytrace=False)
        assert verdict.passed, verdict.why


@pytest.fixture
def gate(request: pytest.FixtureRequest) -> Gate:
    """This gate's threshold in the active environment; records its figure under its id."""
    plugin = request.config.stash[PLUGIN]
    ident = plugin.items.get(request.node.nodeid)
    if ident is None:
        raise pytest.UsageError(f"{request.node.nodeid}: the gate fixture is for tests marked gates")
    return Gate(request.node, ident[0], ident[1], plugin.settings.thresholds[ident[0]])


# ---------------------------------------------------------------- session fixtures


@pytest.fixture(scope="session")
def gate_plugin(request: pytest.FixtureRequest) -> GatePlugin:
    """The plugin's session object (settings, collected gates, gate session)."""
    return request.config.stash[PLUGIN]


@pytest.fixture(scope="session")
def pipeline_settings(gate_plugin: GatePlugin) -> Settings:
    """The resolved config for the active environment."""
    return gate_plugin.settings


@pytest.fixture(scope="session")
def gate_session(gate_plugin: GatePlugin):
    """Data, model and predictions of this run, each computed once."""
    return gate_plugin.gate_session


@pytest.fixture(scope="session")
def feature_spec(gate_session):
    """Numeric and categorical feature columns."""
    return gate_session.features


@pytest.fixture(scope="session")
def candidate_model(gate_session):
    """The model under test (loaded from --model-uri, or fitted once in process)."""
    return gate_session.model


@pytest.fixture(scope="session")
def train_frame(gate_session):
    """The training rows of the seeded split."""
    return gate_session.train_frame


@pytest.fixture(scope="session")
def eval_frame(gate_session):
    """Contract-checked evaluation rows the model never saw."""
    return gate_session.eval_frame


@pytest.fixture(scope="session")
def eval_predictions(gate_session):
    """Evaluation rows with truth and predictions, predicted once."""
    return gate_session.predictions

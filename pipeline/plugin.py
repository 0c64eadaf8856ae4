"""The pytest plugin: options, markers, session fixtures, the gate report and promotion.

Registered through the `pytest11` entry point, so any repository that installs the
package gets it. It stays dormant in sessions that collect no test marked `gates`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from pipeline import config as config_mod
from pipeline.config import Settings, Threshold, Thresholds, fmt_number
from pipeline.errors import PipelineError
from pipeline.evidence import FAMILIES, GateReport, figure_dict


REPORT = pytest.StashKey[GateReport]()
_CURRENT: dict[str, pytest.Config] = {}  # the session's config, for hooks that are not given it
STATE = pytest.StashKey["GateState"]()


class GateState:
    """Per-session plugin state: options, lazily built settings and gate session."""

    def __init__(self, config: pytest.Config):
        opt = config.option
        self.config_path: str | None = opt.pipeline_config
        self.env: str | None = opt.gate_env
        self.model_uri: str | None = opt.model_uri
        self.eval_data: str | None = opt.eval_data
        self.promote: bool = opt.promote
        self.evidence_dir = Path(opt.evidence_dir)
        self.started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.items: dict[str, tuple[str, str]] = {}  # nodeid -> (gate, family)
        self._settings: Settings | None = None
        self._session = None
        self.evidence: dict[str, Any] | None = None
        self.evidence_path: Path | None = None
        self.promotion: str | None = None
        self.promotion_refused: str | None = None
        self.error: PipelineError | None = None
        self.report_files: dict[str, Path] = {}

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = config_mod.load(self.config_path, self.env)
        return self._settings

    @property
    def gate_session(self):
        from pipeline.session import GateSession

        if self._session is None:
            self._session = GateSession(self.settings, self.model_uri, self.eval_data)
        return self._session


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("model-gates", "model quality gates")
    group.addoption("--env", dest="gate_env", metavar="NAME", default=None,
                    help="Environment whose thresholds and required gates apply (dev, staging, production). "
                    "Default: the config's default_env.")
    group.addoption("--model-uri", dest="model_uri", metavar="URI", default=None,
                    help="Gate this model (models:/NAME/VERSION, models:/NAME@ALIAS or runs:/ID/model). "
                    "Default: fit the configured model in process.")
    group.addoption("--promote", dest="promote", action="store_true", default=False,
                    help="After a complete, green run, move the environment's alias to the gated version. "
                    "Needs --model-uri models:/NAME/VERSION. Default: off.")
    group.addoption("--pipeline-config", dest="pipeline_config", metavar="PATH", default=None,
                    help=f"Pipeline config file. Default: ${config_mod.CONFIG_ENV_VAR}, then {config_mod.DEFAULT_CONFIG}.")
    group.addoption("--eval-data", dest="eval_data", metavar="PATH", default=None,
                    help="Evaluate on this CSV (checked by the same contract) instead of the held-out split. "
                    "Default: the seeded split of the configured data.")
    group.addoption("--evidence-dir", dest="evidence_dir", metavar="DIR", default="reports",
                    help="Where the evidence JSON is written. Default: reports")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gates: a quality gate that decides promotion")
    for family, text in FAMILIES.items():
        config.addinivalue_line("markers", f"{family}: gate family: {text}")
    config.stash[REPORT] = GateReport()
    config.stash[STATE] = GateState(config)
    _CURRENT["config"] = config
    if config.option.promote and not config.option.model_uri:
        raise pytest.UsageError("--promote needs --model-uri models:/NAME/VERSION: only a registered version can be promoted")


def gate_identity(item: pytest.Item) -> tuple[str, str] | None:
    """(gate, family) of a gate test, None for other tests; a gate needs one family marker."""
    if item.get_closest_marker("gates") is None:
        return None
    families = [f for f in FAMILIES if item.get_closest_marker(f) is not None]
    if len(families) != 1:
        raise pytest.UsageError(
            f"{item.nodeid}: a gate needs exactly one family marker of {', '.join(FAMILIES)}; found {families or 'none'}"
        )
    name = getattr(item, "originalname", item.name)
    return name.removeprefix("test_"), families[0]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state, report = config.stash[STATE], config.stash[REPORT]
    for item in items:
        ident = gate_identity(item)
        if ident:
            state.items[item.nodeid] = ident
            if not hasattr(config, "workerinput"):
                report.gate(*ident).nodeids.append(item.nodeid)


def pytest_deselected(items: list[pytest.Item]) -> None:
    if not items:
        return
    config = items[0].config
    if REPORT not in config.stash:
        return
    report = config.stash[REPORT]
    for item in items:
        try:
            ident = gate_identity(item)
        except pytest.UsageError:
            continue
        if ident:
            g = report.gate(*ident)
            g.nodeids.append(item.nodeid)
            g.merge_outcome("deselected")


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
    return first.removeprefix("AssertionError: ")


IDENTITY_PROP = "gate.identity"
FIGURE_PROP = "gate.figure"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # The gate's name and family travel with the report, so that under pytest-xdist the
    # controller, which collects nothing itself, still knows which gate a report is about.
    report: pytest.TestReport = yield
    state = item.config.stash.get(STATE, None)
    ident = state.items.get(item.nodeid) if state else None
    if ident is not None and report.when == "setup":
        report.user_properties.append((IDENTITY_PROP, f"{ident[0]}|{ident[1]}"))
    elif ident is not None:
        if not any(k == IDENTITY_PROP for k, _ in report.user_properties):
            report.user_properties.append((IDENTITY_PROP, f"{ident[0]}|{ident[1]}"))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Fold one report into the gate report (in a plain session, or in xdist's controller)."""
    config = _CURRENT.get("config")
    if config is None or REPORT not in config.stash or hasattr(config, "workerinput"):
        return
    props = dict((k, v) for k, v in report.user_properties if k == IDENTITY_PROP)
    if IDENTITY_PROP not in props:
        return
    gate, family = props[IDENTITY_PROP].split("|", 1)
    gate_report = config.stash[REPORT]
    g = gate_report.gate(gate, family)
    if report.nodeid not in g.nodeids:
        g.nodeids.append(report.nodeid)
    g.duration_s += report.duration
    for key, value in report.user_properties:
        if key == FIGURE_PROP:
            fig = json.loads(value)
            gate_report.record_figure(gate, family, fig)
    xfail = hasattr(report, "wasxfail")
    outcome = None
    if report.when == "call":
        if report.passed:
            outcome = "xpassed" if xfail else "passed"
        elif report.failed:
            outcome = "failed"
        else:
            outcome = "xfailed" if xfail else "skipped"
    elif report.when == "setup" and not report.passed:
        outcome = "error" if report.failed else ("xfailed" if xfail else "skipped")
    elif report.when == "teardown" and report.failed:
        outcome = "error"
    if outcome:
        g.merge_outcome(outcome)
        if outcome != "passed":
            g.message = g.message or _message(report)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def gate_state(request: pytest.FixtureRequest) -> GateState:
    """The plugin's state for this session (options, settings, gate session)."""
    return request.config.stash[STATE]


@pytest.fixture(scope="session")
def pipeline_settings(gate_state: GateState) -> Settings:
    """The resolved config for the active environment."""
    return gate_state.settings


@pytest.fixture(scope="session")
def thresholds(pipeline_settings: Settings) -> Thresholds:
    """Every gate's threshold in the active environment."""
    return pipeline_settings.thresholds


@pytest.fixture(scope="session")
def gate_session(gate_state: GateState):
    """Data, model and predictions of this run, each computed once."""
    return gate_state.gate_session


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


@pytest.fixture
def record_gate(request: pytest.FixtureRequest, record_property) -> Callable[..., None]:
    """Record a gate's figure with its threshold for the JUnit XML and the evidence."""
    state = request.config.stash[STATE]
    ident = state.items.get(request.node.nodeid)

    def record(name: str, value: float | None, threshold: Threshold | None, detail: str = "") -> None:
        if ident is None:
            raise RuntimeError(f"{request.node.nodeid}: record_gate is for tests marked gates")
        fig = figure_dict(name, value, threshold, detail)
        # Replace an earlier record of the same figure (a gate may refine its figure).
        props = request.node.user_properties
        props[:] = [(k, v) for k, v in props if not (k == FIGURE_PROP and json.loads(v)["name"] == name)]
        props.append((FIGURE_PROP, json.dumps(fig, sort_keys=True)))
        record_property(f"{name}.figure", "none" if value is None else repr(float(value)))
        if threshold is not None:
            record_property(f"{name}.threshold", threshold.describe())
            record_property(f"{name}.direction", threshold.direction)
            record_property(f"{name}.unit", threshold.unit)
            record_property(f"{name}.env", threshold.env)
        else:
            record_property(f"{name}.threshold", "none: reported, not judged")
        if detail:
            record_property(f"{name}.detail", detail)

    return record


# ---------------------------------------------------------------- session end


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if REPORT not in config.stash or not config.stash[REPORT]:
        return
    if hasattr(config, "workerinput"):  # xdist worker: the controller writes the evidence
        return
    state, report = config.stash[STATE], config.stash[REPORT]
    try:
        from pipeline import gating

        gating.finish(state, report)
    except PipelineError as e:
        state.error = e
        state.promotion_refused = str(e)
    # Test outcomes already decide pytest's exit code; a refused promotion must too.
    if state.promotion_refused and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if REPORT not in config.stash or not config.stash[REPORT] or hasattr(config, "workerinput"):
        return
    state, report = config.stash[STATE], config.stash[REPORT]
    tr = terminalreporter
    env = state._settings.env if state._settings else (state.env or "?")
    tr.section(f"model gates ({env})")
    for line in gate_table(report):
        tr.write_line(line)
    if state.evidence is not None:
        tr.write_line(f"evidence: {state.evidence_path} status={state.evidence['status']}")
        for reason in state.evidence["reasons"]:
            tr.write_line(f"  {reason}")
    if state.promotion:
        tr.write_line(state.promotion)
    if state.promotion_refused:
        tr.write_line(f"promotion refused: {state.promotion_refused}", red=True)


def gate_table(report: GateReport) -> list[str]:
    rows = [("gate", "figure", "threshold", "status")]
    for g in sorted(report.gates.values(), key=lambda g: (list(FAMILIES).index(g.family), g.gate)):
        if g.figures:
            for i, f in enumerate(g.figures):
                unit = (f.threshold or {}).get("unit", "")
                fig = "-" if f.value is None else f"{f.name} {fmt_number(f.value)}{' ' + unit if unit and unit != '%' else unit}"
                th = (f.threshold or {}).get("text", "-")
                rows.append((g.gate if i == 0 else "", fig, th, g.outcome if i == 0 else ""))
        else:
            rows.append((g.gate, "-", "-", g.outcome))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


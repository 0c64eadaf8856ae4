"""Promotion against a real embedded MLflow store in tmp_path: every refusal and the happy path.

One store per module: one model is fitted once and logged as ten registered versions, one
per scenario, so that scenarios never share a version's evidence or aliases. Gates run through
the installed plugin. Refusal scenarios use a second config on the same store in which only the metric and
latency gates are required (`NARROW`, by `require_only`), so that each scenario's evidence
carries exactly one defect and a gate run costs two gate files, not the whole of
model_tests; the happy path runs every gate against the real required list. Gate runs are
in this process, through `pytest.main` as the CLI runs them (conftest's
run_gates_in_process): a subprocess would add only an interpreter start.

Both configs make two changes to the Ames config, neither of which these tests are about:
the gate workloads are smaller (`CHEAP`), and the latency bounds are ones a loaded machine
meets (`SHARED_MACHINE`), because this machine's load is not what promotion is tested on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import (
    CHEAP,
    NEEDS_CHAMPION,
    ROOT,
    SHARED_MACHINE,
    GateRun,
    deep_merge,
    registered_versions,
    require_only,
    run_cli,
    run_gates_in_process,
    write_project,
)
from pipeline import config as config_mod
from pipeline import evidence as evidence_mod
from pipeline import gating, registry
from pipeline.errors import PromotionRefused

pytestmark = pytest.mark.slow

NAME = "ames-price"
MODEL_TESTS = ROOT / "model_tests"
NARROW = ["r2", "mae", "rmse", "mape", "single_row_latency", "batch_throughput", "latency_vs_champion"]
NARROW_FILES = ("test_metrics.py", "test_latency.py")
# Registered in this order: the refusal versions first, the happy path's two last (newest).
SCENARIOS = ("failed", "errored", "skipped", "xfailed", "deselected", "one_file", "copied", "fresh", "first", "second")


# tests/conftest.py keeps a user's MLFLOW_TRACKING_URI out of the tests, and registry.connect
# no longer leaks one: the plain loader is enough.
load_settings = config_mod.load


XFAIL_PLUGIN = '''
import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if item.name == "test_rmse":
            item.add_marker(pytest.mark.xfail(reason="known RMSE regression, tracked in the backlog", strict=False))
'''


@dataclass
class Store:
    folder: Path
    config: Path  # the real required gates
    narrow: Path  # only NARROW required
    versions: dict[str, str] = field(default_factory=dict)
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def settings(self, env: str = "staging", narrow: bool = False):
        return load_settings(self.narrow if narrow else self.config, env)

    def client(self):
        return registry.connect(self.settings())

    def tags(self, version: str) -> dict[str, str]:
        return dict(registry.get_version(self.settings(), NAME, version).tags or {})

    def aliases(self) -> dict[str, str]:
        return {a: str(v) for a, v in (self.client().get_registered_model(NAME).aliases or {}).items()}

    def evidence_file(self, scenario: str, env: str = "staging") -> Path:
        return self.folder / "runs" / scenario / "evidence" / f"evidence-{NAME}-v{self.versions[scenario]}-{env}.json"


def gate_scenario(store: Store, scenario: str, *extra: str, env: str = "staging", narrow: bool = True,
                  files: tuple[str, ...] = NARROW_FILES, promote: bool = True, expect_evidence: bool = True) -> GateRun:
    """conftest's in-process gate run on a scenario's version: its own folder, the xfail plugin importable."""
    run = run_gates_in_process(store.folder / "runs" / scenario, store.narrow if narrow else store.config, *extra, env=env,
                    model_uri=f"models:/{NAME}/{store.versions[scenario]}", promote=promote,
                    paths=tuple(MODEL_TESTS / f for f in files), pythonpath=(store.folder / "plugins",),
                    environ={"GITHUB_ACTOR": "gate-tester"}, expect_evidence=expect_evidence)
    if expect_evidence:
        assert store.evidence_file(scenario, env).is_file(), run.output[-3000:]
    return run


def summary(run: GateRun) -> str:
    """pytest's last line: '4 passed, 2 deselected in 3.1s'."""
    return run.output.strip().splitlines()[-1]


def refused(store: Store, scenario: str, env: str, narrow: bool = True) -> str:
    """The one-line reason gating.promote gives, read from the evidence stored on the version."""
    with pytest.raises(PromotionRefused) as e:
        gating.promote(store.settings(env, narrow), NAME, store.versions[scenario], env)
    text = str(e.value)
    assert "\n" not in text
    return text


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    folder = tmp_path_factory.mktemp("promotion")
    cfg = write_project(folder, deep_merge(deep_merge(CHEAP, SHARED_MACHINE), {"mlflow": {"keep_versions": 1}}))
    narrow = folder / "narrow_config.yaml"
    narrow.write_text(yaml.safe_dump(require_only(yaml.safe_load(cfg.read_text()), NARROW), sort_keys=False))
    (folder / "plugins").mkdir()
    (folder / "plugins" / "xfail_rmse.py").write_text(textwrap.dedent(XFAIL_PLUGIN))
    s = Store(folder, cfg, narrow)
    for env in ("staging", "production"):
        assert s.settings(env, narrow=True).environment.required_gates == sorted(NARROW)
    s.versions.update(zip(SCENARIOS, registered_versions(s.settings(), len(SCENARIOS))))
    assert list(s.versions.values()) == [str(i) for i in range(1, len(SCENARIOS) + 1)]
    return s


@pytest.fixture(scope="module")
def promoted(store: Store) -> dict:
    """The happy path: gate and promote `first`, then `second`, with every staging gate."""
    first = gate_scenario(store, "first", narrow=False, files=())
    after_first = store.aliases()
    second = gate_scenario(store, "second", narrow=False, files=())
    return {"first": first, "after_first": after_first, "second": second, "after_second": store.aliases()}


# ---------------------------------------------------------------- the happy path


def test_promote_moves_the_alias_and_tags_the_version(store, promoted):
    v1, v2 = store.versions["first"], store.versions["second"]
    first, second = promoted["first"], promoted["second"]
    required = store.settings().environment.required_gates
    assert {"data_contract", "rmse", "champion_mae", "refit_identical", "single_row_latency"} <= set(required)
    for run in (first, second):
        assert run.returncode == 0, run.output[-3000:]
        assert run.evidence["status"] == "passed", run.evidence["reasons"]
        assert run.evidence["required_gates"] == required
    # The first has no champion to compare with: not applicable, said so, and promotable.
    assert {g: first.outcomes.get(g) for g in required} == {g: "not_applicable" if g in NEEDS_CHAMPION else "passed" for g in required}
    assert {g: second.outcomes.get(g) for g in required} == {g: "passed" for g in required}
    assert f"promoted {NAME} version {v1} to @staging" in first.output
    assert promoted["after_first"] == {"staging": v1}
    assert f"promoted {NAME} version {v2} to @staging (previous: version {v1}, now @previous-staging)" in second.output
    assert promoted["after_second"] == {"staging": v2, "previous-staging": v1}
    # The second candidate was compared with the holder of @staging, the first.
    assert second.figure("champion_mae")["detail"].startswith(f"non-inferiority vs {NAME} v{v1} @staging: MAE change")
    tags = store.tags(v2)
    assert tags["promoted.staging.by"] == "gate-tester"
    at = dt.datetime.fromisoformat(tags["promoted.staging.at"])
    assert store.started - dt.timedelta(seconds=1) <= at <= dt.datetime.now(dt.UTC)
    local = store.evidence_file("second")
    assert tags["promoted.staging.evidence_sha256"] == tags["gates.staging.evidence_sha256"]
    assert tags["promoted.staging.evidence_sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
    assert tags["promoted.staging.replaced"] == v1
    assert tags["gates.staging.status"] == "passed"
    # Every gate figure is an MLflow metric of the run and of its logged model (MLflow's UI charts them).
    client, mv = store.client(), registry.get_version(store.settings(), NAME, v2)
    figures = {f"gate.{g}": e["figure"]["value"] for g, e in second.gates.items() if e["figure"]["value"] is not None}
    assert len(figures) >= 25 and {k: client.get_run(mv.run_id).data.metrics.get(k) for k in figures} == figures
    logged = {m.key: m.value for m in client.get_logged_model(registry.logged_model_id(mv)).metrics if m.key.startswith("gate.")}
    assert logged == figures


def test_rollback_swaps_alias_and_previous_in_one_command(store, promoted):
    v1, v2 = store.versions["first"], store.versions["second"]
    before = store.aliases()
    assert {before["staging"], before["previous-staging"]} == {v1, v2}
    r = run_cli("rollback", "--env", "staging", "--config", str(store.config), cwd=store.folder,
                env={"OMP_NUM_THREADS": "1", "GITHUB_ACTOR": "gate-tester"})
    assert r.returncode == 0, r.stderr
    after = store.aliases()
    assert after["staging"] == before["previous-staging"] and after["previous-staging"] == before["staging"]
    assert r.stdout.strip() == (f"rolled back @staging of {NAME} to version {after['staging']} "
                                f"(version {after['previous-staging']} now @previous-staging)")
    assert store.tags(after["staging"])["rolled_back.staging.by"] == "gate-tester"
    # And back: a rollback is its own undo.
    gating.rollback(store.settings(), NAME, "staging")
    assert store.aliases() == before


def test_old_versions_without_an_alias_are_archived_never_deleted(store, promoted):
    # keep_versions is 1: the first promotion archived every older version holding no alias.
    older = [store.versions[s] for s in SCENARIOS[:-2]]
    assert f"archived versions {', '.join(reversed(older))}" in promoted["first"].output
    assert "archived" not in promoted["second"].output
    all_versions = registry.versions(store.settings(), NAME)
    assert sorted(int(mv.version) for mv in all_versions) == list(range(1, len(SCENARIOS) + 1))
    archived = {str(mv.version) for mv in all_versions if (mv.tags or {}).get("archived") == "true"}
    assert archived == set(older)
    assert all(mv.aliases for mv in all_versions if str(mv.version) not in archived)


# ---------------------------------------------------------------- refusals, each with its one-line reason


def test_refused_when_a_required_gate_failed(store):
    # Production asks RMSE <= 20,000 USD; the Ames model reaches ~23,000: an honest failure.
    run = gate_scenario(store, "failed", env="production")
    v = store.versions["failed"]
    assert run.returncode == 1
    assert run.outcomes == {"r2": "passed", "mae": "passed", "rmse": "failed", "mape": "passed",
                            "single_row_latency": "passed", "batch_throughput": "passed", "latency_vs_champion": "not_applicable"}
    reason = f"{NAME} version {v}: production gates did not pass: gates failed: rmse"
    assert run.refusals == [f"promotion refused: {reason}"]
    assert refused(store, "failed", "production") == reason
    assert "production" not in store.aliases()


def test_refused_when_a_required_gate_errored(store):
    # The evaluation CSV breaks the contract: every gate that needs its rows errors in setup.
    frame = pd.read_csv(ROOT / "data" / "raw" / "ames.csv").head(600)
    frame.loc[3, "Sale_Price"] = -5
    bad = store.folder / "bad_prices.csv"
    frame.to_csv(bad, index=False)
    run = gate_scenario(store, "errored", "--eval-data", str(bad))
    v = store.versions["errored"]
    assert run.returncode == 1
    assert set(run.outcomes.values()) == {"error"}
    assert all("bad_prices.csv" in g["message"] for g in run.evidence["gates"])
    reason = f"{NAME} version {v}: staging gates did not pass: gates error: batch_throughput, latency_vs_champion, mae, mape, r2, rmse, single_row_latency"
    assert run.refusals == [f"promotion refused: {reason}"]
    assert refused(store, "errored", "staging") == reason


def test_refused_when_a_required_gate_skipped(store):
    run = gate_scenario(store, "skipped", "--benchmark-disable")
    v = store.versions["skipped"]
    # No test failed: only the plugin's refusal makes the session fail.
    assert "failed" not in summary(run)
    assert run.returncode == 1
    assert run.outcomes["single_row_latency"] == run.outcomes["batch_throughput"] == "skipped"
    assert all(run.outcomes[g] == "passed" for g in ("r2", "mae", "rmse", "mape"))
    reason = f"{NAME} version {v}: staging gates did not pass: gates skipped: batch_throughput, latency_vs_champion, single_row_latency"
    assert run.refusals == [f"promotion refused: {reason}"]
    assert refused(store, "skipped", "staging") == reason


def test_refused_when_a_required_gate_xfailed(store):
    # A known-failing gate marked xfail (through a plugin, as a team might in a conftest)
    # fails at production and is reported xfailed: that is not a pass.
    run = gate_scenario(store, "xfailed", "-p", "xfail_rmse", env="production")
    v = store.versions["xfailed"]
    assert "1 xfailed" in summary(run)
    assert run.returncode == 1
    assert run.outcomes["rmse"] == "xfailed"
    reason = f"{NAME} version {v}: production gates did not pass: gates xfailed: rmse"
    assert run.refusals == [f"promotion refused: {reason}"]
    assert refused(store, "xfailed", "production") == reason


def test_refused_when_required_gates_were_deselected(store):
    run = gate_scenario(store, "deselected", "-k", "not rmse and not mape")
    v = store.versions["deselected"]
    assert "2 deselected" in summary(run)
    assert run.returncode == 1
    assert run.outcomes["rmse"] == run.outcomes["mape"] == "deselected"
    reason = f"{NAME} version {v}: staging gates did not pass: gates deselected: mape, rmse"
    assert run.refusals == [f"promotion refused: {reason}"]
    assert refused(store, "deselected", "staging") == reason


def test_refused_at_collection_when_required_gates_are_not_collected(store):
    # Only the metric file, where the environment also requires the latency gates: a usage
    # error before any gate runs (pytest exit 4), not evidence that refuses promotion.
    v = store.versions["one_file"]
    aliases = store.aliases()
    run = gate_scenario(store, "one_file", files=("test_metrics.py",), expect_evidence=False)
    assert run.returncode == 4, run.output[-3000:]
    (line,) = [ln for ln in run.output.splitlines() if ln.startswith("ERROR:")]
    assert line == (f"ERROR: {store.narrow}: environments.staging.thresholds.batch_throughput: required at staging, "
                    "but no collected test is that gate (nor is latency_vs_champion, single_row_latency); run the whole suite and select with -k or -m "
                    "(a deselected required gate refuses promotion), or mark the line required: false")
    assert "no tests ran in " in run.output  # no gate ran
    assert run.evidence is None and not list((store.folder / "runs" / "one_file").rglob("evidence-*.json"))
    assert not [k for k in store.tags(v) if k.startswith(("gates.", "promoted."))]
    assert store.aliases() == aliases
    assert refused(store, "one_file", "staging").startswith(f"{NAME} version {v}: no evidence; run the gates first")


def test_refused_when_evidence_was_recorded_for_another_version(store, promoted):
    source, target = store.versions["first"], store.versions["copied"]
    client = store.client()
    src = client.get_model_version(NAME, source)
    dst = client.get_model_version(NAME, target)
    tags = store.tags(source)
    path = tags["gates.staging.evidence"]
    local = Path(client.download_artifacts(src.run_id, path, str(store.folder / "copy")))
    client.log_artifact(dst.run_id, str(local), artifact_path=str(Path(path).parent))
    for key in ("status", "evidence", "evidence_sha256", "ended"):
        client.set_model_version_tag(NAME, target, f"gates.staging.{key}", tags[f"gates.staging.{key}"])
    # A faithful copy: present, passing and matching its digest tag; only the version is wrong.
    (doc, digest), = registry.load_evidence(store.settings(), NAME, target).values()
    assert doc["status"] == "passed" and evidence_mod.digest(doc) == digest
    assert refused(store, "copied", "staging", narrow=False) == (
        f"{NAME} version {target}: the staging evidence was recorded for {NAME} version {source}")


def test_refused_when_model_files_changed_after_the_evidence(store, promoted):
    v = store.versions["first"]
    settings = store.settings()
    gating.check_evidence(settings, NAME, v, "staging")  # allowed before the change
    folder = Path(store.client().get_model_version_download_uri(NAME, v).removeprefix("file://"))
    mlmodel = folder / "MLmodel"
    assert mlmodel.is_file()
    aliases = store.aliases()
    with mlmodel.open("ab") as f:
        f.write(b"\n")
    r = run_cli("promote", v, "--env", "staging", "--config", str(store.config), cwd=store.folder,
                env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 1, r.stdout + r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: {NAME} version {v}: model artifact digest changed since the staging evidence was written (now ")
    assert store.aliases() == aliases


def test_rollback_refused_where_the_restored_versions_evidence_no_longer_holds_unless_forced(store, promoted):
    v1, v2 = store.versions["first"], store.versions["second"]
    settings = store.settings()
    if store.aliases()["staging"] != v2:
        gating.rollback(settings, NAME, "staging")
    before = store.aliases()
    assert before == {"staging": v2, "previous-staging": v1}
    folder = Path(store.client().get_model_version_download_uri(NAME, v1).removeprefix("file://"))
    with (folder / "MLmodel").open("ab") as f:  # version 1's files are no longer what its evidence says
        f.write(b"\n")
    env = {"OMP_NUM_THREADS": "1", "GITHUB_ACTOR": "gate-tester"}
    r = run_cli("rollback", "--env", "staging", "--config", str(store.config), cwd=store.folder, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: rollback of @staging refused: {NAME} version {v1}: model artifact digest changed since the staging evidence was written")
    assert line.endswith("; --force restores it anyway (the history records it)")
    assert store.aliases() == before
    moves = registry.history(settings, NAME)
    r = run_cli("rollback", "--env", "staging", "--force", "--config", str(store.config), cwd=store.folder, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert store.aliases() == {"staging": v1, "previous-staging": v2}
    assert f"(forced: {NAME} version {v1}: model artifact digest changed" in r.stdout
    (forced,) = registry.history(settings, NAME)[len(moves):]
    assert (forced.action, forced.version, forced.replaced, forced.by) == ("rollback", v1, v2, "gate-tester")
    assert forced.forced.startswith(f"{NAME} version {v1}: model artifact digest changed")
    # Version 2's evidence still holds: rolling back to it needs no force, and records none.
    assert gating.rollback(settings, NAME, "staging").endswith("now @previous-staging)")
    assert store.aliases() == before and registry.history(settings, NAME)[-1].forced is None


def test_concurrent_moves_of_one_alias_take_turns_and_the_losers_are_refused(store, promoted):
    """Eight threads move one alias at once, each judged against nobody holding it (as eight
    gate runs that all started before any promotion): one wins, seven are refused in one line,
    and the history holds the one move."""
    import threading

    settings, alias = store.settings(), "race"
    versions = [store.versions[s] for s in SCENARIOS[:8]]
    client = store.client()
    for v in versions:  # evidence the move re-reads: each version's own tag
        client.set_model_version_tag(NAME, v, "gates.staging.evidence_sha256", f"digest-{v}")
    outcomes: dict[str, str] = {}
    start = threading.Barrier(len(versions))

    def promote(v: str) -> None:
        start.wait()
        try:
            registry.move_alias(settings, NAME, alias, v, evidence_sha256=f"digest-{v}", who="racer",
                                evidence_env="staging", judged_against=None)
            outcomes[v] = "moved"
        except PromotionRefused as e:
            outcomes[v] = str(e)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        aliases = store.aliases()
    finally:  # the scenarios' versions as they were: no evidence tag, no alias of this test
        for v in versions:
            client.delete_model_version_tag(NAME, v, "gates.staging.evidence_sha256")
        with contextlib.suppress(Exception):
            client.delete_registered_model_alias(NAME, alias)
    (winner,) = [v for v, o in outcomes.items() if o == "moved"]
    for v, o in outcomes.items():
        if v != winner:
            assert o == (f"{NAME} version {v}: @{alias} is held by version {winner} now, not by nobody as when its gates "
                         "ran: another promotion moved it since; gate the version again against the new holder")
    assert {a: h for a, h in aliases.items() if "race" in a} == {alias: winner}
    moves = [m for m in registry.history(settings, NAME) if m.alias == alias]
    assert [(m.action, m.version, m.replaced) for m in moves] == [("promote", winner, None)]


def test_refused_when_evidence_is_from_a_laxer_environment(store, promoted):
    v = store.versions["second"]
    assert store.tags(v)["gates.staging.status"] == "passed"
    assert refused(store, "second", "production", narrow=False) == (
        f"{NAME} version {v}: evidence only for staging, laxer than 'production'; run the gates with --env production")


def test_refused_when_there_is_no_evidence(store):
    v = store.versions["fresh"]
    assert not [k for k in store.tags(v) if k.startswith("gates.")]
    r = run_cli("promote", v, "--env", "staging", "--config", str(store.config), cwd=store.folder,
                env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: {NAME} version {v}: no evidence; run the gates first "
        f"(pytest model_tests -m gates --model-uri models:/{NAME}/{v} --env staging)"]
    assert store.aliases().get("staging") != v

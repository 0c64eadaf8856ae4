"""run-pipeline end to end: real subprocesses on a throwaway project with its own embedded store.

The project is the Ames config with three changes these tests are not about: smaller gate
workloads (`CHEAP`), a lighter model (`LIGHT_MODEL`), and latency bounds a loaded machine
meets (`SHARED_MACHINE`): this machine's load is not what is tested here.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import AMES, CHEAP, LIGHT_MODEL, SHARED_MACHINE, deep_merge, run_cli, store_state, write_project
from pipeline import config as config_mod
from pipeline import data as data_mod
from pipeline import registry

pytestmark = pytest.mark.slow

NAME = "ames-price"
ENV = {"OMP_NUM_THREADS": "1"}  # one OpenMP thread: a loaded machine starves the trees' thread pool
SUBCOMMANDS = ("check", "run", "validate", "promote", "rollback", "list", "compare", "audit", "history", "keygen")


# tests/conftest.py keeps a user's MLFLOW_TRACKING_URI out of the tests, and registry.connect
# no longer leaks one: the plain loader is enough.
load_settings = config_mod.load


def cli(folder: Path, *args: str, **kw):
    return run_cli(*args, cwd=folder, env={**ENV, **kw.pop("env", {})}, **kw)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli")
    return folder, write_project(folder, deep_merge(CHEAP, SHARED_MACHINE), model=LIGHT_MODEL)


@pytest.fixture(scope="module")
def runs(project) -> dict:
    """`run` twice: version 1 takes @staging, version 2 is gated against it and replaces it."""
    folder, cfg = project
    out = {}
    for n in ("1", "2"):
        r = cli(folder, "run", "--config", str(cfg))
        (folder / f"transcript-run-{n}.txt").write_text(r.stdout + r.stderr)
        evidence = json.loads((folder / "reports" / f"evidence-{NAME}-v{n}-staging.json").read_text())
        out[n] = (r, evidence)
    return out


def aliases(cfg: Path) -> dict[str, str]:
    client = registry.connect(load_settings(cfg))
    return {a: str(v) for a, v in (client.get_registered_model(NAME).aliases or {}).items()}


def champion_detail(evidence: dict, outcome: str = "passed") -> str:
    (g,) = [g for g in evidence["gates"] if g["gate"] == "champion_mae"]
    assert g["outcome"] == outcome and g["figure"]["name"] == "champion_mae"
    return g["figure"]["detail"]


def test_run_twice_gates_the_second_against_the_first(project, runs):
    _, cfg = project
    (r1, ev1), (r2, ev2) = runs["1"], runs["2"]
    assert r1.returncode == 0, r1.stdout[-3000:] + r1.stderr[-3000:]
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    assert f"promoted {NAME} version 1 to @staging" in r1.stdout
    assert "aliases: @staging -> v1" in r1.stdout
    assert f"promoted {NAME} version 2 to @staging (previous: version 1, now @previous-staging)" in r2.stdout
    assert "aliases: @previous-staging -> v1, @staging -> v2" in r2.stdout
    assert f"model {NAME} version 2; eval R2 " in r2.stdout
    assert ev1["status"] == ev2["status"] == "passed"
    # The first run has no champion: not applicable (never "passed"), and it still promotes.
    assert champion_detail(ev1, "not_applicable") == "no model holds @staging: nothing to compare with"
    assert champion_detail(ev2).startswith(f"non-inferiority vs {NAME} v1 @staging: MAE change ")
    # The gate table: a header and one row per gate.
    table = [line.split() for line in r2.stdout.splitlines()]
    assert table.count(["gate", "figure", "threshold", "status"]) == 1  # one gate table per run
    assert table.count(["champion_mae", "0", "<=", "0.05", "passed"]) == 1  # identical seeds, identical models  # identical seeds, identical models
    assert aliases(cfg) == {"staging": "2", "previous-staging": "1"}


def test_list_shows_versions_aliases_and_gate_status(project, runs):
    folder, cfg = project
    r = cli(folder, "list", "--config", str(cfg))
    (folder / "transcript-list.txt").write_text(r.stdout + r.stderr)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.strip().splitlines()]
    assert rows[0] == ["version", "aliases", "gates.dev", "gates.staging", "gates.production", "r2", "mae", "rmse", "mape", "archived"]
    by_version = {row[0]: row for row in rows[1:]}
    assert sorted(by_version) == ["1", "2"]
    assert by_version["2"][1:5] == ["staging", "-", "passed", "-"]
    assert by_version["1"][1] == "previous-staging"
    r = cli(folder, "list", "--json", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    versions = {v["version"]: v for v in doc["versions"]}
    assert doc["model"] == NAME
    assert versions["2"]["aliases"] == ["staging"] and versions["2"]["gates.staging"] == "passed"
    assert versions["1"]["aliases"] == ["previous-staging"]
    assert versions["2"]["gates.production"] is None
    assert versions["2"]["r2"] > 0.88 and versions["2"]["archived"] is False


def test_compare_prints_metrics_side_by_side_and_a_recommendation(project, runs):
    folder, cfg = project
    r = cli(folder, "compare", "1", "2", "--config", str(cfg))
    (folder / "transcript-compare.txt").write_text(r.stdout + r.stderr)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if not line.startswith("[")]
    rows = [line.split() for line in lines]
    assert ["metric", "v1", "v2", "change"] in rows
    assert sorted(row[0] for row in rows if row[0] in ("r2", "mae", "rmse", "mape")) == ["mae", "mape", "r2", "rmse"]
    (rec,) = [line for line in lines if line.startswith("recommendation: ")]
    r = cli(folder, "compare", "1", "2", "--json", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert sorted(doc["metrics"]) == ["1", "2"]
    assert set(doc["metrics"]["1"]) == {"r2", "mae", "rmse", "mape"}
    assert doc["rows"] == 586
    assert rec == f"recommendation: {doc['recommendation']}"
    # The same config and seed trained twice give the same model: no change, and v2 may replace v1.
    assert doc["metrics"]["1"] == doc["metrics"]["2"]
    assert doc["recommendation"].startswith("version 2 passes the champion gate against 1 (staging, non-inferiority): MAE +0.00%, upper bound +0.00% <= 0.05")


def test_validate_regates_on_another_csv_without_moving_aliases(project, runs):
    folder, cfg = project
    settings = load_settings(cfg)
    held_out = data_mod.split(settings, data_mod.load(settings)).eval.index[:560]
    raw = pd.read_csv(AMES, dtype=str, keep_default_na=False)
    new = folder / "new_sales.csv"
    raw.loc[held_out].to_csv(new, index=False)
    before = aliases(cfg)
    r = cli(folder, "validate", f"models:/{NAME}/1", "--data", str(new), "--config", str(cfg))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"models:/{NAME}/1: staging gates passed" in r.stdout
    assert "promoted" not in r.stdout
    assert aliases(cfg) == before == {"staging": "2", "previous-staging": "1"}
    evidence = json.loads((folder / "reports" / f"evidence-{NAME}-v1-staging.json").read_text())
    (contract,) = [g for g in evidence["gates"] if g["gate"] == "data_contract"]
    assert contract["figure"]["name"] == "data_contract" and contract["figure"]["value"] == 0
    assert contract["figure"]["detail"] == "560 rows of new_sales.csv"
    assert evidence["eval_data_sha256"] != runs["1"][1]["eval_data_sha256"]
    assert champion_detail(evidence).startswith(f"non-inferiority vs {NAME} v2 @staging")


def test_validate_on_a_csv_of_other_columns_exits_2_and_keeps_the_evidence(project, runs):
    # A file of other columns is bad input, found before any gate runs: the version's
    # passing evidence (tags, artifact, local file) stays as it was, and still decides.
    folder, cfg = project
    settings = load_settings(cfg)
    other = folder / "meters.csv"
    pd.DataFrame({"meter_id": range(600), "energy_kwh": [1000.0 + i for i in range(600)]}).to_csv(other, index=False)

    def gate_tags() -> dict[str, str]:
        tags = registry.get_version(settings, NAME, "1").tags or {}
        return {k: v for k, v in tags.items() if k.startswith("gates.")}

    tags = gate_tags()
    assert tags["gates.staging.status"] == "passed"
    stored = registry.load_evidence(settings, NAME, "1")
    local = folder / "reports" / f"evidence-{NAME}-v1-staging.json"
    local_bytes = local.read_bytes()
    junit = folder / "reports" / "gates-staging.xml"  # the last real gate run's JUnit report
    junit_bytes = junit.read_bytes()
    assert b"<testcase " in junit_bytes
    before = aliases(cfg)
    r = cli(folder, "validate", f"models:/{NAME}/1", "--data", str(other), "--config", str(cfg))
    (folder / "transcript-validate-other-columns.txt").write_text(r.stdout + r.stderr)
    assert r.returncode == 2, r.stdout[-3000:] + r.stderr[-3000:]
    assert re.fullmatch(rf"error: --data {re.escape(str(other))}: column '\w+' of ames\.csv is missing \(and \d+ more\)",
                        one_line(r.stderr)), r.stderr
    assert "passed" not in r.stdout and "failed" not in r.stdout  # no gate table: nothing ran
    assert gate_tags() == tags
    assert registry.load_evidence(settings, NAME, "1") == stored
    assert local.read_bytes() == local_bytes
    assert junit.read_bytes() == junit_bytes and not list(junit.parent.glob(".*partial"))  # not an empty report
    assert aliases(cfg) == before == {"staging": "2", "previous-staging": "1"}
    # The kept evidence still allows version 1 in; a rollback puts the aliases back.
    r = cli(folder, "promote", "1", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == f"promoted {NAME} version 1 to @staging (previous: version 2, now @previous-staging)"
    r = cli(folder, "rollback", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert aliases(cfg) == before


def test_run_with_a_threshold_for_no_gate_exits_2_before_training(tmp_path):
    # A required threshold line names a gate that does not exist (durbin_watson is now
    # residual_autocorrelation): the suite is checked before training, and nothing is written.
    folder = tmp_path / "p"
    cfg = write_project(folder, deep_merge(CHEAP, {"environments": {"staging": {"thresholds": {
        "durbin_watson": {"min": 1.7, "max": 2.3}}}}}), store=False)
    r = cli(folder, "run", "--config", str(cfg))
    assert r.returncode == 2, r.stdout[-3000:] + r.stderr[-3000:]
    assert one_line(r.stderr) == (
        f"error: {cfg}: environments.staging.thresholds.durbin_watson: required at staging, but no collected test is "
        "that gate; run the whole suite and select with -k or -m (a deselected required gate refuses promotion), "
        "or mark the line required: false")
    assert r.stdout == ""  # not even the training step's progress line
    assert store_state(folder) == "absent"  # no run, no version: not even a store
    assert sorted(f.name for f in folder.iterdir()) == ["model_config.yaml", "pipeline_config.yaml"]  # no reports


def test_check_prints_the_table_and_fails_on_missing_data(project):
    folder, cfg = project
    r = cli(folder, "check", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    status = check_table(r.stdout)
    assert status["config"][0] == status["data"][0] == status["tracking store"][0] == "ok"
    assert re.fullmatch(rf"{re.escape(str(AMES))}: 2930 rows, \d+ features, contract ok", status["data"][1])
    assert [k for k, (s, _) in status.items() if s != "ok"] == []
    raw = yaml.safe_load(cfg.read_text())
    raw["data"]["path"] = str(folder / "gone.csv")
    broken = folder / "broken_config.yaml"
    broken.write_text(yaml.safe_dump(raw, sort_keys=False))
    r = cli(folder, "check", "--config", str(broken))
    assert r.returncode == 2, r.stdout + r.stderr
    status = check_table(r.stdout)
    assert {k: v for k, v in status.items() if v[0] != "ok"} == {"data": ("fail", f"{folder / 'gone.csv'}: file not found")}


def check_table(stdout: str) -> dict[str, tuple[str, str]]:
    """`check`'s table as {check: (status, detail)}, read by the header's column positions."""
    header, *lines = stdout.rstrip().splitlines()
    assert header.split() == ["check", "status", "detail"]
    s, d = header.index("status"), header.index("detail")
    return {line[:s].strip(): (line[s:d].strip(), line[d:].strip()) for line in lines}


@pytest.mark.parametrize("sub", ("", *SUBCOMMANDS))
def test_help_exits_0(tmp_path, sub):
    r = run_cli(*([sub] if sub else []), "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: run-pipeline{' ' + sub if sub else ''} ")
    assert r.stderr == ""


@pytest.mark.parametrize(("args", "message"), [
    (("frobnicate",), "run-pipeline: error: argument command: invalid choice: 'frobnicate'"),
    (("promote", "abc"), "run-pipeline promote: error: argument version: 'abc' is not a model version number"),
    (("compare", "1", "0"), "run-pipeline compare: error: argument v2: '0' is not a model version number"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, args, message):
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert one_line(r.stderr).startswith(message)


def test_promote_to_production_refused_then_digest_after_tampering(project, runs):
    folder, cfg = project
    r = cli(folder, "promote", "2", "--env", "production", "--config", str(cfg))
    (folder / "transcript-promote-refused.txt").write_text(r.stdout + r.stderr)
    assert r.returncode == 1, r.stdout + r.stderr
    assert one_line(r.stderr) == (f"error: {NAME} version 2: evidence only for staging, laxer than 'production'; "
                                  "run the gates with --env production")
    settings = load_settings(cfg)
    files = Path(registry.connect(settings).get_model_version_download_uri(NAME, "2").removeprefix("file://"))
    skops = list(files.rglob("*.skops"))
    assert len(skops) == 1
    with skops[0].open("ab") as f:
        f.write(b"\0")
    r = cli(folder, "promote", "2", "--env", "production", "--config", str(cfg))
    (folder / "transcript-promote-tampered.txt").write_text(r.stdout + r.stderr)
    assert r.returncode == 1, r.stdout + r.stderr
    assert one_line(r.stderr).startswith(
        f"error: {NAME} version 2: model artifact digest changed since the staging evidence was written (now ")
    assert aliases(cfg) == {"staging": "2", "previous-staging": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_exits_2_quickly(project):
    folder, cfg = project
    uri = f"http://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    r = cli(folder, "list", "--config", str(cfg), env={"MLFLOW_TRACKING_URI": uri}, timeout=120)
    elapsed = time.monotonic() - t0
    assert r.returncode == 2, r.stdout + r.stderr
    assert elapsed < 60
    assert one_line(r.stderr).startswith(f"error: tracking server {uri} unreachable: ")
    assert r.stdout == ""


def test_silent_tracking_server_exits_2_within_the_timeout(project):
    # Accepts connections and never answers: only a timeout ends the wait.
    folder, cfg = project
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        uri = f"http://127.0.0.1:{hole.getsockname()[1]}"
        t0 = time.monotonic()
        r = cli(folder, "list", "--config", str(cfg), env={"MLFLOW_TRACKING_URI": uri}, timeout=120)
        elapsed = time.monotonic() - t0
    assert r.returncode == 2, r.stdout + r.stderr
    assert elapsed < 60
    assert one_line(r.stderr) == f"error: tracking server {uri} unreachable: timed out"

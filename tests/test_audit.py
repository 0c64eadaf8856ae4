"""Audit and history: every alias holder got there through the gates, and every move is on record.

A real embedded store; gate runs in process (conftest's run_gates_in_process) on the metric
family with the lighter model, promoting through the plugin; the CLI in process
(`pipeline.cli.main`), one subprocess for the transcript a user sees.
"""

from __future__ import annotations

import json

import pytest

from conftest import CHEAP, LIGHT_MODEL, registered_versions, run_cli, run_gates_in_process, write_project
from pipeline import cli, registry
from pipeline import config as config_mod

NAME = "ames-price"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit")
    cfg = write_project(folder, CHEAP, model=LIGHT_MODEL, families=("metrics",))
    settings = config_mod.load(cfg, "staging")
    versions = registered_versions(settings, 3)
    return {"folder": folder, "config": cfg, "settings": settings, "versions": versions, "suite": settings.gate_tests}


def promote_gated(store, version: str):
    run = run_gates_in_process(store["folder"] / "runs" / f"v{version}", store["config"], env="staging",
                               model_uri=f"models:/{NAME}/{version}", promote=True, paths=(store["suite"],),
                               environ={"GITHUB_ACTOR": "ci-bot"})
    assert run.returncode == 0, run.output[-3000:]


def audit(store, capsys, *args: str) -> tuple[int, dict]:
    code = cli.main(["audit", "--config", str(store["config"]), "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def history(store, capsys, *args: str) -> list[dict]:
    assert cli.main(["history", "--config", str(store["config"]), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)["moves"]


def test_audit_and_history_follow_promotions_hand_moves_and_rollback(store, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTOR", "ci-bot")
    v1, v2, v3 = store["versions"]
    client = registry.connect(store["settings"])

    # Nothing promoted yet: every alias is empty, which is no violation.
    code, doc = audit(store, capsys)
    assert code == 0 and doc["violations"] == [] and {r["status"] for r in doc["aliases"]} == {"empty"}

    promote_gated(store, v1)
    promote_gated(store, v2)
    code, doc = audit(store, capsys, "--env", "staging")
    assert code == 0, doc
    (row,) = doc["aliases"]
    assert row["version"] == v2 and row["status"] == "ok" and row["detail"].startswith("promote by ci-bot at ")
    moves = history(store, capsys)
    assert [(m["alias"], m["action"], m["version"], m["replaced"], m["by"]) for m in moves] == [
        ("staging", "promote", v1, None, "ci-bot"), ("staging", "promote", v2, v1, "ci-bot")]
    tags = client.get_model_version(NAME, v2).tags
    assert moves[1]["evidence"] == tags["promoted.staging.evidence_sha256"] == tags["gates.staging.evidence_sha256"]

    # Someone moves @staging back to v1 by hand: v1 has passing evidence, but no move put it there.
    client.set_registered_model_alias(NAME, "staging", v1)
    code, doc = audit(store, capsys)
    assert code == 1
    assert doc["violations"] == [f"@staging -> v{v1}: moved without a promotion record (the last recorded move, promote by "
                                 f"ci-bot at {moves[1]['at']}, put v{v2} there)"]
    # The audit put the move it found into the history, once; the found record allows nothing.
    found = history(store, capsys)[-1]
    assert (found["action"], found["version"], found["replaced"], found["by"]) == ("found", v1, v2, "audit (ci-bot)")
    code, again = audit(store, capsys)
    assert code == 1 and again["violations"] == doc["violations"] and history(store, capsys)[-1] == found
    # ... or to v3, which was never gated.
    client.set_registered_model_alias(NAME, "staging", v3)
    code, doc = audit(store, capsys)
    assert code == 1 and doc["violations"][0].startswith(f"@staging -> v{v3}: moved without a promotion record")

    # A rollback puts the previous holder back, on record: the audit holds again.
    assert cli.main(["rollback", "--config", str(store["config"])]) == 0
    capsys.readouterr()
    assert registry.alias_map(store["settings"], NAME)["staging"] == v1
    code, doc = audit(store, capsys)
    assert code == 0, doc
    assert history(store, capsys, "--env", "staging")[-1] | {"at": None} == {
        "at": None, "alias": "staging", "action": "rollback", "version": v1, "replaced": v3, "by": "ci-bot", "approved_by": None, "evidence": None,
        "forced": None}


def test_audit_names_a_holder_whose_evidence_no_longer_allows_it(store, capsys):
    # The holder's promotion is on record (after the test above; checked here), then its model
    # files change after its evidence was written.
    if registry.alias_map(store["settings"], NAME).get("staging") is None:
        promote_gated(store, store["versions"][0])
    assert audit(store, capsys)[0] == 0
    v = registry.alias_map(store["settings"], NAME)["staging"]
    folder = registry.connect(store["settings"]).get_model_version_download_uri(NAME, v).removeprefix("file://")
    with open(f"{folder}/MLmodel", "ab") as f:
        f.write(b"\n")
    code, doc = audit(store, capsys)
    assert code == 1
    (line,) = doc["violations"]
    assert line.startswith(f"@staging -> v{v}: model artifact digest changed since the staging evidence was written (now ")
    # As a user runs it: the table, then one line per violation, exit 1.
    r = run_cli("audit", "--config", str(store["config"]), cwd=store["folder"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("@")] == [line]
    # The history lives in the registry, not in the local folders a run writes.
    import shutil

    for part in ("reports", "runs"):
        shutil.rmtree(store["folder"] / part, ignore_errors=True)
    assert [m["action"] for m in history(store, capsys)][-1] in ("promote", "rollback")

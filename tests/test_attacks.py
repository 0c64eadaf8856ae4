"""Ways around the gates, and a damaged store, on a real embedded store: each ends in a refusal or
an audit violation, in one line with its documented exit code, and leaves every alias where it was.

Approval (`approval: required` at staging here, so that the lighter model's staging evidence is
the evidence approved), a promotion racing a re-gate of the same version, evidence that is not
JSON, model files damaged or deleted, a store file that is not a database. The other scenarios
of issue 13 live beside the code they test: an alias moved by hand (test_audit), evidence
recorded for another version, model files changed after gating and evidence of a laxer
environment (test_promotion), evidence edited with its digest recomputed and signatures from
unknown keys (test_signing), and the reader identity on a basic-auth server (test_servers).

Gate runs are in process (conftest's run_gates_in_process) on the metric family with the
lighter model; the CLI in process (`pipeline.cli.main`), as a user runs it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import registered_versions, run_gates_in_process, signed_project
from pipeline import cli, gating, registry, signing
from pipeline import config as config_mod
from pipeline import evidence as evidence_mod
from pipeline.errors import PromotionRefused

NAME = "ames-price"
SCENARIOS = ("approved", "unsigned_approval", "race_before", "race_during", "not_json", "not_a_document",
             "corrupted_model", "deleted_model")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attacks")
    # keyless: the same project for a person without the signing key: what they approve is unsigned.
    cfg, keyless = signed_project(folder, {"environments": {"staging": {"approval": "required"}}})
    settings = config_mod.load(cfg, "staging")
    versions = dict(zip(SCENARIOS, registered_versions(settings, len(SCENARIOS))))
    return {"folder": folder, "config": cfg, "keyless": keyless, "settings": settings, "versions": versions,
            "suite": Path(settings.gate_tests)}


def gate(store, scenario: str):
    run = run_gates_in_process(store["folder"] / "runs" / scenario, store["config"], env="staging",
                               model_uri=f"models:/{NAME}/{store['versions'][scenario]}", paths=(store["suite"],))
    assert run.returncode == 0, run.output[-3000:]
    return run


def cli_run(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process, from its config's folder, as a user runs it there (reports/ go there)."""
    with contextlib.chdir(Path(args[args.index("--config") + 1]).parent):
        code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0].removeprefix("error: ")


def aliases(store) -> dict[str, str]:
    return registry.alias_map(store["settings"], NAME)


def evidence_file(store, version: str, env: str = "staging") -> Path:
    """The local file behind a version's `env` evidence artifact (the embedded store's folder)."""
    client = registry.connect(store["settings"])
    mv = client.get_model_version(NAME, version)
    root = client.get_run(mv.run_id).info.artifact_uri.removeprefix("file://")
    return Path(root) / mv.tags[f"gates.{env}.evidence"]


def model_folder(store, version: str) -> Path:
    return Path(registry.connect(store["settings"]).get_model_version_download_uri(NAME, version).removeprefix("file://"))


# ---------------------------------------------------------------- approval


def test_promotion_needs_a_signed_approval_of_the_very_evidence_it_uses(store, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTOR", "ci-bot")
    v = store["versions"]["approved"]
    cfg = str(store["config"])
    first = gate(store, "approved")
    before = aliases(store)

    code, _, err = cli_run(capsys, "promote", v, "--config", cfg)
    assert code == 1 and aliases(store) == before
    assert one_error_line(err) == (f"{NAME} version {v}: staging requires approval (environments.staging.approval), "
                                   f"and none is recorded; run-pipeline approve {v} --env staging")

    monkeypatch.setenv("GITHUB_ACTOR", "release-manager")
    code, out, _ = cli_run(capsys, "approve", v, "--config", cfg, "--note", "reviewed the report", "--json")
    assert code == 0
    approval = json.loads(out)["approval"]
    kid = next(iter(signing.load_public_keys([store["folder"] / "keys" / "ci.pub"])))
    digest = registry.load_evidence(store["settings"], NAME, v)["staging"][1]
    assert digest == evidence_mod.digest(first.evidence)
    assert approval | {"at": None} == {"env": "staging", "version": v, "by": "release-manager", "at": None,
                                       "evidence_sha256": digest, "evidence_env": "staging", "note": "reviewed the report",
                                       "key_id": kid, "signature": approval["signature"]}
    assert aliases(store) == before  # approving moves nothing

    monkeypatch.setenv("GITHUB_ACTOR", "ci-bot")
    code, out, _ = cli_run(capsys, "promote", v, "--config", cfg)
    assert code == 0 and aliases(store)["staging"] == v, out
    last = registry.history(store["settings"], NAME)[-1]
    assert (last.action, last.version, last.by, last.approved_by, last.evidence_sha256) == ("promote", v, "ci-bot", "release-manager", digest)
    code, out, _ = cli_run(capsys, "audit", "--config", cfg, "--json")
    assert code == 0, out
    code, out, _ = cli_run(capsys, "history", "--config", cfg)
    assert code == 0 and out.splitlines()[0].split() == ["at", "alias", "action", "version", "replaced", "by", "approved_by", "evidence", "forced"]
    assert out.splitlines()[-1].split()[1:] == ["staging", "promote", v, "-", "ci-bot", "release-manager", digest[:12], "-"]

    # The version is gated again: its evidence is new, and the approval was of the old one.
    gate(store, "approved")
    new = registry.load_evidence(store["settings"], NAME, v)["staging"][1]
    assert new != digest
    code, out, _ = cli_run(capsys, "audit", "--config", cfg, "--json")
    assert code == 1
    assert json.loads(out)["violations"] == [
        f"@staging -> v{v}: staging requires approval: the approval by release-manager at {approval['at']} is of other "
        f"evidence (sha256 {digest[:12]}, now {new[:12]}): the version was gated again since; run-pipeline approve {v} --env staging"]
    with pytest.raises(PromotionRefused, match="is of other evidence"):
        gating.promote(store["settings"], NAME, v, "staging")
    assert aliases(store)["staging"] == v


def test_an_unsigned_or_altered_approval_does_not_count(store, capsys, monkeypatch):
    v = store["versions"]["unsigned_approval"]
    gate(store, "unsigned_approval")
    before = aliases(store)
    monkeypatch.delenv(signing.KEY_ENV, raising=False)
    code, out, _ = cli_run(capsys, "approve", v, "--config", str(store["keyless"]))
    assert code == 0 and out.strip().endswith("by " + gating._who() + ", unsigned")
    with pytest.raises(PromotionRefused) as e:
        gating.promote(store["settings"], NAME, v, "staging")
    (approval,) = registry.approvals(store["settings"], NAME, v, "staging")
    assert str(e.value) == (f"{NAME} version {v}: staging requires approval: the approval by {approval.by} at {approval.at} "
                            "is unsigned, and signed approval is required (signing.public_keys)")

    # A signed approval whose record is edited afterwards (another note, another approver).
    signed, _ = gating.approve(store["settings"], NAME, v, "staging", "fine")
    client = registry.connect(store["settings"])
    key = next(k for k, val in client.get_model_version(NAME, v).tags.items() if k.startswith("approval.") and '"fine"' in val)
    client.set_model_version_tag(NAME, v, key, json.dumps({**json.loads(client.get_model_version(NAME, v).tags[key]), "by": "ceo"}))
    with pytest.raises(PromotionRefused, match=rf"the approval by ceo at .* is signed by key {signed.key_id}, but the signature does not match the approval"):
        gating.promote(store["settings"], NAME, v, "staging")
    assert aliases(store) == before

    # Evidence that would not promote cannot be approved: nothing is recorded.
    other = store["versions"]["not_json"]
    with pytest.raises(PromotionRefused, match=rf"^nothing to approve: {NAME} version {other}: no evidence"):
        gating.approve(store["settings"], NAME, other, "staging")
    assert registry.approvals(store["settings"], NAME, other, "staging") == []


# ---------------------------------------------------------------- a promotion racing a re-gate


def test_a_re_gate_between_the_check_and_the_move_refuses_the_promotion(store, monkeypatch):
    v = store["versions"]["race_before"]
    gate(store, "race_before")
    gating.approve(store["settings"], NAME, v, "staging")
    before = aliases(store)
    real_move = registry.move_alias

    def regated_meanwhile(*args, **kwargs):
        gate(store, "race_before")  # a second gate run of the same version lands first
        return real_move(*args, **kwargs)

    monkeypatch.setattr(registry, "move_alias", regated_meanwhile)
    with pytest.raises(PromotionRefused, match=rf"^{NAME} version {v}: its staging evidence changed while the promotion was checking it \(sha256 [0-9a-f]{{12}}, now [0-9a-f]{{12}}\)"):
        gating.promote(store["settings"], NAME, v, "staging")
    assert aliases(store) == before


def test_a_re_gate_during_the_move_puts_the_aliases_back(store, monkeypatch):
    v = store["versions"]["race_during"]
    first = gate(store, "race_during")
    gating.approve(store["settings"], NAME, v, "staging")
    before = aliases(store)  # after the first test: its version holds @staging; none before it, else
    from pipeline.registry import alias as alias_mod

    real = alias_mod._evidence_is_still
    calls = []

    def regate_after_first_check(client, name, version, env, digest):
        why = real(client, name, version, env, digest)
        if not calls:  # passes, then a re-gate writes its evidence before the alias moves
            doc = {**first.evidence, "ended": "2026-12-01T00:00:01+00:00"}
            registry.store_evidence(store["settings"], NAME, v, first.evidence["model"]["run_id"], doc)
        calls.append(why)
        return why

    monkeypatch.setattr(alias_mod, "_evidence_is_still", regate_after_first_check)
    with pytest.raises(PromotionRefused, match="evidence changed while the promotion was checking it"):
        gating.promote(store["settings"], NAME, v, "staging")
    assert len(calls) == 2 and calls[0] is None and calls[1] is not None  # it moved, saw the change, undid the move
    assert aliases(store) == before


# ---------------------------------------------------------------- damaged evidence, model files, store


@pytest.mark.parametrize("scenario, content, why", [
    ("not_json", None, "is not a JSON document (JSONDecodeError at character "),
    ("not_a_document", b"[]", "is not an evidence document (a JSON list)"),
])
def test_an_evidence_artifact_that_is_not_an_evidence_document_is_one_line(store, capsys, scenario, content, why):
    v = store["versions"][scenario]
    gate(store, scenario)
    gating.approve(store["settings"], NAME, v, "staging")
    path = evidence_file(store, v)
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2] if content is None else content)  # truncated, or replaced
    before = aliases(store)
    code, _, err = cli_run(capsys, "promote", v, "--config", str(store["config"]))
    assert code == 2 and aliases(store) == before
    tag = registry.get_version(store["settings"], NAME, v).tags["gates.staging.evidence"]
    assert one_error_line(err).startswith(f"{NAME} version {v}: evidence artifact {tag} {why}")


def test_damaged_or_deleted_model_files_stop_a_gate_run_before_any_gate_and_refuse_promotion(store, capsys):
    cfg = str(store["config"])
    # Corrupted: the skops file cut short after gating (loading it raised BadZipFile from every gate).
    v = store["versions"]["corrupted_model"]
    gate(store, "corrupted_model")
    gating.approve(store["settings"], NAME, v, "staging")
    tags_before = registry.get_version(store["settings"], NAME, v).tags
    skops = model_folder(store, v) / "model.skops"
    skops.write_bytes(skops.read_bytes()[:1000])
    reports = store["config"].parent / "reports"  # where cli_run's runs write
    reports_before = sorted(p.name for p in reports.iterdir()) if reports.exists() else None
    code, out, err = cli_run(capsys, "validate", f"models:/{NAME}/{v}", "--config", cfg)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"models:/{NAME}/{v}: model files changed since version {v} was logged (sha256 now "), line
    assert "Error" not in out and "BadZipFile" not in out + err  # no gate ran
    assert registry.get_version(store["settings"], NAME, v).tags == tags_before  # no evidence written
    # Not even pytest's JUnit file, which pytest writes (empty) when collection stops on bad input.
    assert (sorted(p.name for p in reports.iterdir()) if reports.exists() else None) == reports_before
    code, _, err = cli_run(capsys, "promote", v, "--config", cfg)
    assert code == 1
    assert one_error_line(err).startswith(f"{NAME} version {v}: model artifact digest changed since the staging evidence was written")

    # Deleted: the version's whole model folder.
    v = store["versions"]["deleted_model"]
    gate(store, "deleted_model")
    gating.approve(store["settings"], NAME, v, "staging")
    folder = model_folder(store, v)
    shutil.rmtree(folder)
    before = aliases(store)
    code, _, err = cli_run(capsys, "validate", f"models:/{NAME}/{v}", "--config", cfg)
    assert code == 2
    assert one_error_line(err) == (f"models:/{NAME}/{v}: model files missing or unreadable in the store "
                                   f"(No such artifact: '{folder.name}'; at {folder.as_uri()})")
    code, _, err = cli_run(capsys, "promote", v, "--config", cfg)
    assert code == 2 and one_error_line(err).startswith(f"models:/{NAME}/{v}: model files missing or unreadable in the store")
    assert aliases(store) == before


@pytest.mark.parametrize("damage, why", [
    (lambda db: db.write_bytes(b"not a database at all\n"), "not an SQLite database (it starts b'not a da'); restore it from a backup"),
    (lambda db: db.write_bytes(db.read_bytes()[:8192]), "damaged SQLite database (database disk image is malformed); restore it from a backup"),
    (lambda db: (db.unlink(), db.mkdir()), "a folder, not an SQLite database file"),
])
def test_a_store_file_that_is_not_a_database_is_one_line(store, tmp_path, capsys, damage, why):
    # A copy of the project's store, damaged; the project's own store is left alone.
    src = Path(store["settings"].mlflow.tracking_uri.removeprefix("sqlite:///"))
    db = tmp_path / "mlflow.db"
    shutil.copy(src, db)
    raw = yaml.safe_load(store["config"].read_text())
    raw["mlflow"]["tracking_uri"] = f"sqlite:///{db}"
    cfg = store["folder"] / f"{tmp_path.name}.yaml"  # beside the project's config: its relative paths hold
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    damage(db)
    for command in (["list"], ["promote", store["versions"]["approved"]], ["approve", "1"], ["audit"], ["history"]):
        code, _, err = cli_run(capsys, *command, "--config", str(cfg))
        assert code == 2, command
        assert one_error_line(err) == f"tracking store {db}: {why}", command
    # A gate run, through the CLI or pytest's plugin, stops at collection: nothing ran.
    code, _, err = cli_run(capsys, "validate", f"models:/{NAME}/1", "--config", str(cfg))
    assert code == 2 and one_error_line(err) == f"--model-uri models:/{NAME}/1: tracking store {db}: {why}"
    assert db.is_dir() or len(db.read_bytes()) <= 8192  # left as it was found, not re-created

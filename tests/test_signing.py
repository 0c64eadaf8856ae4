"""Signed evidence: Ed25519 keys from `run-pipeline keygen`, evidence signed at the end of a gate
run, and promotion refusing evidence that is unsigned, signed by an unknown key or changed
after it was signed, on a real embedded store.

Gate runs are in process (conftest's run_gates_in_process) on a project whose suite is the
metric family only, with the lighter model: these tests are about the signature, not the gates.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import registered_versions, run_cli, run_gates_in_process, signed_project
from pipeline import config as config_mod
from pipeline import evidence as evidence_mod
from pipeline import gating, registry, signing
from pipeline.errors import InputError, PromotionRefused

NAME = "ames-price"
SCENARIOS = ("signed", "edited", "unknown_key", "unsigned")


# ---------------------------------------------------------------- keys and signatures, no store


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(tmp_path):
    r = run_cli("keygen", "--out", str(tmp_path / "keys"), "--name", "ci", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    private, public = Path(doc["private_key"]), Path(doc["public_key"])
    assert private.stat().st_mode & 0o777 == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert doc["key_id"] in signing.load_public_keys([public])
    assert private.read_text() not in r.stdout + r.stderr  # the key itself is never printed
    again = run_cli("keygen", "--out", str(tmp_path / "keys"), "--name", "ci", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip() == f"error: {private}: already exists; keygen never overwrites a key (choose another --name or folder)"


def test_a_signature_verifies_only_for_its_digest_and_its_key(tmp_path):
    priv, pub, kid = signing.generate(tmp_path, "a")
    _, other_pub, other_kid = signing.generate(tmp_path, "b")
    key = signing.load_private(priv)
    digest = "ab" * 32
    sig = signing.sign(key, digest)
    assert sig.key_id == kid
    trusted = signing.load_public_keys([pub])
    assert signing.verify(trusted, digest, sig) is None
    assert "does not match" in signing.verify(trusted, "cd" * 32, sig)
    assert signing.verify(signing.load_public_keys([other_pub]), digest, sig).startswith(f"signed by unknown key {kid}")
    assert signing.verify(trusted, digest, None).startswith("unsigned")
    forged = signing.Signature(kid, sig.value[:-4] + ("AAAA" if not sig.value.endswith("AAAA") else "BBBB"))
    assert "does not match" in signing.verify(trusted, digest, forged)


def test_the_key_may_come_from_the_environment_and_bad_keys_name_their_file(tmp_path, monkeypatch):
    priv, pub, kid = signing.generate(tmp_path, "a")
    monkeypatch.setenv(signing.KEY_ENV, priv.read_text())
    assert signing.key_id(signing.load_private(None).public_key()) == kid
    monkeypatch.setenv(signing.KEY_ENV, "not a key")
    with pytest.raises(InputError, match=rf"^\${signing.KEY_ENV}: not an unencrypted PEM private key"):
        signing.load_private(priv)
    monkeypatch.delenv(signing.KEY_ENV)
    with pytest.raises(InputError, match=rf"^{tmp_path / 'nope.pem'}: signing key unreadable"):
        signing.load_private(tmp_path / "nope.pem")
    with pytest.raises(InputError, match=rf"^{pub}: not an unencrypted PEM private key"):
        signing.load_private(pub)
    with pytest.raises(InputError, match=rf"^{priv}: not a PEM public key"):
        signing.load_public_keys([priv])


# ---------------------------------------------------------------- on a real store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signing")
    keys = folder / "keys"
    # unsigned_cfg: the same project without a signing key: its runs write unsigned evidence.
    cfg, unsigned_cfg = signed_project(folder)
    signing.generate(keys, "stranger")
    settings = config_mod.load(cfg, "staging")
    versions = dict(zip(SCENARIOS, registered_versions(settings, len(SCENARIOS))))
    return {"folder": folder, "config": cfg, "unsigned": unsigned_cfg, "settings": settings, "versions": versions,
            "keys": keys, "suite": Path(settings.gate_tests)}


def gate(store, scenario: str, *, config: Path | None = None, environ: dict[str, str] | None = None, promote: bool = False):
    return run_gates_in_process(store["folder"] / "runs" / scenario, config or store["config"], env="staging",
                                model_uri=f"models:/{NAME}/{store['versions'][scenario]}", promote=promote,
                                paths=(store["suite"],), environ=environ)


def refusal(store, scenario: str) -> str:
    with pytest.raises(PromotionRefused) as e:
        gating.promote(store["settings"], NAME, store["versions"][scenario], "staging")
    assert registry.alias_map(store["settings"], NAME).get("staging") != store["versions"][scenario]
    return str(e.value)


def test_signed_evidence_names_its_key_and_promotes(store):
    v = store["versions"]["signed"]
    run = gate(store, "signed", promote=True)
    assert run.returncode == 0, run.output[-3000:]
    kid = next(iter(signing.load_public_keys([store["keys"] / "ci.pub"])))
    assert run.evidence["signer"] == kid
    digest = evidence_mod.digest(run.evidence)
    sig_file = Path(run.evidence_dir) / f"evidence-{NAME}-v{v}-staging.sig"
    key_id, value = sig_file.read_text().split()
    stored = registry.evidence_signature(store["settings"], NAME, v, "staging")
    assert (stored.key_id, stored.value) == (key_id, value) == (kid, value)
    assert signing.verify(signing.load_public_keys([store["keys"] / "ci.pub"]), digest, stored) is None
    assert registry.alias_map(store["settings"], NAME)["staging"] == v
    assert store["keys"].joinpath("ci.pem").read_text() not in run.output


def test_evidence_edited_with_its_digest_tag_recomputed_is_refused(store):
    v = store["versions"]["edited"]
    assert gate(store, "edited").returncode == 0
    settings = store["settings"]
    client = registry.connect(settings)
    mv = client.get_model_version(NAME, v)
    path = mv.tags["gates.staging.evidence"]
    with tempfile.TemporaryDirectory() as tmp:
        doc = json.loads(Path(client.download_artifacts(mv.run_id, path, tmp)).read_text())
        doc["gates"][0]["figure"]["value"] = 0.99  # a nicer figure, written by hand
        local = Path(tmp) / "edit" / Path(path).name
        local.parent.mkdir()
        local.write_bytes(evidence_mod.canonical(doc))
        client.log_artifact(mv.run_id, str(local), artifact_path=str(Path(path).parent))
    client.set_model_version_tag(NAME, v, "gates.staging.evidence_sha256", evidence_mod.digest(doc))
    ((stored, tag),) = registry.load_evidence(settings, NAME, v).values()
    assert stored == doc and tag == evidence_mod.digest(doc)  # the digest alone no longer catches it
    assert refusal(store, "edited") == (
        f"{NAME} version {v}: the staging evidence is signed by key {doc['signer']}, but the signature does not match "
        f"the evidence (sha256 {evidence_mod.digest(doc)[:12]})")


def test_evidence_signed_by_an_unknown_key_is_refused(store):
    v = store["versions"]["unknown_key"]
    stranger = (store["keys"] / "stranger.pem").read_text()
    run = gate(store, "unknown_key", environ={signing.KEY_ENV: stranger}, promote=True)
    assert run.returncode == 1
    kid = run.evidence["signer"]
    trusted = next(iter(signing.load_public_keys([store["keys"] / "ci.pub"])))
    assert kid != trusted
    reason = f"{NAME} version {v}: the staging evidence is signed by unknown key {kid} (trusted: {trusted})"
    assert run.refusals == [f"promotion refused: {reason}"]
    assert refusal(store, "unknown_key") == reason


def test_unsigned_evidence_says_so_and_is_refused_where_signatures_are_required(store):
    v = store["versions"]["unsigned"]
    run = gate(store, "unsigned", config=store["unsigned"], promote=True)
    assert run.returncode == 1
    assert run.evidence["status"] == "passed" and run.evidence["signer"] is None
    reason = f"{NAME} version {v}: the staging evidence is unsigned, and signed evidence is required (signing.public_keys)"
    assert run.refusals == [f"promotion refused: {reason}"]
    assert refusal(store, "unsigned") == reason


def test_an_unreadable_signing_key_stops_the_run_before_any_gate(store, tmp_path):
    raw = yaml.safe_load(store["config"].read_text())
    bad = store["folder"] / "bad_key_config.yaml"  # beside the model config it names
    bad.write_text(yaml.safe_dump({**raw, "signing": {"private_key": str(tmp_path / "missing.pem")}}, sort_keys=False))
    run = run_gates_in_process(tmp_path / "run", bad, env="staging", model_uri=f"models:/{NAME}/{store['versions']['signed']}",
                               paths=(store["suite"],), expect_evidence=False)
    assert run.returncode == 4, run.output[-2000:]
    (line,) = [ln for ln in run.output.splitlines() if ln.startswith("ERROR:")]
    assert line == f"ERROR: {tmp_path / 'missing.pem'}: signing key unreadable (No such file or directory)"
    assert run.evidence is None

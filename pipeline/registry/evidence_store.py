"""Gate evidence on a model version: the document as a run artifact, its summary in tags.

Building, hashing and judging evidence is pipeline/evidence.py's (pure, no MLflow).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import evidence as ev
from pipeline.config import Settings
from pipeline.errors import InputError
from pipeline.evidence import gate_results
from pipeline.registry import model, store
from pipeline.registry.text import record_json, tag_records, tag_stamp
from pipeline.signing import Signature

# mlflow (1.1 s) is imported inside functions: importing pipeline.registry stays 0.19 s without it (see store.py).

EVIDENCE_DIR = "evidence"


def store_evidence(
    settings: Settings, name: str, version: str, run_id: str, doc: dict[str, Any], signature=None
) -> str:
    """Log the evidence as an artifact of the version's run and summarise it in version tags
    (with its signature, a signing.Signature, when the run signed it). Every gate's figure is
    logged as the metric `gate.<id>` on the run and on its logged model (gate_metrics), so
    MLflow's own UI charts and compares them across versions."""
    client = store.connect(settings)
    env = doc["environment"]
    stamp = doc["ended"].replace(":", "").replace("-", "")
    path = f"{EVIDENCE_DIR}/{env}/v{version}-{stamp}.json"
    digest = ev.digest(doc)
    with store.reachable(settings), tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(path).name
        local.write_bytes(ev.canonical(doc))
        store.retry(client.log_artifact, run_id, str(local), artifact_path=str(Path(path).parent))
        for key, value in {
            f"gates.{env}.status": doc["status"],
            f"gates.{env}.evidence": path,
            f"gates.{env}.evidence_sha256": digest,
            f"gates.{env}.ended": doc["ended"],
            # Re-gating unsigned replaces an earlier signature with nothing, never keeps it.
            f"gates.{env}.signature": f"{signature.key_id} {signature.value}" if signature is not None else "",
        }.items():
            store.retry(client.set_model_version_tag, name, version, key, value)
        metrics = gate_metrics(doc, logged_model_id(client.get_model_version(name, version)))
        if metrics:
            store.retry(client.log_batch, run_id, metrics=metrics)
    return path


def logged_model_id(mv: Any) -> str | None:
    """The id of the logged model a version was registered from: MLflow 3's `model_id`, which a
    SQL registry leaves empty, else the `models:/m-...` URI the version's source names."""
    if getattr(mv, "model_id", None):
        return mv.model_id
    source = str(getattr(mv, "source", "") or "")
    found = source.removeprefix("models:/")
    return found if source.startswith("models:/m-") and "/" not in found else None


def gate_metrics(doc: dict[str, Any], model_id: str | None) -> list:
    """`gate.<id>` = the gate's figure, for every gate of the evidence that has a finite one (an
    MLflow metric is a number: a gate without a figure, not applicable or skipped, has none)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    out = []
    for g in gate_results(doc):
        if isinstance(g.value, (int, float)) and math.isfinite(g.value):
            out.append(Metric(f"gate.{g.gate}", float(g.value), now, 0, model_id=model_id))
    return out


def _artifact_bytes(settings: Settings, run_id: str | None, root: Path | None, path: str, whose: str) -> bytes:
    """A run artifact's bytes: read in the run's folder `root` where the embedded store keeps it
    on this machine, else downloaded through MLflow, which also refuses a path that leads out of
    the run's folder; an artifact it cannot give is InputError naming `whose` artifact it is."""
    here = (root / path).resolve() if root is not None else None
    if root is not None and here is not None and here.is_file() and here.is_relative_to(root.resolve()):
        return here.read_bytes()
    with store.reachable(settings), tempfile.TemporaryDirectory() as tmp:
        try:
            return Path(store.connect(settings).download_artifacts(run_id, path, tmp)).read_bytes()
        except Exception as e:  # a missing artifact is a refusal, not a crash
            raise InputError(f"{whose}: evidence artifact {path} unreadable: {str(e).splitlines()[0][:120]}") from None


def load_evidence(settings: Settings, name: str, version: str) -> dict[str, tuple[dict[str, Any], str]]:
    """Evidence recorded on a version, per environment: (document, digest in the tag)."""
    stored = model.stored_version(settings, name, version)
    if stored is not None:
        run_id, tags, root = stored.run_id, stored.tags, stored.run_artifacts
    else:
        mv = model.get_version(settings, name, version)
        run_id, tags, root = mv.run_id, dict(mv.tags or {}), None
    out: dict[str, tuple[dict[str, Any], str]] = {}
    for key, path in tags.items():
        if not (key.startswith("gates.") and key.endswith(".evidence")):
            continue
        env = key[len("gates.") : -len(".evidence")]
        raw = _artifact_bytes(settings, run_id, root, path, f"{name} version {version}")
        try:
            doc = json.loads(raw)
        except ValueError as e:  # truncated, replaced or not text at all
            raise InputError(
                f"{name} version {version}: evidence artifact {path} is not a JSON document "
                f"({type(e).__name__} at character {getattr(e, 'pos', '?')}); re-run the gates"
            ) from None
        if not isinstance(doc, dict):
            raise InputError(
                f"{name} version {version}: evidence artifact {path} is not an evidence document (a JSON {type(doc).__name__})"
            )
        out[env] = (doc, tags.get(f"gates.{env}.evidence_sha256", ""))
    return out


def evidence_signature(settings: Settings, name: str, version: str, env: str):
    """The signature stored beside a version's `env` evidence (a signing.Signature), or None."""
    tag = model.version_tags(settings, name, version).get(f"gates.{env}.signature", "")
    key_id, _, value = tag.partition(" ")
    return Signature(key_id, value) if key_id and value else None


def log_files(settings: Settings, run_id: str, files: list[Path], artifact_path: str) -> None:
    """Log local files as artifacts of a run (reports, plots)."""
    client = store.connect(settings)
    with store.reachable(settings):
        for f in files:
            sub = artifact_path if f.parent.name != "plots" else f"{artifact_path}/plots"
            client.log_artifact(run_id, str(f), artifact_path=sub)


# ---------------------------------------------------------------- approvals of evidence


@dataclass(frozen=True, slots=True)
class Approval:
    """A person's approval of one version's evidence for one environment, as recorded on the version.

    It names the evidence by its digest, so it approves that evidence only: a version gated
    again since has other evidence, which this approval does not cover.
    """

    env: str
    version: str
    by: str
    at: str  # ISO 8601, UTC, microseconds
    evidence_sha256: str
    evidence_env: str  # the environment whose gate run wrote the approved evidence
    note: str = ""
    key_id: str | None = None  # the signature over `digest`, when the approver had a key
    signature: str | None = None

    @property
    def digest(self) -> str:
        """SHA-256 over everything but the signature: what a signature covers."""
        body = {k: getattr(self, k) for k in Approval.__slots__ if k not in ("key_id", "signature")}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


APPROVAL = "approval."  # version tag prefix: approval.<env>.<UTC stamp>, one per approval, never overwritten


def record_approval(settings: Settings, name: str, approval: Approval) -> str:
    """Write `approval` as a tag of its own on the version; returns the tag key."""
    client = store.connect(settings)
    key = f"{APPROVAL}{approval.env}.{tag_stamp(approval.at)}"
    with store.reachable(settings):
        store.retry(client.set_model_version_tag, name, approval.version, key, record_json(approval))
    return key


def approvals(settings: Settings, name: str, version: str, env: str) -> list[Approval]:
    """Every approval of `version` for `env`, oldest first."""
    tags = model.version_tags(settings, name, version)
    return tag_records(tags, f"{APPROVAL}{env}.", Approval, f"{name} version {version}", "an approval record")

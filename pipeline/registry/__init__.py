"""Registry: the only package that talks to MLflow (tracking store and model registry).

    store           the client, one per store (connect), reachability, retries, ping
    model           logging a candidate, saving, loading, looking up versions, digests
    evidence_store  gate evidence and reports on a version's run, approvals of that evidence
    alias           aliases: champion, move, rollback, their history, listing and archiving versions
    live            what the live monitor did to an alias (stopped routing to a challenger), on the record
    text            JSON text of figures (to_jsonable, dumps)
    uri             what a --model-uri names, checked before any gate runs (resolve)

MLflow is imported inside the functions that use it, so importing this package stays cheap.
"""

from __future__ import annotations

from pipeline.registry.alias import (
    UNKNOWN,
    Move,
    VersionInfo,
    alias_map,
    archive_old_versions,
    champion_version,
    history,
    move_alias,
    record_move,
    rollback_alias,
    versions,
)
from pipeline.registry.evidence_store import (
    EVIDENCE_DIR,
    Approval,
    approvals,
    evidence_signature,
    load_evidence,
    log_files,
    logged_model_id,
    record_approval,
    store_evidence,
)
from pipeline.registry.live import record_live_decision
from pipeline.registry.model import (
    MODEL_ARTIFACT,
    TAG_CONFIG,
    TAG_DATA,
    TAG_GIT,
    TAG_MODEL,
    TAG_SPLIT,
    Candidate,
    directory_digest,
    get_version,
    git_commit,
    load_model,
    load_pyfunc,
    log_candidate,
    model_digest,
    parse_model_uri,
    pip_requirements,
    roundtrip_pyfunc,
    save_model,
    signature_for,
    trusted_types,
)
from pipeline.registry.store import (
    connect,
    ensure_experiment,
    ensure_registered_model,
    ping,
    reachable,
    retry,
    setup_count,
    store_error_line,
)
from pipeline.registry.text import dumps, to_jsonable
from pipeline.registry.uri import resolve

__all__ = [
    "EVIDENCE_DIR",
    "MODEL_ARTIFACT",
    "TAG_CONFIG",
    "TAG_DATA",
    "TAG_GIT",
    "TAG_MODEL",
    "TAG_SPLIT",
    "Approval",
    "Candidate",
    "Move",
    "VersionInfo",
    "alias_map",
    "approvals",
    "archive_old_versions",
    "champion_version",
    "connect",
    "directory_digest",
    "dumps",
    "ensure_experiment",
    "ensure_registered_model",
    "evidence_signature",
    "get_version",
    "git_commit",
    "history",
    "load_evidence",
    "load_model",
    "load_pyfunc",
    "log_candidate",
    "log_files",
    "logged_model_id",
    "model_digest",
    "UNKNOWN",
    "move_alias",
    "parse_model_uri",
    "ping",
    "pip_requirements",
    "reachable",
    "record_approval",
    "record_live_decision",
    "record_move",
    "resolve",
    "retry",
    "rollback_alias",
    "roundtrip_pyfunc",
    "save_model",
    "setup_count",
    "signature_for",
    "store_evidence",
    "store_error_line",
    "to_jsonable",
    "trusted_types",
    "versions",
]

"""Gating: turn a finished gate run into evidence, and evidence into a promotion or a refusal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline import evidence, registry, signing
from pipeline import report as report_mod
from pipeline.config import Settings
from pipeline.errors import InputError, PipelineError, PromotionRefused
from pipeline.files import write_atomic


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def finish(plugin, result) -> None:
    """Build and store the evidence of this run into `result`; promote when asked and allowed."""
    settings: Settings = plugin.settings
    gs = plugin.gate_session
    source = gs.source
    model: dict[str, Any] = {
        "uri": source.uri,
        "name": source.name,
        "version": source.version,
        "run_id": source.run_id,
        "sha256": source.model_sha256,
        "fitted_in_session": source.uri is None,
    }
    eval_sha = None
    data_sha = None
    try:
        eval_sha = gs.eval_digest
        data_sha = gs.dataset.digest
    except PipelineError:
        pass  # the data gates already failed or errored and say why
    for g in plugin.report.gates.values():  # a gate that recorded nothing (skipped, errored) still shows its threshold
        if g.figure is None and g.gate in settings.thresholds:
            g.figure = evidence.figure_dict(g.gate, None, settings.thresholds[g.gate])
    key = plugin.signing_key
    doc = evidence.build(
        plugin.report,
        settings,
        model=model,
        data_sha256=data_sha,
        eval_data_sha256=eval_sha,
        git_commit=registry.git_commit(settings.config_path.parent),
        started=plugin.started,
        ended=_now(),
        signer=signing.key_id(key.public_key()) if key is not None else None,
    )
    doc["timings_s"] = {k: round(v, 3) for k, v in gs.timings.items()}
    if gs.engine != "local":  # where the figures were computed, and which gates read a sample
        try:
            doc["engine"] = gs.evaluation.facts()
        except PipelineError:
            pass
    try:  # the holder the champion gates compared with (read when they ran): a promotion replaces only it
        doc["champion"] = {"alias": settings.champion_alias, "version": gs.champion_holder}
    except PipelineError:
        pass  # the registry away: the evidence does not say, and a promotion checks the holder it finds
    signature = signing.sign(key, evidence.digest(doc)) if key is not None else None
    name = (
        f"evidence-{settings.env}.json"
        if source.version is None
        else f"evidence-{source.name}-v{source.version}-{settings.env}.json"
    )
    result.evidence_path = plugin.evidence_dir / name
    write_atomic(result.evidence_path, evidence.canonical(doc))
    if signature is not None:  # beside the evidence: key id and signature of its digest
        write_atomic(result.evidence_path.with_suffix(".sig"), f"{signature.key_id} {signature.value}\n".encode())
    result.evidence = doc
    # The report is drawn beside the verdict, not before it: while the plots are drawn, the
    # evidence is stored and the promotion decided. The report is logged either way.
    drawing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gate-report")
    report = drawing.submit(
        report_mod.write, doc, plugin.report.plots, plugin.evidence_dir, target=settings.data.target
    )
    refused = None
    try:
        if source.version is not None:
            registry.store_evidence(settings, source.name, source.version, source.run_id, doc, signature)
        if plugin.promote:
            try:
                result.promotion = promote(settings, source.name, source.version, settings.env)
            except PromotionRefused as e:
                refused = e
    finally:
        result.report_files = report.result()
        drawing.shutdown()
    if source.version is not None:
        registry.log_files(settings, source.run_id, list(result.report_files.values()), f"reports/{settings.env}")
    if refused is not None:
        raise refused


def _who() -> str:
    # The tracking server's authenticated user first: that is the identity its permissions judged.
    for var in ("MLFLOW_TRACKING_USERNAME", "GITHUB_ACTOR", "USER", "USERNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def check_evidence(settings: Settings, name: str, version: str, env: str) -> tuple[dict[str, Any], str]:
    """The passing evidence that allows `version` into `env`, or PromotionRefused saying why.

    Checked in this order: evidence exists; it was recorded for this version; it is
    unchanged since it was recorded; it is signed by a trusted key (when signing.public_keys
    names any); the model's files are unchanged since it was written;
    it is from `env` or a stricter environment; every gate `env` requires ran and passed.
    """
    found = registry.load_evidence(settings, name, version)
    if not found:
        raise PromotionRefused(
            f"{name} version {version}: no evidence; run the gates first (pytest model_tests -m gates --model-uri models:/{name}/{version} --env {env})"
        )
    now = None
    for ev_env, (doc, tag_digest) in sorted(found.items()):
        recorded = doc.get("model", {})
        if str(recorded.get("version")) != str(version) or recorded.get("name") != name:
            raise PromotionRefused(
                f"{name} version {version}: the {ev_env} evidence was recorded for {recorded.get('name')} version {recorded.get('version')}"
            )
        if evidence.digest(doc) != tag_digest:
            raise PromotionRefused(
                f"{name} version {version}: the {ev_env} evidence changed since it was recorded (sha256 {evidence.digest(doc)[:12]} != tag {tag_digest[:12]})"
            )
        if settings.signing.public_keys:
            why = signing.verify(
                signing.load_public_keys(settings.signing.public_keys),
                evidence.digest(doc),
                registry.evidence_signature(settings, name, version, ev_env),
            )
            if why:
                raise PromotionRefused(f"{name} version {version}: the {ev_env} evidence is {why}")
        now = now or registry.model_digest(settings, f"models:/{name}/{version}")
        if now != recorded.get("sha256"):
            raise PromotionRefused(
                f"{name} version {version}: model artifact digest changed since the {ev_env} evidence was written (now {now[:12]}, evidence {str(recorded.get('sha256'))[:12]})"
            )
    needed = settings.strictness(env)
    usable = {e: v for e, v in found.items() if e in settings.environments and settings.strictness(e) >= needed}
    if not usable:
        have = ", ".join(sorted(found))
        raise PromotionRefused(
            f"{name} version {version}: evidence only for {have}, laxer than '{env}'; run the gates with --env {env}"
        )
    # The strictest environment's evidence decides.
    ev_env = max(usable, key=settings.strictness)
    doc, tag_digest = usable[ev_env]
    if doc.get("status") != "passed":
        raise PromotionRefused(
            f"{name} version {version}: {ev_env} gates did not pass: {'; '.join(doc.get('reasons', [])) or 'status ' + str(doc.get('status'))}"
        )
    outcomes = {g.gate: g.outcome for g in evidence.gate_results(doc)}
    required = settings.environments[env].required_gates
    missing = [g for g in required if g not in outcomes]
    if missing:
        raise PromotionRefused(
            f"{name} version {version}: required gates not collected in the {ev_env} run: {', '.join(missing)}"
        )
    bad = [f"{g} ({outcomes[g]})" for g in required if outcomes[g] not in evidence.ACCEPTED]
    if bad:
        raise PromotionRefused(
            f"{name} version {version}: required gates not passed in the {ev_env} run: {', '.join(bad)}"
        )
    return doc, tag_digest


def check_approval(settings: Settings, name: str, version: str, env: str, ev_digest: str) -> registry.Approval | None:
    """The approval of exactly this evidence (digest `ev_digest`) when `env` requires one, or
    PromotionRefused saying why none counts; None when `env` requires no approval."""
    if settings.environments[env].approval != "required":
        return None
    found = registry.approvals(settings, name, version, env)
    again = f"run-pipeline approve {version} --env {env}"
    if not found:
        raise PromotionRefused(
            f"{name} version {version}: {env} requires approval (environments.{env}.approval), and none is recorded; {again}"
        )
    keys = signing.load_public_keys(settings.signing.public_keys) if settings.signing.public_keys else None
    why = ""
    for a in reversed(found):  # the newest approval that holds decides
        if a.evidence_sha256 != ev_digest:
            why = why or (
                f"the approval by {a.by} at {a.at} is of other evidence (sha256 {a.evidence_sha256[:12]}, "
                f"now {ev_digest[:12]}): the version was gated again since; {again}"
            )
            continue
        if keys is not None:
            sig = signing.Signature(a.key_id, a.signature) if a.key_id and a.signature else None
            bad = signing.verify(keys, a.digest, sig, kind="approval")
            if bad:
                why = why or f"the approval by {a.by} at {a.at} is {bad}"
                continue
        return a
    raise PromotionRefused(f"{name} version {version}: {env} requires approval: {why}")


def approve(settings: Settings, name: str, version: str, env: str, note: str = "") -> tuple[registry.Approval, str]:
    """Record who approves `version`'s current evidence for `env` (signed when a signing key is
    configured). Only evidence that would promote can be approved. Returns (approval, summary)."""
    if env not in settings.environments:
        raise InputError(f"--env {env}: unknown environment (known: {', '.join(settings.environments)})")
    key = signing.load_private(settings.signing.private_key)  # a bad key fails before anything is written
    try:
        doc, ev_digest = check_evidence(settings, name, version, env)
    except PromotionRefused as e:
        raise PromotionRefused(f"nothing to approve: {e}") from None
    approval = registry.Approval(
        env=env,
        version=str(version),
        by=_who(),
        at=_now_us(),
        evidence_sha256=ev_digest,
        evidence_env=doc["environment"],
        note=" ".join(note.split()),
    )
    if key is not None:
        sig = signing.sign(key, approval.digest, kind="approval")
        approval = dataclasses.replace(approval, key_id=sig.key_id, signature=sig.value)
    registry.record_approval(settings, name, approval)
    needed = "" if settings.environments[env].approval == "required" else f" ({env} does not require approval)"
    signed = f", signed by key {approval.key_id}" if approval.key_id else ", unsigned"
    return approval, (
        f"approved {name} version {version} for {env}: its {approval.evidence_env} evidence "
        f"sha256 {ev_digest[:12]}, by {approval.by}{signed}{needed}"
    )


def _now_us() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def promote(settings: Settings, name: str, version: str, env: str) -> str:
    """Move `env`'s alias to `version` if its evidence (and, where required, an approval of that
    evidence) allows it; return a one-line summary."""
    if env not in settings.environments:
        raise InputError(f"--env {env}: unknown environment (known: {', '.join(settings.environments)})")
    doc, ev_digest = check_evidence(settings, name, version, env)
    approval = check_approval(settings, name, version, env, ev_digest)
    alias = settings.environments[env].alias
    judged = doc.get("champion")
    # move_alias checks once more, around the move itself, that this evidence is still the
    # version's (a re-gate of the same version may have replaced it since it was read above),
    # and that the alias is still held by the version its gates compared with.
    previous = registry.move_alias(
        settings,
        name,
        alias,
        version,
        evidence_sha256=ev_digest,
        who=_who(),
        evidence_env=doc["environment"],
        approved_by=approval.by if approval else None,
        judged_against=judged["version"]
        if isinstance(judged, dict) and judged.get("alias") == alias
        else registry.UNKNOWN,
    )
    archived = registry.archive_old_versions(settings, name)
    prev = f" (previous: version {previous}, now @previous-{alias})" if previous else ""
    arch = f"; archived versions {', '.join(archived)}" if archived else ""
    return f"promoted {name} version {version} to @{alias}{prev}{arch}"


def rollback(settings: Settings, name: str, env: str, force: bool = False) -> str:
    """`checked_rollback`, as one line."""
    alias = settings.environments[env].alias
    restored, demoted, forced = checked_rollback(settings, name, env, force=force)
    said = f" (forced: {forced})" if forced else ""
    return f"rolled back @{alias} of {name} to version {restored} (version {demoted} now @previous-{alias}){said}"


def checked_rollback(
    settings: Settings, name: str, env: str, *, force: bool = False, who: str | None = None
) -> tuple[str, str, str | None]:
    """Swap `env`'s alias with `@previous-<alias>`, once the version it restores is shown to be
    still allowed there: its evidence (recorded for it, unchanged, signed where keys are
    configured, its model's files unchanged, every required gate passed) and, where `env`
    requires one, an approval of that evidence, as a promotion checks them. Where they no
    longer hold: PromotionRefused, nothing moved; with `force`, restored and the history says
    why. Returns (restored, demoted, why it was forced or None)."""
    alias = settings.environments[env].alias
    restored = registry.alias_map(settings, name).get(f"previous-{alias}")
    forced = None
    if restored is not None:
        try:
            _, digest = check_evidence(settings, name, restored, env)
            check_approval(settings, name, restored, env, digest)
        except PromotionRefused as e:
            if not force:
                raise PromotionRefused(
                    f"rollback of @{alias} refused: {e}; --force restores it anyway (the history records it)"
                ) from None
            forced = str(e)
    restored, demoted = registry.rollback_alias(settings, name, alias, who=who or _who(), forced=forced)
    return restored, demoted, forced


FOUND = "found"  # a history record the audit writes for an alias move nobody recorded


def _record_found(settings: Settings, name: str, alias: str, holder: str, expected: str | None) -> str:
    """Put a move the audit found into the history (who made it is unknown: the audit's runner
    is named). An auditor who may only read gets the violation all the same, and is told so."""
    try:
        registry.record_move(
            settings, name, registry.Move(alias, FOUND, holder, f"audit ({_who()})", _now_us(), None, expected)
        )
    except PipelineError as e:
        return f"; not added to the history ({e})"
    return ""


def audit(settings: Settings, envs: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Check every alias of `envs`: its holder got there by a recorded harness move, and its
    evidence (and approval, where required) still allows it there. A holder no recorded move
    put there is added to the history as found (once). Returns (violations, one row per alias)."""
    name = settings.mlflow.registered_model
    holders = registry.alias_map(settings, name)
    moves = registry.history(settings, name)
    violations: list[str] = []
    rows: list[dict[str, Any]] = []
    for env in envs:
        alias = settings.environments[env].alias
        holder = holders.get(alias)
        row = {"env": env, "alias": alias, "version": holder, "status": "ok", "detail": ""}
        rows.append(row)
        if holder is None:
            row["status"], row["detail"] = "empty", "no version holds it"
            continue
        # Only the harness's own moves count; a move an earlier audit found is on record, not allowed.
        mine = [m for m in moves if m.alias == alias]
        recorded = [m for m in mine if m.action != FOUND]
        problem = None
        if not recorded or recorded[-1].version != holder:
            if not recorded:
                problem = "moved without a promotion record (no recorded move of this alias)"
            else:
                last = recorded[-1]
                problem = (
                    f"moved without a promotion record (the last recorded move, {last.action} by {last.by} at {last.at}, "
                    f"put v{last.version} there)"
                )
            if not (mine and mine[-1].action == FOUND and mine[-1].version == holder):  # once per hand move
                problem += _record_found(settings, name, alias, holder, recorded[-1].version if recorded else None)
        else:
            try:
                _, ev_digest = check_evidence(settings, name, holder, env)
                check_approval(settings, name, holder, env, ev_digest)
            except PipelineError as e:  # a refusal, or evidence that cannot even be read
                problem = str(e).removeprefix(f"{name} version {holder}: ")
        if problem:
            row["status"], row["detail"] = "violation", problem
            violations.append(f"@{alias} -> v{holder}: {problem}")
        else:
            last = recorded[-1]
            row["detail"] = f"{last.action} by {last.by} at {last.at}"
    return violations, rows

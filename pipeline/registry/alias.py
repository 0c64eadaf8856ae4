"""Aliases on the registered model: who holds one, moving and rolling back (each move recorded in
its history), listing versions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Settings
from pipeline.errors import InputError, PromotionRefused
from pipeline.registry import sqlite_view, store
from pipeline.registry.text import record_json, tag_records, tag_stamp

# mlflow (1.1 s) is imported inside functions: importing pipeline.registry stays 0.19 s without it (see store.py).


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One version of a registered model as the registry lists it: plain data, no MLflow object."""

    name: str
    version: str
    run_id: str | None
    aliases: tuple[str, ...]  # sorted
    tags: dict[str, str] = field(default_factory=dict)
    created: int | None = None  # creation time, ms since the epoch
    metrics: dict[str, float] = field(default_factory=dict)  # the run's metrics


def champion_version(settings: Settings, alias: str) -> tuple[str, str] | None:
    """(name, version) holding `alias` in the registered model, None when there is none."""
    from mlflow.exceptions import MlflowException

    if not store.store_exists(settings):
        return None
    client = store.connect(settings)
    name = settings.mlflow.registered_model
    with store.reachable(settings):
        try:
            mv = client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None
    return name, str(mv.version)


def _holder(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _evidence_is_still(client, name: str, version: str, env: str, digest: str) -> str | None:
    """None when the version's `env` evidence tag still names `digest`; else the refusal's text."""
    now = (client.get_model_version(name, version).tags or {}).get(f"gates.{env}.evidence_sha256", "")
    if now == digest:
        return None
    return (
        f"{name} version {version}: its {env} evidence changed while the promotion was checking it "
        f"(sha256 {digest[:12]}, now {now[:12] or 'none'}): the version was gated again meanwhile; promote again"
    )


UNKNOWN = object()  # move_alias: evidence that does not say which holder its gates compared with


def move_alias(
    settings: Settings,
    name: str,
    alias: str,
    version: str,
    *,
    evidence_sha256: str,
    who: str,
    evidence_env: str,
    approved_by: str | None = None,
    judged_against: str | None | object = UNKNOWN,
) -> str | None:
    """Point `alias` at `version`; the previous holder keeps `previous-<alias>`. Returns it (None
    when nobody held the alias, or `version` did: promoting the holder again moves no alias,
    and its `replaced` tag keeps naming the version it replaced when it got the alias).

    Concurrent moves of one alias take turns (store.alias_lock), so each reads the holder it
    replaces, and the history is one sequence. `judged_against`: the holder the evidence's
    gates compared the version with (None: nobody held the alias); another holder now means
    another promotion won the race since: refused, nothing moved. The evidence that allowed
    the move (`evidence_sha256`, from `evidence_env`) must still be the version's just before
    and just after the alias moves; when a re-gate replaced it in between, the aliases are put
    back as they were and the move is refused.
    """
    client = store.connect(settings)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with store.reachable(settings), store.alias_lock(settings, name, alias) as lock:
        holder = _holder(client, name, alias)
        previous = None if holder == version else holder  # promoting the holder again replaces nobody
        if judged_against is not UNKNOWN and holder not in (judged_against, version):
            raise PromotionRefused(_lost_race(name, version, alias, holder, judged_against))
        why = _evidence_is_still(client, name, version, evidence_env, evidence_sha256)
        if why:
            raise PromotionRefused(why)
        if holder != version:
            before_previous = _holder(client, name, f"previous-{alias}")
            if previous is not None:
                store.retry(client.set_registered_model_alias, name, f"previous-{alias}", previous)
            store.retry(client.set_registered_model_alias, name, alias, version)
            why = _evidence_is_still(client, name, version, evidence_env, evidence_sha256)
            if not why and lock == "none" and (now_held := _holder(client, name, alias)) != version:
                # No lock to take turns by (an HTTP server, no mlflow.lock_url): another move
                # wrote the alias after ours; it holds the alias now, and ours is not recorded.
                raise PromotionRefused(_lost_race(name, version, alias, now_held, holder))
            if why:  # lost the race: undo, then refuse
                for a, holder in ((alias, previous), (f"previous-{alias}", before_previous)):
                    if holder is None:
                        store.retry(client.delete_registered_model_alias, name, a)
                    else:
                        store.retry(client.set_registered_model_alias, name, a, holder)
                raise PromotionRefused(why)
        tags = {
            f"promoted.{alias}.by": who,
            f"promoted.{alias}.at": now,
            f"promoted.{alias}.evidence_sha256": evidence_sha256,
            f"promoted.{alias}.evidence_env": evidence_env,
            f"promoted.{alias}.replaced": previous or "none",
            f"promoted.{alias}.approved_by": approved_by or "",
            # Stages are deprecated in MLflow 3; the name stays visible as a tag.
            "stage": alias,
        }
        if holder == version:  # the version it replaced when it first got the alias stays named
            del tags[f"promoted.{alias}.replaced"]
        for key, value in tags.items():
            store.retry(client.set_model_version_tag, name, version, key, value)
        if (client.get_model_version(name, version).tags or {}).get("archived") == "true":
            client.delete_model_version_tag(name, version, "archived")  # holding an alias again
        # In the lock: the history's moves of one alias are in the order they were made.
        record_move(
            settings, name, Move(alias, "promote", version, who, _now_us(), evidence_sha256, previous, approved_by)
        )
    return previous


def _lost_race(name: str, version: str, alias: str, holder: str | None, judged: Any) -> str:
    held = f"version {holder}" if holder else "nobody"
    then = f"version {judged}" if judged else "nobody"
    return (
        f"{name} version {version}: @{alias} is held by {held} now, not by {then} as when its gates ran: "
        "another promotion moved it since; gate the version again against the new holder"
    )


def _now_us() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def rollback_alias(settings: Settings, name: str, alias: str, who: str, forced: str | None = None) -> tuple[str, str]:
    """Swap `alias` and `previous-<alias>`: one command undoes the last promotion (in the
    alias's lock, as a promotion moves it). `forced`: why the restored version's evidence no
    longer allowed it there, recorded with the move."""
    from mlflow.exceptions import MlflowException

    client = store.connect(settings)
    with store.reachable(settings), store.alias_lock(settings, name, alias):
        try:
            current = str(client.get_model_version_by_alias(name, alias).version)
            previous = str(client.get_model_version_by_alias(name, f"previous-{alias}").version)
        except MlflowException:
            raise InputError(
                f"model registry: {name} has no @{alias} and @previous-{alias} to roll back between"
            ) from None
        client.set_registered_model_alias(name, alias, previous)
        client.set_registered_model_alias(name, f"previous-{alias}", current)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        client.set_model_version_tag(name, previous, f"rolled_back.{alias}.at", now)
        client.set_model_version_tag(name, previous, f"rolled_back.{alias}.by", who)
        client.set_model_version_tag(name, previous, "stage", alias)
        record_move(settings, name, Move(alias, "rollback", previous, who, _now_us(), None, current, forced=forced))
    return previous, current


def _held(registered_model) -> dict[str, tuple[str, ...]]:
    """version -> the aliases it holds, sorted."""
    return _held_by(registered_model.aliases or {})


def _held_by(aliases: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    held: dict[str, list[str]] = {}
    for alias, v in aliases.items():
        held.setdefault(str(v), []).append(alias)
    return {v: tuple(sorted(a)) for v, a in held.items()}


def _listed(settings: Settings, name: str) -> list[tuple[Any, tuple[str, ...]]]:
    """(MLflow version, its aliases) for every version, newest first."""
    client = store.connect(settings)
    with store.reachable(settings):
        found = client.search_model_versions(f"name = '{name}'")
        try:
            held = _held(client.get_registered_model(name))
        except Exception:
            held = {}
    out = sorted(found, key=lambda mv: int(mv.version), reverse=True)
    return [(mv, held.get(str(mv.version), ())) for mv in out]


def versions(settings: Settings, name: str) -> list[VersionInfo]:
    """All versions of a registered model, newest first, with their aliases and run metrics."""
    with sqlite_view.open_view(settings) as view:
        if view is not None:
            model = view.model(name)
            if model is None:
                return []
            return view.versions(name, _held_by(model[1]))
    client = store.connect(settings)
    out = []
    for mv, aliases in _listed(settings, name):
        metrics: dict[str, float] = {}
        try:
            metrics = dict(client.get_run(mv.run_id).data.metrics)
        except Exception:  # a version without a run, or a run since deleted: no figures
            pass
        out.append(
            VersionInfo(
                name=mv.name,
                version=str(mv.version),
                run_id=mv.run_id or None,
                aliases=aliases,
                tags=dict(mv.tags or {}),
                created=mv.creation_timestamp,
                metrics=metrics,
            )
        )
    return out


def alias_map(settings: Settings, name: str) -> dict[str, str]:
    """alias -> version for every alias of the registered model ({} when there is no such model)."""
    with sqlite_view.open_view(settings) as view:
        if view is not None:
            model = view.model(name)
            return _by_alias(_held_by(model[1])) if model else {}
    from mlflow.exceptions import MlflowException

    client = store.connect(settings)
    with store.reachable(settings):
        try:
            held = _held(client.get_registered_model(name))
        except MlflowException as e:
            if "RESOURCE_DOES_NOT_EXIST" in str(e.error_code):
                return {}
            raise
    return _by_alias(held)


def _by_alias(held: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {a: v for v, aliases in sorted(held.items(), key=lambda kv: -int(kv[0])) for a in aliases}


def archive_old_versions(settings: Settings, name: str) -> list[str]:
    """Tag versions beyond the newest `keep_versions` that hold no alias as archived."""
    client = store.connect(settings)
    archived = []
    for mv, aliases in _listed(settings, name)[settings.mlflow.keep_versions :]:
        if aliases or (mv.tags or {}).get("archived") == "true":
            continue
        client.set_model_version_tag(name, mv.version, "archived", "true")
        archived.append(str(mv.version))
    return archived


# ---------------------------------------------------------------- history: every alias move, in the registry


@dataclass(frozen=True, slots=True)
class Move:
    """One alias move the harness made, as recorded on the registered model."""

    alias: str
    action: str  # promote | rollback | found (by an audit: a move nobody recorded)
    version: str
    by: str
    at: str  # ISO 8601, UTC, microseconds
    evidence_sha256: str | None = None
    replaced: str | None = None  # the version that held the alias before
    approved_by: str | None = None  # who approved the evidence, where the environment requires approval
    forced: str | None = None  # a rollback with --force: why the restored version's evidence did not allow it


HISTORY = "history."  # registered-model tag prefix: history.<alias>.<UTC stamp>, one per move


def record_move(settings: Settings, name: str, move: Move) -> None:
    """Append `move` to the registered model's history (a tag of its own, never overwritten)."""
    client = store.connect(settings)
    with store.reachable(settings):
        store.retry(
            client.set_registered_model_tag, name, f"{HISTORY}{move.alias}.{tag_stamp(move.at)}", record_json(move)
        )


def history(settings: Settings, name: str) -> list[Move]:
    """Every recorded alias move of `name`, oldest first ([] when there is no such model)."""
    with sqlite_view.open_view(settings) as view:
        if view is not None:
            model = view.model(name)
            return tag_records(model[0], HISTORY, Move, name, "a history record") if model else []
    from mlflow.exceptions import MlflowException

    client = store.connect(settings)
    with store.reachable(settings):
        try:
            tags = dict(client.get_registered_model(name).tags or {})
        except MlflowException as e:
            if "RESOURCE_DOES_NOT_EXIST" in str(e.error_code):
                return []
            raise
    return tag_records(tags, HISTORY, Move, name, "a history record")

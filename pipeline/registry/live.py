"""What the live monitor did to an alias, on the record: a tag on the version and a history entry."""

from __future__ import annotations

import datetime as dt

from pipeline.config import Settings
from pipeline.registry import store
from pipeline.registry.alias import Move, _now_us, record_move


def record_live_decision(
    settings: Settings, name: str, alias: str, version: str, action: str, why: str, who: str, history: bool = True
) -> None:
    """Tag `version` with the monitor's `action` on `alias` and why (live.<alias>.<action>.at/why),
    and, with `history`, append it to the registered model's history (what `run-pipeline history`
    lists; a rollback is there already, from rollback_alias)."""
    client = store.connect(settings)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with store.reachable(settings):
        store.retry(client.set_model_version_tag, name, version, f"live.{alias}.{action}.at", now)
        store.retry(client.set_model_version_tag, name, version, f"live.{alias}.{action}.why", why[:4000])
    if history:
        record_move(settings, name, Move(alias, action, version, who, _now_us()))

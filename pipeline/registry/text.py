"""JSON text of figures and documents: what the registry stores and the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import InputError


def to_jsonable(obj: Any) -> Any:
    """JSON-safe copy of figures (numpy scalars, NaN and inf as strings)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if np.isfinite(f) else str(f)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=True)


def tag_records(tags: dict[str, str], prefix: str, cls: type, owner: str, what: str) -> list:
    """The records (a slotted dataclass `cls`) kept as JSON in the tags under `prefix`, oldest
    first by their `at`; a tag that is not one is bad registry state, named in one line."""
    out = []
    for key, value in tags.items():
        if not key.startswith(prefix):
            continue
        try:
            raw = json.loads(value)
            out.append(
                cls(
                    **{
                        k: (None if raw.get(k) is None else str(raw[k]))
                        for k in getattr(cls, "__slots__", ())
                        if k in raw
                    }
                )
            )
        except (ValueError, TypeError) as e:
            raise InputError(f"model registry: {owner} tag {key}: not {what} ({type(e).__name__})") from None
    return sorted(out, key=lambda r: r.at)


def record_json(record: Any) -> str:
    """A slotted dataclass record as the JSON text of its tag (tag_records reads it back)."""
    return json.dumps({k: getattr(record, k) for k in record.__slots__}, sort_keys=True)


def tag_stamp(at: str) -> str:
    """An ISO 8601 UTC time as a tag-key suffix: 2026-12-01T16:36:22.98+00:00 -> 20261201T163622.98Z."""
    return at.replace("-", "").replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")

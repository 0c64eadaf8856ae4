"""A caller of the live service (and of `mlflow models serve`): one request, MLflow's scoring payload."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def http(
    url: str,
    body: bytes | None = None,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    """GET (no body) or POST `url`; (status, body) for any HTTP answer, OSError when none came."""
    req = urllib.request.Request(
        url,
        data=body,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": content_type, **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def scoring_payload(frame) -> bytes:
    """Rows as MLflow's dataframe_split JSON (pandas writes missing values as null, read back as missing)."""
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()

"""A caller of the live service (and of `mlflow models serve`): one request or a persistent connection, MLflow's scoring payload."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from http.client import HTTPConnection, HTTPException


def http(
    url: str,
    body: bytes | None = None,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    """GET (no body) or POST `url`; (status, body) for any HTTP answer, OSError when none came
    (an answer cut off by a server that died writing it included)."""
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
    except HTTPException as e:  # IncompleteRead, BadStatusLine: no whole answer
        raise ConnectionError(f"{url}: {type(e).__name__}: {e}") from e


class Connection:
    """One persistent HTTP/1.1 connection to a server, as a router or a connection pool holds
    one: `post` as `http` posts, without a TCP handshake and urllib's opener per request (~1 ms
    of the caller's own time on loopback)."""

    def __init__(self, url: str, timeout: float = 30):
        from urllib.parse import urlsplit

        where = urlsplit(url)
        self.conn = HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=timeout)

    def post(
        self, path: str, body: bytes, *, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """(status, body) for any HTTP answer; OSError when none came, as `http`."""
        try:
            self.conn.request("POST", path, body=body, headers={"Content-Type": content_type, **(headers or {})})
            r = self.conn.getresponse()
            return r.status, r.read()
        except HTTPException as e:
            self.conn.close()
            raise ConnectionError(f"{path}: {type(e).__name__}: {e}") from e


def scoring_payload(frame) -> bytes:
    """Rows as MLflow's dataframe_split JSON (pandas writes missing values as null, read back as missing)."""
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()

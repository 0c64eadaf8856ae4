"""Signed evidence: Ed25519 signatures over evidence digests (the `cryptography` package).

A digest alone proves that evidence is unchanged since its tag was written, not who wrote
it: anyone with write access to the registry can write passing evidence and a matching
digest tag. A signature by a key only the gate runner holds (CI's secret) does. The
signature covers the evidence's SHA-256 digest, which covers the whole document (the
signer's key id included), and is stored beside it, never inside it.

Keys are PEM files; the private key may instead come from $PIPELINE_SIGNING_KEY (its PEM
text, as CI secrets are given). A key's text is never printed or logged; errors name the
file or the variable only.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.errors import InputError

KEY_ENV = "PIPELINE_SIGNING_KEY"
# What is signed: a prefix naming the kind of document, then its hex digest, so that a
# signature of one kind (evidence) can never be replayed as another (an approval).
_CONTEXTS = {"evidence": b"pipeline.evidence.sha256:", "approval": b"pipeline.approval.sha256:"}


@dataclass(frozen=True)
class Signature:
    key_id: str
    value: str  # base64 of the 64-byte Ed25519 signature


def key_id(public_key) -> str:
    """A public key's id: the first 16 hex digits of the SHA-256 of its raw 32 bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate(folder: Path, name: str) -> tuple[Path, Path, str]:
    """Write a new key pair: NAME.pem (private, mode 0600) and NAME.pub; never overwrites."""
    folder = Path(folder)
    private_path, public_path = folder / f"{name}.pem", folder / f"{name}.pub"
    for p in (private_path, public_path):
        if p.exists():
            raise InputError(f"{p}: already exists; keygen never overwrites a key (choose another --name or folder)")
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path, key_id(key.public_key())


def _private_from(pem: bytes, where: str):
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise InputError(f"{where}: not an unencrypted PEM private key ({type(e).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{where}: not an Ed25519 private key ({type(key).__name__})")
    return key


def load_private(path: Path | None):
    """The signing key: $PIPELINE_SIGNING_KEY's PEM text, else the file at `path`, else None."""
    text = os.environ.get(KEY_ENV)
    if text:
        return _private_from(text.encode(), f"${KEY_ENV}")
    if path is None:
        return None
    path = Path(path)
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: signing key unreadable ({e.strerror or e})") from None
    return _private_from(pem, str(path))


def load_public_keys(paths: list[Path]) -> dict[str, Any]:
    """The trusted public keys, by key id."""
    out: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except OSError as e:
            raise InputError(f"{path}: public key unreadable ({e.strerror or e})") from None
        except (ValueError, TypeError) as e:
            raise InputError(f"{path}: not a PEM public key ({type(e).__name__})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise InputError(f"{path}: not an Ed25519 public key ({type(key).__name__})")
        out[key_id(key)] = key
    return out


def sign(private_key, digest: str, kind: str = "evidence") -> Signature:
    """Sign the digest of a document of `kind` (evidence, approval)."""
    value = private_key.sign(_CONTEXTS[kind] + digest.encode())
    return Signature(key_id(private_key.public_key()), base64.b64encode(value).decode())


def verify(public_keys: dict[str, Any], digest: str, signature: Signature | None, kind: str = "evidence") -> str | None:
    """None when `signature` is a valid signature of `digest` (a document of `kind`) by a
    trusted key; else why not, worded to follow "the evidence is" ("the approval is")."""
    if signature is None or not signature.value:
        return f"unsigned, and signed {kind} is required (signing.public_keys)"
    key = public_keys.get(signature.key_id)
    if key is None:
        return f"signed by unknown key {signature.key_id} (trusted: {', '.join(sorted(public_keys)) or 'none'})"
    try:
        key.verify(base64.b64decode(signature.value, validate=True), _CONTEXTS[kind] + digest.encode())
    except (InvalidSignature, ValueError):
        return f"signed by key {signature.key_id}, but the signature does not match the {kind} (sha256 {digest[:12]})"
    return None

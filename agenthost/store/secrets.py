"""Sealing secrets at rest (layer 1): credential secrets are encrypted with the server key.

The key is a Fernet key (AES-128-CBC with HMAC-SHA256, from ``cryptography``): given by the
operator (``AGENTHOST_SECRET_KEY``) or generated at first start into ``<data_dir>/secret.key``
(mode 0600). Every process that shares a database must use the same key; a secret sealed
with another key cannot be opened, and the credential then fails as a bad token would.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken

from agenthost.schemas.common import JSON


class SecretUnreadable(Exception):
    """A sealed secret that this key cannot open (another server's key, or tampering)."""


class Sealer:
    """Encrypts and decrypts the secret part of credentials."""

    def __init__(self, key: bytes):
        self._fernet = Fernet(key)

    def seal(self, secret: JSON) -> str:
        return self._fernet.encrypt(orjson.dumps(secret)).decode()

    def open(self, sealed: str) -> JSON:
        try:
            return orjson.loads(self._fernet.decrypt(sealed.encode()))
        except (InvalidToken, ValueError) as exc:
            raise SecretUnreadable("the secret was sealed with another key") from exc


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``, made (0600, atomically, once even with racing processes) when missing."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(Fernet.generate_key() + b"\n")
    try:
        os.link(partial, path)  # fails when another process made the key first: use theirs
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return path.read_bytes().strip()


def check_key(key: bytes) -> bytes:
    """Refuse a malformed key at start, with the reason."""
    try:
        Fernet(key)
    except ValueError as exc:
        raise ValueError(f"AGENTHOST_SECRET_KEY is not a Fernet key (32 url-safe base64 bytes): {exc}") from None
    return key

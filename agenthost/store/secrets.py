"""Sealing secrets at rest (layer 1): credential secrets are encrypted with the server key.

The key is a Fernet key (AES-128-CBC with HMAC-SHA256, from ``cryptography``): given by the
operator (``AGENTHOST_SECRET_KEY``) or generated at first start into ``<data_dir>/secret.key``
(mode 0600). Every process that shares a database must use the same key; a secret sealed
with another key cannot be opened, and the credential then fails as a bad token would.

``cryptography`` is imported on first use: its OpenSSL bindings cost ~8 MiB that a server
without vaults never needs.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

import orjson

from agenthost.schemas.common import JSON


class SecretUnreadable(Exception):
    """A sealed secret that this key cannot open (another server's key, or tampering)."""


class Sealer:
    """Encrypts and decrypts the secret part of credentials."""

    def __init__(self, key: bytes):
        self._key = check_key(key)
        self._fernet: Any = None

    def _cipher(self) -> Any:
        if self._fernet is None:
            from cryptography.fernet import Fernet

            self._fernet = Fernet(self._key)
        return self._fernet

    def seal(self, secret: JSON) -> str:
        return str(self._cipher().encrypt(orjson.dumps(secret)).decode())

    def open(self, sealed: str) -> JSON:
        from cryptography.fernet import InvalidToken

        try:
            return orjson.loads(self._cipher().decrypt(sealed.encode()))
        except (InvalidToken, ValueError) as exc:
            raise SecretUnreadable("the secret was sealed with another key") from exc


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``, made (0600, atomically, once even with racing processes) when missing."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(base64.urlsafe_b64encode(os.urandom(32)) + b"\n")
    try:
        os.link(partial, path)  # fails when another process made the key first: use theirs
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return path.read_bytes().strip()


def check_key(key: bytes) -> bytes:
    """Refuse a malformed key at start, with the reason (a Fernet key is 32 bytes, url-safe base64)."""
    try:
        raw = base64.urlsafe_b64decode(key)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("AGENTHOST_SECRET_KEY is not a Fernet key (32 bytes, url-safe base64-encoded)")
    return key

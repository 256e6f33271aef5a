"""Prefixed, time-sortable public ids (layer 0).

An id is ``<prefix>_01`` followed by 24 Crockford base32 characters: a 48-bit
millisecond timestamp and 72 random bits. Within one process ids are strictly
increasing (the random part is incremented when the clock has not moved), so
ordering rows by id orders them by creation, which keyset pagination relies on.
"""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 72
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """Return a new id such as ``sesn_01J...``; ids of one process sort by creation."""
    global _last_ms, _last_rand
    with _lock:
        now = time.time_ns() // 1_000_000
        if now <= _last_ms:
            now = _last_ms
            _last_rand = (_last_rand + 1) % (1 << _RANDOM_BITS)
        else:
            _last_ms = now
            _last_rand = secrets.randbits(_RANDOM_BITS - 8)  # headroom for increments
        body = (now << _RANDOM_BITS) | _last_rand
    return f"{prefix}_01{_encode(body, 24)}"

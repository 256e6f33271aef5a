"""JSON request bodies, parsed once and checked whole for what the stores cannot hold (layer 4).

Python's ``json`` decodes ``"\\ud800"`` to a lone surrogate, which neither SQLite's UTF-8 nor
PostgreSQL can store, and ``"\\u0000"`` to a NUL, which PostgreSQL refuses in text and
``jsonb``. Every route's JSON body passes through :class:`CheckedRequest`, so such a string
anywhere in any body, as a value or an object key, is a 400 naming its field before a route
runs. Only bodies whose bytes contain such an escape are walked; the rest pay one scan.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from agenthost.schemas.common import find_unstorable

# A NUL or a UTF-16 surrogate escape (\uD800-\uDFFF), either case: the only ways JSON text spells them.
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def checked_json(body: bytes, nul_fields: frozenset[str] = frozenset()) -> Any:
    """Decode a JSON body; 400 (a Starlette ``HTTPException``, which FastAPI passes through) for unstorable text.

    A body must be UTF-8 (RFC 8259). Malformed JSON raises ``json.JSONDecodeError``, as FastAPI expects of
    ``Request.json``.
    """
    try:
        text = body.decode()  # strictly: json.loads(bytes) would let UTF-8-encoded surrogates through
    except UnicodeDecodeError:
        raise HTTPException(400, "body: not valid UTF-8") from None
    value = json.loads(text)
    if _SUSPECT.search(body) is not None:
        found = find_unstorable(value, nul_fields=nul_fields)
        if found is not None:
            raise HTTPException(400, f"{found[0]}: {found[1]}")
    return value


class CheckedRequest(Request):
    """A request whose ``json()`` is :func:`checked_json`."""

    nul_fields: frozenset[str] = frozenset()

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = checked_json(await self.body(), self.nul_fields)
        return self._json


class CheckedRoute(APIRoute):
    """The route class of every router: handlers see a :class:`CheckedRequest`.

    A subclass names in ``nul_fields`` the body fields its routes store as bytes, where NUL is text like any other.
    """

    nul_fields: frozenset[str] = frozenset()

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        nul_fields = self.nul_fields

        async def checked(request: Request) -> Response:
            checked_request = CheckedRequest(request.scope, request.receive)
            checked_request.nul_fields = nul_fields
            return await handler(checked_request)

        return checked

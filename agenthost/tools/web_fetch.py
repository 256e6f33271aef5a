"""The ``web_fetch`` tool: fetch a URL for the model, from the server (layer 2).

The agent's ``allowed_domains`` / ``blocked_domains`` decide which hosts are reachable
(a domain covers its subdomains); a URL outside them is an error result naming
``url_not_allowed``. Whatever the lists say, a host that resolves to a loopback,
private, link-local or otherwise non-public address is refused, so an agent cannot use
the server to reach its own API or the operator's internal services; operators can name
hosts exempt from that rule (``web_fetch_private_hosts``). Redirects are followed by
hand, up to five, each hop checked again.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx2

from agenthost.sandbox.addresses import AddressRefused, public_addresses
from agenthost.tools.base import ToolInputError, ToolOutput

SCHEMA = {
    "type": "object",
    "properties": {"url": {"type": "string", "description": "The http(s) URL to fetch."}},
    "required": ["url"],
}
DESCRIPTION = "Fetch a web page or text document by URL and return its text."
DEFAULT_MAX_CHARS = 100_000
MAX_REDIRECTS = 5
_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.S | re.I)
_SPACE = re.compile(r"[ \t\r\f\v]+")
_LINES = re.compile(r"\n\s*\n+")


class NotAllowed(Exception):
    """The URL may not be fetched; the message says why and starts with ``url_not_allowed``."""


def covered(host: str, domains: list[str]) -> bool:
    """Whether ``host`` is one of ``domains`` or a subdomain of one."""
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def check_url(url: str, config: dict[str, Any]) -> str:
    """The URL's host when the domain lists allow it; NotAllowed otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotAllowed(f"url_not_allowed: {url} is not an http(s) URL")
    host = parts.hostname.lower().rstrip(".")
    allowed, blocked = config.get("allowed_domains"), config.get("blocked_domains")
    if allowed is not None and not covered(host, allowed):
        raise NotAllowed(f"url_not_allowed: {host} is not in this agent's allowed_domains")
    if blocked is not None and covered(host, blocked):
        raise NotAllowed(f"url_not_allowed: {host} is in this agent's blocked_domains")
    return host


async def check_address(host: str, port: int, private_hosts: frozenset[str]) -> None:
    """Refuse hosts that resolve to anything but public addresses (checked after DNS)."""
    try:
        await public_addresses(host, port, private_hosts)
    except AddressRefused as exc:
        raise NotAllowed(f"url_not_allowed: {exc}") from None


def _text(body: str, content_type: str) -> str:
    if "html" in content_type:
        body = html.unescape(_TAGS.sub(" ", body))
        body = _LINES.sub("\n\n", _SPACE.sub(" ", body))
    return body.strip()


async def run(tool_input: dict[str, Any], config: dict[str, Any], private_hosts: frozenset[str]) -> ToolOutput:
    url = tool_input.get("url")
    if not isinstance(url, str) or not url:
        raise ToolInputError("`url` is required")
    max_tokens = config.get("max_content_tokens")
    limit = max_tokens * 4 if max_tokens else DEFAULT_MAX_CHARS  # ~4 characters a token
    try:
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                host = check_url(url, config)
                port = urlsplit(url).port or (443 if url.startswith("https") else 80)
                await check_address(host, port, private_hosts)
                response = await client.get(url, headers={"user-agent": "agenthost-web-fetch"})
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                break
            else:
                return ToolOutput.text(f"Too many redirects fetching {url}.", is_error=True)
    except NotAllowed as exc:
        return ToolOutput.text(str(exc), is_error=True)
    except httpx2.HTTPError as exc:
        return ToolOutput.text(f"Fetching {url} failed: {type(exc).__name__}: {exc}", is_error=True)
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (content_type.startswith("text/") or content_type in ("application/json", "application/xml", "")):
        return ToolOutput.text(f"{url} returned {content_type}, which web_fetch cannot read as text.", is_error=True)
    text = _text(response.text, content_type)
    truncated = len(text) > limit
    header = f"Fetched {url} (HTTP {response.status_code}, {content_type or 'unknown type'})"
    if truncated:
        header += f"; showing the first {limit} of {len(text)} characters"
    return ToolOutput.text(f"{header}\n\n{text[:limit]}", is_error=response.status_code >= 400)

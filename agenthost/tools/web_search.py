"""The ``web_search`` tool: search the web through the operator's search service (layer 2).

agenthost keeps data on the operator's machines, so it has no search engine of its own: an
operator names a SearXNG-compatible JSON endpoint (``web_search_url``; agenthost asks
``GET <url>?q=<query>&format=json`` and reads ``results[].title/url/content``). Without one
the tool is not offered to the model. The agent's ``allowed_domains`` / ``blocked_domains``
filter the results (a domain covers its subdomains), as they do for ``web_fetch``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx2

from agenthost.tools.base import ToolInputError, ToolOutput
from agenthost.tools.web_fetch import covered

SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to search the web for."}},
    "required": ["query"],
}
DESCRIPTION = "Search the web; returns titles, URLs and snippets of the best results."
MAX_RESULTS = 10
TIMEOUT_SECONDS = 20.0


def _wanted(url: str, config: dict[str, Any]) -> bool:
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    allowed, blocked = config.get("allowed_domains"), config.get("blocked_domains")
    if not host or (allowed is not None and not covered(host, allowed)):
        return False
    return not (blocked is not None and covered(host, blocked))


async def run(tool_input: dict[str, Any], config: dict[str, Any], search_url: str) -> ToolOutput:
    query = tool_input.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ToolInputError("`query` is required")
    try:
        async with httpx2.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            response = await client.get(
                search_url, params={"q": query, "format": "json"}, headers={"user-agent": "agenthost-web-search"}
            )
        response.raise_for_status()
        results = response.json().get("results")
    except (httpx2.HTTPError, ValueError, AttributeError) as exc:
        return ToolOutput.text(f"The search service failed: {type(exc).__name__}: {exc}", is_error=True)
    if not isinstance(results, list):
        return ToolOutput.text("The search service answered without a `results` list.", is_error=True)
    kept = [
        result
        for result in results
        if isinstance(result, dict) and isinstance(result.get("url"), str) and _wanted(result["url"], config)
    ][:MAX_RESULTS]
    if not kept:
        return ToolOutput.text(f"No results for {query!r}.")
    lines = [f"Results for {query!r}:"]
    for number, result in enumerate(kept, 1):
        lines.append(f"\n{number}. {result.get('title') or result['url']}\n   {result['url']}")
        if result.get("content"):
            lines.append(f"   {str(result['content']).strip()}")
    return ToolOutput.text("\n".join(lines))

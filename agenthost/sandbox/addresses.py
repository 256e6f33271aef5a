"""Which network addresses agents may reach (layer 1).

Whatever an environment or agent allows, a destination that resolves to a loopback,
private, link-local (cloud metadata), multicast or otherwise non-global address is
refused after DNS resolution, so an agent can reach neither agenthost's own API nor
other services of the operator's network. Operators name the exceptions.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Container


class AddressRefused(Exception):
    """The host does not resolve, or resolves to an address agents may not reach."""


async def public_addresses(host: str, port: int, exempt: Container[str] = ()) -> list[str]:
    """The host's addresses, all of them public (or the host is exempt); AddressRefused otherwise."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AddressRefused(f"{host} does not resolve ({exc.strerror})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if host not in exempt:
        for address in addresses:
            parsed = ipaddress.ip_address(address)
            if not parsed.is_global or parsed.is_multicast:
                raise AddressRefused(f"{host} resolves to the non-public address {address}")
    return addresses

"""Who is asking: the client key of a request.

The key is the socket peer's address, or, when ``ip_header`` is set, the address a proxy
put in that header. Header values are attacker-controlled text: they are parsed as IP
addresses and turned into one canonical form, and anything that does not parse falls
back to the socket peer, so a malformed header can neither crash a request nor pick an
arbitrary key.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Optional

from werkzeug.datastructures import Headers

__all__ = ["canonical_ip", "client_key"]

_MAX_ADDRESS_LENGTH = 64
"""Longer than any IPv6 text with a zone id: longer values are rejected before parsing."""


@lru_cache(maxsize=4096)
def canonical_ip(text: str) -> Optional[str]:
    """``text`` as a canonical IP address, or None when it is not one.

    Accepts what proxies write: surrounding spaces and quotes, ``1.2.3.4:5678``,
    ``[::1]:80``, IPv6 zone ids (dropped) and IPv4-mapped IPv6 (turned into IPv4).
    """
    text = text.strip().strip('"')
    if not text or len(text) > _MAX_ADDRESS_LENGTH:
        return None
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def client_key(headers: Headers, remote_addr: Optional[str], ip_header: Optional[str]) -> str:
    """The key a request is counted under.

    With ``ip_header``, the header's right-most address (the one the nearest proxy
    appended) when it parses; otherwise the socket peer.
    """
    if ip_header is not None:
        value = headers.get(ip_header)
        if value:
            address = canonical_ip(value.rpartition(",")[2])
            if address is not None:
                return address
    return remote_addr or "unknown"

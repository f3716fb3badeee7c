"""Who is asking: the client key of a request, which a spoofed header cannot choose.

The threat: any client can send ``X-Forwarded-For: <anything>``. A limiter that believes
it lets an attacker pick a fresh identity per request (flask-gatekeeper 1.0 took the
header verbatim: 20 made-up values were 20 fresh clients). So a header is believed only
as far as the proxies in front of the app are trusted, the way werkzeug's ``ProxyFix``
and nginx's ``real_ip_recursive`` do it:

- ``trusted_proxies=N`` (hop count): the client is the N-th address from the right,
  the one the outermost of our N proxies saw; a header with fewer than N values is
  ignored.
- ``trusted_proxies=[IPs/CIDRs]``: the header is believed only when the socket peer is
  one of them, and the client is the right-most address that is not a trusted proxy.
- neither: the seed's behaviour, the header's right-most value (``init_app`` warns).

Whatever is chosen is parsed as an IP address (``addresses.parse_address``); anything
that does not parse falls back to the socket peer, never to a value the client chose.

Network bans: given the prefix lengths that banned networks use now (the storage's
registry), a client's networks of those lengths are named beside it, so that their bans
refuse its request in the same storage call.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import NamedTuple, Optional, Union

from werkzeug.datastructures import Headers

from ..errors import UnsafeBanError
from ..request import KeyFunc
from .addresses import (
    NO_LENGTHS,
    Address,
    AddressSet,
    Network,
    NetworkLengths,
    client_length,
    network_keys,
    network_of,
    parse_address,
)
from .keys import KeyHasher, client_key, key_of

__all__ = ["Client", "Identifier", "KeyFunc"]

_FORWARDED = "forwarded"
_NO_PEER = "unknown"

logger = logging.getLogger("flask_gatekeeper")


WIDEST_BAN = {4: 8, 6: 32}
"""The widest network (prefix length per IP version) banned without ``force=True``."""


class Client(NamedTuple):
    """Who a request comes from, as ``Identifier.identify`` found it."""

    key: Optional[str]
    """The key the request counts under; None when ``key_func`` leaves it alone."""
    denied: bool
    """The deny list refuses it outright."""
    also: tuple[str, ...]
    """The other clients whose bans refuse the request too: the address behind a
    ``key_func`` key (first), then the address's networks of the banned lengths."""


_NOBODY: tuple[str, ...] = ()


ByVersion = dict[int, tuple[int, ...]]


def _forwarded_for(element: str) -> str:
    """The ``for=`` value of one RFC 7239 ``Forwarded`` element (quotes kept for the parser)."""
    for pair in element.split(";"):
        name, _, value = pair.partition("=")
        if name.strip().lower() == "for":
            return value
    return ""


class Identifier:
    """Turns one app's requests into client keys, with its trust and list settings."""

    def __init__(
        self,
        *,
        ip_header: Optional[str],
        trusted_proxies: Union[int, AddressSet, None],
        ipv6_prefix: int,
        allowlist: AddressSet,
        denylist: AddressSet,
        key_func: Optional[KeyFunc],
        hash_keys: Optional[KeyHasher] = None,
    ) -> None:
        self.ip_header = ip_header
        self.trusted_proxies = trusted_proxies
        self.ipv6_prefix = ipv6_prefix
        self.allowlist = allowlist
        self.denylist = denylist
        self.key_func = key_func
        self.hasher = hash_keys
        """Hashes ``key_func`` and rule keys (``hash_keys``); None keeps them in clear."""
        self._forwarded = ip_header is not None and ip_header.lower() == _FORWARDED
        self._peer_is_key = ip_header is None and not allowlist and not denylist
        self._warned_no_peer = False
        self._lengths: tuple[NetworkLengths, ByVersion] = (NO_LENGTHS, {4: (), 6: ()})

    def client_address(self, headers: Headers, remote_addr: Optional[str]) -> Optional[Address]:
        """The client's address: from the header as far as it is trusted, else the peer."""
        peer = parse_address(remote_addr, self.ipv6_prefix) if remote_addr else None
        value = headers.get(self.ip_header) if self.ip_header is not None else None
        if not value:
            return peer
        trust = self.trusted_proxies
        if isinstance(trust, AddressSet):
            return self._right_most_untrusted(value, trust, peer)
        hops = 1 if trust is None else trust
        if hops == 0:
            return peer
        values = value.rsplit(",", hops)
        if len(values) < hops:
            return peer
        return self._parse(values[-hops]) or peer

    def _right_most_untrusted(
        self, value: str, trust: AddressSet, peer: Optional[Address]
    ) -> Optional[Address]:
        if peer is None or peer not in trust:
            return peer
        candidate = peer
        for text in reversed(value.split(",")):
            address = self._parse(text)
            if address is None:
                return peer
            candidate = address
            if address not in trust:
                break
        return candidate

    def _parse(self, text: str) -> Optional[Address]:
        if self._forwarded:
            text = _forwarded_for(text)
        return parse_address(text, self.ipv6_prefix)

    def peer_key(
        self,
        remote_addr: Optional[str],
        key_func: Optional[KeyFunc] = None,
        lengths: NetworkLengths = NO_LENGTHS,
    ) -> Optional[str]:
        """The common case, answered without parsing: the client's key when it is the
        socket peer's IPv4 address as the server wrote it (not the client), with no list,
        header, ``key_func`` or banned IPv4 network to look at; None otherwise (ask
        ``identify``). ``identify`` answers ``Client(key, False, ())`` for it."""
        if (
            self._peer_is_key
            and remote_addr
            and ":" not in remote_addr
            and (key_func or self.key_func) is None
            and not (lengths and self._by_version(lengths)[4])
        ):
            return remote_addr
        return None

    def identify(
        self,
        headers: Headers,
        remote_addr: Optional[str],
        key_func: Optional[KeyFunc] = None,
        lengths: NetworkLengths = NO_LENGTHS,
    ) -> Optional[Client]:
        """The client of a request, or None when nothing applies to it (the allow list).
        ``key_func`` overrides the app's own; when it returns None the request is not
        counted, but the ban of its address still applies. ``lengths``: the prefix
        lengths of the networks banned now, whose bans refuse the request too."""
        key = self.peer_key(remote_addr, key_func, lengths)
        if key is not None:
            return Client(key, False, _NOBODY)
        key_func = key_func or self.key_func
        by_version = self._by_version(lengths) if lengths else None
        address = self.client_address(headers, remote_addr)
        networks = _NOBODY
        if address is not None:
            if self.allowlist and address in self.allowlist:
                return None
            if self.denylist and address in self.denylist:
                return Client(address.key, True, _NOBODY)
            if by_version:
                networks = network_keys(address, by_version[address.version])
        if key_func is not None:
            key = key_func()
            if key is None:
                return Client(None, False, _NOBODY if address is None else (address.key, *networks))
            if not isinstance(key, str):
                raise TypeError(f"key_func must return a str or None, got {key!r}")
            if address is not None and key == address.key:
                # gk.client_ip(): the fallback to the address is the address itself
                return Client(key, False, networks)
            key = key_of(key, self.hasher)
            if address is not None and address.key != key:
                # its address and networks stay banned behind the key
                return Client(key, False, (address.key, *networks))
        elif address is not None:
            key = address.key
        else:  # no socket peer at all (e.g. a server on a Unix socket): one shared key
            key = remote_addr or _NO_PEER
            if not self._warned_no_peer:
                self._warned_no_peer = True
                logger.warning(
                    "a request came with no client address (REMOTE_ADDR %r), so every such "
                    "request shares the key %r: behind a proxy on a Unix socket, set "
                    "ip_header and trusted_proxies to the number of proxies",
                    remote_addr,
                    key,
                )
        return Client(key, False, networks)

    def _by_version(self, lengths: NetworkLengths) -> ByVersion:
        """``lengths`` wider than one client, by IP version; the last answer is kept, as
        a storage answers with the same set until it changes."""
        seen, by_version = self._lengths
        if seen is not lengths:
            by_version = {
                version: tuple(
                    sorted(
                        length
                        for of, length in lengths
                        if of == version and length < client_length(version, self.ipv6_prefix)
                    )
                )
                for version in (4, 6)
            }
            self._lengths = (lengths, by_version)
        return by_version

    def is_network(self, key: str) -> bool:
        """Whether ``key`` names a network of several clients (not one client's key)."""
        network = network_of(key)
        return network is not None and network[1] < client_length(network[0], self.ipv6_prefix)

    def allowed(self, client: str) -> bool:
        """Whether ``client``, named by the app, is an allow-listed address."""
        address = parse_address(client, self.ipv6_prefix)
        return address is not None and address in self.allowlist

    def key_for(self, client: str, *, strict: bool = True) -> str:
        """The key of a client named by the app or an operator (``keys.client_key``)."""
        return client_key(client, self.ipv6_prefix, strict=strict, hasher=self.hasher)

    def ban_key(self, client: str, force: bool = False) -> str:
        """The key of a client to ban (``key_for``). Without ``force``, a network is
        refused (``UnsafeBanError``) when it is wider than ``WIDEST_BAN`` or holds a
        trusted proxy or an allow-listed address: a slip such as ``0.0.0.0/0`` would shut
        out every client, the operator's own included."""
        key = self.key_for(client)
        if not force and self.is_network(key):
            problem = self._ban_problem(ipaddress.ip_network(key))
            if problem is not None:
                raise UnsafeBanError(
                    f"ban({client!r}): {key} {problem}; if that is what you mean, give "
                    "force=True (flask gatekeeper ban --force)"
                )
        return key

    def _ban_problem(self, network: Network) -> Optional[str]:
        widest = WIDEST_BAN[network.version]
        if network.prefixlen < widest:
            return (
                f"is wider than /{widest}: its ban would refuse "
                f"2^{network.max_prefixlen - network.prefixlen} addresses"
            )
        proxies = self.trusted_proxies
        if isinstance(proxies, AddressSet) and proxies.overlaps(network):
            return (
                "holds a trusted proxy (trusted_proxies): its ban would also refuse every "
                "request the proxy sends without a client address in ip_header"
            )
        if self.allowlist.overlaps(network):
            return (
                "holds allow-listed addresses (allowlist), which no ban refuses: its ban "
                "would not refuse all it names"
            )
        return None

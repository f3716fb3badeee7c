"""IP address text from the network, parsed once, and sets of networks looked up in O(1).

Pure helpers for ``identify``: nothing here knows about Flask or requests.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple, Optional, Union

from .errors import ConfigError, ConfigTypeError

__all__ = ["Address", "AddressSet", "parse_address", "parse_address_list"]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_MAX_ADDRESS_TEXT = 64
"""Longer than any address a proxy writes (IPv6, brackets, port, zone): longer is garbage."""


class Address(NamedTuple):
    """A parsed client address: the key it is counted under, its IP version and value."""

    key: str
    version: int
    number: int


def parse_address(text: str, ipv6_prefix: int = 128) -> Optional[Address]:
    """``text`` as an address, or None when it is not one.

    Accepts what proxies and servers write: spaces, quotes, ``1.2.3.4:5678``,
    ``[::1]:80``, IPv6 zone ids (dropped), IPv4-mapped IPv6 (turned into IPv4). An IPv6
    address is keyed by its ``/ipv6_prefix`` network, so one host rotating through its
    /64 stays one client.

    A canonical IPv4 address, the common case, takes a constant-time path; anything
    else is parsed once and cached, so a flood of distinct addresses costs no more per
    request than one client does.
    """
    if len(text) > _MAX_ADDRESS_TEXT * 2:  # garbage, and not worth a cache entry
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):  # not IPv4 text, or a NUL or non-ASCII character
        return _parse_any(text, ipv6_prefix)
    if socket.inet_ntop(socket.AF_INET, packed) != text:
        return _parse_any(text, ipv6_prefix)
    return Address(text, 4, int.from_bytes(packed, "big"))


@lru_cache(maxsize=8192)
def _parse_any(text: str, ipv6_prefix: int) -> Optional[Address]:
    text = text.strip().strip('"')
    if not text or len(text) > _MAX_ADDRESS_TEXT or not text.isascii():
        return None
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    text = text.partition("%")[0]
    try:
        ip: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address) or ipv6_prefix == 128:
        return Address(str(ip), ip.version, int(ip))
    network = ipaddress.IPv6Network(
        (int(ip) >> (128 - ipv6_prefix) << (128 - ipv6_prefix), ipv6_prefix)
    )
    return Address(str(network), 6, int(ip))


def parse_address_list(
    value: object, name: str
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """IPs and CIDRs from a list or a comma-separated string; errors name ``name``."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise ConfigTypeError(f"{name}: expected a list of IP addresses or networks, got {value!r}")
    networks = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigTypeError(f"{name}: expected an IP address or network, got {item!r}")
        try:
            networks.append(ipaddress.ip_network(item.strip()))
        except ValueError as exc:
            raise ConfigError(f"{name}: {item!r} is not an IP address or network ({exc})") from None
    return networks


class AddressSet:
    """IPs and networks; membership costs one hash lookup per prefix length in use.

    A list of ten thousand /32s costs the same single lookup as one /32: networks are
    stored as integers in one set per prefix length.
    """

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        tables: dict[tuple[int, int], set[int]] = {}
        for network in networks:
            if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
                mapped = network.network_address.ipv4_mapped
                network = ipaddress.IPv4Network((mapped, max(0, network.prefixlen - 96)))
            shift = network.max_prefixlen - network.prefixlen
            tables.setdefault((network.version, shift), set()).add(
                int(network.network_address) >> shift
            )
        self._tables = {
            version: [(shift, nets) for (v, shift), nets in sorted(tables.items()) if v == version]
            for version in (4, 6)
        }
        self._size = sum(len(nets) for nets in tables.values())

    def __bool__(self) -> bool:
        return self._size > 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, Address):
            return False
        number = address.number
        return any((number >> shift) in nets for shift, nets in self._tables[address.version])


def wider_network(key: str, ipv4_prefix: int, ipv6_prefix: int) -> Optional[str]:
    """The key of the network of ``ipv4_prefix`` (IPv4) or ``ipv6_prefix`` (IPv6) bits
    that holds the client keyed ``key`` (an address, or an IPv6 client's network); None
    for any other key, and for a network that is that wide already."""
    try:
        network = ipaddress.ip_network(key)
    except ValueError:
        return None
    length = ipv4_prefix if network.version == 4 else ipv6_prefix
    if network.prefixlen <= length or key not in (str(network), str(network.network_address)):
        return None
    return str(network.supernet(new_prefix=length))

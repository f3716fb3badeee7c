"""IP address text from the network, parsed once, and sets of networks looked up in O(1);
networks as client keys (the text of a network ban) and the networks of an address.

Pure helpers for ``proxies``, ``keys`` and the storages: nothing here knows about Flask
or requests.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import string
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional, Union

from ..errors import ConfigError, ConfigTypeError

__all__ = [
    "EVERY_LENGTH",
    "NO_LENGTHS",
    "Address",
    "AddressSet",
    "ListedLine",
    "NetworkLengths",
    "address_lines",
    "client_length",
    "network_key",
    "network_keys",
    "network_of",
    "network_problem",
    "parse_address",
    "parse_address_list",
    "read_address_file",
    "written_as_address",
]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_MAX_ADDRESS_TEXT = 64
"""Longer than any address a proxy writes (IPv6, brackets, port, zone): longer is garbage."""


NetworkLengths = frozenset[tuple[int, int]]
"""(IP version, prefix length) pairs: the lengths of the networks banned now."""

NO_LENGTHS: NetworkLengths = frozenset()

EVERY_LENGTH: NetworkLengths = frozenset(
    [(4, length) for length in range(33)] + [(6, length) for length in range(129)]
)
"""Every length of both versions: what a storage answers when it does not know which are
in use (a request then looks up its networks of every length wider than a client)."""


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


_NETWORK_TEXT = frozenset(string.hexdigits + ".:/" + string.whitespace)
"""Every character a network's text may hold (CIDR, or an address and a netmask)."""


def client_length(version: int, ipv6_prefix: int) -> int:
    """The prefix length of one client: 32 for IPv4, ``ipv6_prefix`` for IPv6."""
    return 32 if version == 4 else ipv6_prefix


def network_key(text: str, ipv6_prefix: int = 128) -> Optional[str]:
    """The client key of ``text`` read as a network, or None when it is not one.

    The key is the normalised CIDR (``203.0.113.7/24`` is ``203.0.113.0/24``; an
    IPv4-mapped IPv6 network is the IPv4 network). A network that holds one client at
    most, an IPv4 /32 or an IPv6 network at least as long as ``ipv6_prefix``, is keyed as
    that client (its address's key: ``2001:db8::/96`` is ``2001:db8::/64``): the library
    counts and bans that client as one, so a ban cannot be narrower.
    """
    if "/" not in text or len(text) > _MAX_ADDRESS_TEXT * 2 or not _NETWORK_TEXT.issuperset(text):
        return None  # most text, at no cost: not worth parsing, nor a cache entry
    return _network_key(text, ipv6_prefix)


@lru_cache(maxsize=1024)
def _network_key(text: str, ipv6_prefix: int) -> Optional[str]:
    try:
        network: Network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    if network.prefixlen >= client_length(network.version, ipv6_prefix):
        address = parse_address(str(network.network_address), ipv6_prefix)
        assert address is not None  # the text of an address
        return address.key
    return str(network)


_WRITTEN_AS_ADDRESS = re.compile(
    r"""
    [\s"]*                                         # spaces and quotes, as parse_address
    (?: \d+ (?: \.\d+ ){3,} (?: :\d+ )?           # IPv4: four numbers or more, maybe a port
      | \d+ (?: \.\d+ )+ (?= \s*/ )               # or fewer, before a prefix
      | \[? [0-9a-f.]* : [0-9a-f.]* : [0-9a-f:.]*   # IPv6: hex digits, two colons at least
        (?: \] (?: :\d+ )? )?
    )
    (?: \s*/ [-\s0-9./]* )?                       # a prefix length or a netmask
    [\s"]*
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)


def written_as_address(text: str) -> bool:
    """Whether ``text`` is written as an IP address or a network, right or wrong: numbers
    and dots (four numbers at least, or fewer before a ``/prefix``), or hex digits and two
    colons at least, each maybe with a ``/prefix``. Keys such as ``user:42``, ``42``, a
    UUID or an API key are not: one colon, no dots, or a letter past ``f``."""
    return _WRITTEN_AS_ADDRESS.fullmatch(text) is not None


def network_problem(text: str, strict: bool = False) -> str:
    """Why ``text`` is not an IP address or network (with ``strict``: not one without host
    bits), in the words of ``ipaddress`` for the IP version it is written as; its message
    for either version ("does not appear to be an IPv4 or IPv6 network") says nothing."""
    text = text.strip().strip('"')
    written_as_ipv6 = text.count(":") >= 2 or text.startswith("[")
    kind = ipaddress.IPv6Network if written_as_ipv6 else ipaddress.IPv4Network
    try:
        kind(text, strict=strict)
    except ValueError as exc:
        if strict and "host bits" in str(exc):
            return f"{exc}: the network is {kind(text, strict=False)}"
        return str(exc)
    return "not an IP address or network"


_FAMILIES = {4: (socket.AF_INET, 32), 6: (socket.AF_INET6, 128)}


def _written_key(key: str) -> Optional[tuple[int, int, int]]:
    """The IP version, number and prefix length of ``key`` when it is an address or a
    network written as ``ipaddress`` writes it ("10.1.2.3", "2001:db8:1:2::/64"), read
    with ``socket`` alone: a tenth of ``ipaddress``'s cost, paid for each new client of
    a subnet ban rule (``Gate._ban_steps``). None for any other key, and for forms the
    two write apart (an IPv6 text with an IPv4 tail): ``ipaddress`` decides those."""
    text, slash, length_text = key.partition("/")
    version = 6 if ":" in text else 4
    family, bits = _FAMILIES[version]
    try:
        packed = socket.inet_pton(family, text)
    except (OSError, ValueError):
        return None
    if (version == 6 and "." in text) or socket.inet_ntop(family, packed) != text:
        return None
    length = bits
    if slash:
        if not (length_text.isascii() and length_text.isdigit()):
            return None
        length = int(length_text)
        if length > bits or str(length) != length_text:
            return None
    number = int.from_bytes(packed, "big")
    if number & ((1 << (bits - length)) - 1):  # host bits: not a network's key
        return None
    return version, number, length


def network_of(key: str) -> Optional[tuple[int, int]]:
    """The IP version and prefix length of a key that is a network's normalised CIDR
    (as ``network_key`` writes it, an IPv6 client's /64 key included), else None."""
    if "/" not in key:
        return None
    written = _written_key(key)
    if written is not None:
        return written[0], written[2]
    try:
        network = ipaddress.ip_network(key)
    except ValueError:
        return None
    return (network.version, network.prefixlen) if str(network) == key else None


@lru_cache(maxsize=8192)
def _ipv6_network_text(number: int, length: int) -> str:
    return str(ipaddress.IPv6Network((number, length)))


def network_keys(address: Address, lengths: Sequence[int]) -> tuple[str, ...]:
    """The keys of the networks of ``lengths`` that hold ``address``, as ``network_key``
    writes them (each length shorter than one client's)."""
    number = address.number
    if address.version == 4:
        return tuple(
            f"{socket.inet_ntoa(((number >> (32 - length)) << (32 - length)).to_bytes(4, 'big'))}"
            f"/{length}"
            for length in lengths
        )
    return tuple(
        _ipv6_network_text((number >> (128 - length)) << (128 - length), length)
        for length in lengths
    )


def parse_address_list(value: object, name: str) -> list[Network]:
    """IPs and CIDRs from a list or a comma-separated string; errors name ``name``."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise ConfigTypeError(f"{name}: expected a list of IP addresses or networks, got {value!r}")
    networks = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigTypeError(f"{name}: expected an IP address or network, got {item!r}")
        networks.append(_listed_network(item, name))
    return networks


def _listed_network(text: str, where: str) -> Network:
    """One entry of an address list, or a ``ConfigError`` saying where it is and why."""
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError:
        problem = network_problem(text, strict=True)
        raise ConfigError(
            f"{where}: {text!r} is not an IP address or network ({problem})"
        ) from None


class ListedLine(NamedTuple):
    """An entry of a block list file: its line number (from 1) and its text."""

    number: int
    text: str


_COMMENT = re.compile(r"[;#].*")


def address_lines(text: str) -> list[ListedLine]:
    """The entries of a block list, one address or network per line: ``;`` and ``#`` start
    a comment (a Spamhaus DROP line reads ``1.10.16.0/20 ; SBL256894``, FireHOL's comments
    start with ``#``), blank lines are skipped. The one reader of that format, for the
    ``denylist`` option and ``flask gatekeeper ban --file``."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = _COMMENT.sub("", line).strip()
        if entry:
            entries.append(ListedLine(number, entry))
    return entries


def read_address_file(path: Path, name: str) -> list[Network]:
    """The networks of a block list file, read once; an unreadable file, or a line that is
    not an address or network, fails naming ``name``, the file and the line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read the block list {str(path)!r}: {exc}") from None
    return [
        _listed_network(entry.text, f"{name}: {str(path)!r}, line {entry.number}")
        for entry in address_lines(text)
    ]


class AddressSet:
    """IPs and networks; membership costs one hash lookup per prefix length in use.

    A list of ten thousand /32s costs the same single lookup as one /32: networks are
    stored as integers in one set per prefix length.
    """

    def __init__(self, networks: Iterable[Network]) -> None:
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

    def overlaps(self, network: Network) -> bool:
        """Whether ``network`` shares an address with the set (for an operator's ban, not
        for requests: a network of the set narrower than ``network`` costs a scan)."""
        number = int(network.network_address)
        outside = network.max_prefixlen - network.prefixlen  # the bits that vary inside
        for shift, nets in self._tables[network.version]:
            if shift >= outside:  # as wide or wider: holds all of ``network`` or none
                if (number >> shift) in nets:
                    return True
            elif any((net << shift) >> outside == number >> outside for net in nets):
                return True
        return False


def wider_network(key: str, ipv4_prefix: int, ipv6_prefix: int) -> Optional[str]:
    """The key of the network of ``ipv4_prefix`` (IPv4) or ``ipv6_prefix`` (IPv6) bits
    that holds the client keyed ``key`` (an address, or an IPv6 client's network); None
    for any other key, and for a network that is that wide already (``_written_key``:
    the gate asks it for each new client of a subnet ban rule, before any ban)."""
    written = _written_key(key)
    if written is not None:
        version, number, length = written
        wider = ipv4_prefix if version == 4 else ipv6_prefix
        if length <= wider:
            return None
        family, bits = _FAMILIES[version]
        packed = (number >> (bits - wider) << (bits - wider)).to_bytes(bits // 8, "big")
        text = socket.inet_ntop(family, packed)
        if version == 4 or "." not in text:  # else as ipaddress writes it, below
            return f"{text}/{wider}"
    try:
        network = ipaddress.ip_network(key)
    except ValueError:
        return None
    length = ipv4_prefix if network.version == 4 else ipv6_prefix
    if network.prefixlen <= length or key not in (str(network), str(network.network_address)):
        return None
    return str(network.supernet(new_prefix=length))

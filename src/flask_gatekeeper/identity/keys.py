"""The one key rule: how any text that names a client becomes the key it is stored under.

Every path goes through here: requests (an address, or a ``key_func``'s text), manual
controls (``ban``, ``unban``, ``banned_for``, ``reset``), ``report(ip=...)`` and the CLI.
Whatever text the library shows for a client (a refusal body, a signal, ``bans()``, the
CLI, a log line) is its key, and passing that text back names the same client:

- An IP address is its canonical text (an IPv6 address: its ``/ipv6_prefix`` network).
- A network (the text of a network ban) is its normalised CIDR: ``203.0.113.7/24`` is
  ``203.0.113.0/24``. One that holds a single client at most (an IPv4 /32, an IPv6
  network at least as long as ``ipv6_prefix``) is that client's key, since the library
  counts and bans that client as one (``addresses.network_key``).
- A ``key_func`` key is its text as given, except that a key which is written as an
  address or a network (``addresses.written_as_address``, whether it is one or not), or
  starts with ``key:`` or ``sha256:``, is shown as ``key:<text>``: a user named
  ``203.0.113.7`` is never the address 203.0.113.7. The one exception is the request's
  own address as ``gk.client_ip()`` gives it, which a ``key_func`` returns to fall back
  to the address: that is the address (``proxies.Identifier.identify``).
- A ``key_func`` key longer than ``MAX_KEY_LENGTH`` is ``sha256:<hex digest>``, so text
  from request data cannot make a tracked client arbitrarily large. A distinct rule's
  values follow the same rule (``stored_value``).

Text given by the app or an operator is read the same way: ``key:`` names a key, an
address or a network is normalised, ``sha256:`` names a hashed key, and anything else is
a key, except text written as an address or a network that is not one
(``300.1.1.0/24``): that is a ``ClientNameError``, since a key of that text would ban
nobody while it looks like a network ban (``key:300.1.1.0/24`` names such a key).

Listings and log lines show a key with ``shown``: a backslash and every character that
is not printable are escaped (``\\n``, ``\\x1e``), so a key cannot forge a line that
looks like another client's; the CLI reads its arguments back with ``unshown``.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from typing import Callable, Optional

from flask import has_request_context, request

from ..errors import ClientNameError
from ..rules import KeySource, request_field
from .addresses import (
    client_length,
    network_key,
    network_of,
    network_problem,
    parse_address,
    written_as_address,
)

__all__ = [
    "HASH_MARK",
    "KEY_MARK",
    "MAX_KEY_LENGTH",
    "client_key",
    "key_kind",
    "key_of",
    "key_reader",
    "shown",
    "stored_value",
    "unshown",
]

MAX_KEY_LENGTH = 128
"""A longer ``key_func`` key is stored as its SHA-256."""

KEY_MARK = "key:"
"""Marks a ``key_func`` key whose plain text would read as something else."""

HASH_MARK = "sha256:"
"""Starts the stored form of a long ``key_func`` key."""


def _digest(text: str) -> str:
    return HASH_MARK + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def key_of(text: str) -> str:
    """The stored key of ``key_func``'s ``text``."""
    if len(text) > MAX_KEY_LENGTH:
        return _digest(text)
    if (
        text.startswith((KEY_MARK, HASH_MARK))
        or written_as_address(text)
        or parse_address(text) is not None  # forms the shape leaves out: fe80::1%eth0
        or network_key(text) is not None
    ):
        return KEY_MARK + text
    return text


def key_kind(key: str, ipv6_prefix: int = 64) -> str:
    """What a stored key names, as a refusal body says it: ``"ip"`` for an address (an
    IPv6 client's ``/ipv6_prefix`` key included), ``"network"`` for a wider network,
    ``"client"`` for a ``key_func`` or rule key (``key_of`` marks those that would read
    as an address)."""
    network = network_of(key)
    if network is not None:
        version, length = network
        return "ip" if length >= client_length(version, ipv6_prefix) else "network"
    if not key.startswith((KEY_MARK, HASH_MARK)) and parse_address(key) is not None:
        return "ip"
    return "client"


def stored_value(text: str) -> str:
    """A distinct rule's value as the storages hold it: long text as its digest, like a
    long key, so a client's values take bounded room whatever it sends. Text that starts
    with ``sha256:`` is digested too, so no value reads as another's digest."""
    if len(text) > MAX_KEY_LENGTH or text.startswith(HASH_MARK):
        return _digest(text)
    return text


def client_key(text: str, ipv6_prefix: int, *, strict: bool = True) -> str:
    """The stored key of a client named by the app or an operator: an address, a
    network, a key shown by the library, or a ``key_func`` key as the app knows it.
    Raises ``ClientNameError`` for text written as an address or a network that is not
    one; unless not ``strict`` (a key the app takes from a request, as ``gk.limit``'s
    ``key``), where that text is a ``key_func`` key, as a ``key_func`` returning it."""
    if text.startswith(KEY_MARK):
        return key_of(text[len(KEY_MARK) :])
    if text.startswith(HASH_MARK):
        return text
    address = parse_address(text, ipv6_prefix)
    if address is not None:
        return address.key
    network = network_key(text, ipv6_prefix)
    if network is not None:
        return network
    if strict and written_as_address(text):
        raise ClientNameError(
            f"{text!r} is written as an IP address or network but is not one "
            f"({network_problem(text)}); a key_func key of this text is named "
            f"{KEY_MARK + text!r}"
        )
    return key_of(text)


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPED = re.compile(r"\\(?:[\\nrt]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def shown(key: str) -> str:
    """``key`` on one line of printable text (the inverse of ``unshown``)."""
    if key.isprintable() and "\\" not in key:
        return key
    return "".join(_escape(char) for char in key)


def unshown(text: str) -> str:
    """Text as ``shown`` wrote it, back to the key (other backslashes stay as they are)."""
    if "\\" not in text:
        return text
    return _ESCAPED.sub(
        lambda match: codecs.decode(match[0], "unicode_escape", "surrogatepass"), text
    )


def key_reader(source: KeySource) -> Callable[[], Optional[str]]:
    """What reads the key of a rule with its own ``key`` from the current request: the
    stored key of the function's result or of the request field (``"form[user]"``), or
    None when there is none (no value, an empty one, a JSON body that is no object, or
    no request at all)."""
    field = request_field(source) if isinstance(source, str) else None
    if field is not None:
        where, name = field

        def read_field() -> object:
            if where == "json":
                body = request.get_json(silent=True)
                return body.get(name) if isinstance(body, dict) else None
            values = getattr(request, where)
            return None if values is None else values.get(name)

        function: Callable[[], object] = read_field
    else:
        assert callable(source)  # rules.check_key_source accepted it
        function = source

    def read() -> Optional[str]:
        if not has_request_context():  # gk.usage() outside a request: no key to read
            return None
        value = function()
        if value is None or value == "":
            return None
        return key_of(value if isinstance(value, str) else str(value))

    return read

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

With ``hash_keys`` (keys that are secrets, such as API keys), every ``key_func`` key and
every rule key is stored and shown as ``KeyHasher``'s keyed hash of its text instead,
``k:`` and 32 hex digits; addresses and networks stay as they are. Text given by the app
or an operator is read the same way, except that ``k:`` and 32 hex digits names a hashed
key as shown, and anything else that is not an address or a network is hashed
(``key:<text>`` hashes ``<text>``).

Listings and log lines show a key with ``shown``: a backslash and every character that
is not printable are escaped (``\\n``, ``\\x1e``), so a key cannot forge a line that
looks like another client's; the CLI reads its arguments back with ``unshown``.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import re
from typing import Callable, Optional, Union

from flask import has_request_context, request

from ..errors import ClientNameError, ConfigError, ConfigTypeError
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
    "HMAC_MARK",
    "KEY_MARK",
    "MAX_KEY_LENGTH",
    "KeyHasher",
    "client_key",
    "key_hasher",
    "key_kind",
    "key_of",
    "key_reader",
    "parse_hash_keys",
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


HMAC_MARK = "k:"
"""Starts a key hashed by ``hash_keys``: ``k:`` and ``HMAC_HEX_DIGITS`` hex digits."""
HMAC_HEX_DIGITS = 32
"""128 bits of the HMAC-SHA256: no two keys of one app meet by chance."""
MIN_SECRET_BYTES = 16
"""The shortest key of its own that ``hash_keys`` takes."""
_HASHED = re.compile(rf"{HMAC_MARK}[0-9a-f]{{{HMAC_HEX_DIGITS}}}")
_PURPOSE = b"flask-gatekeeper hash_keys"
"""The derived key is used for nothing else that the app signs with its secret."""


class KeyHasher:
    """Keys that are secrets (API keys) are never stored or shown: each is replaced by
    its HMAC-SHA256 under a key derived from the app's secret (``hash_keys``). The same
    secret gives the same hash in every process and storage; without it, the hash cannot
    be reversed or forged by whoever reads the logs or Redis. Nothing is cached: each
    call costs one HMAC of the text (a few microseconds, docs/proxies.md)."""

    __slots__ = ("_base",)

    def __init__(self, secret: bytes) -> None:
        derived = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()
        self._base = hmac.new(derived, digestmod=hashlib.sha256)

    def __call__(self, text: str) -> str:
        mac = self._base.copy()  # the key's padding is hashed once, here: 2.4 us, not 3.1
        mac.update(text.encode("utf-8", "surrogatepass"))
        return HMAC_MARK + mac.hexdigest()[:HMAC_HEX_DIGITS]

    def __repr__(self) -> str:
        return "KeyHasher(<secret>)"  # never the secret


def parse_hash_keys(value: object, name: str) -> Union[bool, bytes]:
    """``hash_keys``: True (the app's ``SECRET_KEY``, read by ``key_hasher``), False, or a
    key of its own, bytes or text of ``MIN_SECRET_BYTES`` at least. An error never shows
    the value of a key (it is a secret)."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, (str, bytes)):
        raise ConfigTypeError(
            f"{name}: expected True, False or a key (bytes or text), got {type(value).__name__}"
        )
    secret = value.encode("utf-8") if isinstance(value, str) else value
    if len(secret) < MIN_SECRET_BYTES:
        hint = ""
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            hint = (
                " (true or false from the environment? app.config.from_prefixed_env() "
                "reads them as JSON)"
            )
        raise ConfigError(
            f"{name}: a key of its own must be at least {MIN_SECRET_BYTES} bytes, got "
            f"{len(secret)}{hint}"
        )
    return secret


def key_hasher(value: Union[bool, bytes], secret_key: object, name: str) -> Optional[KeyHasher]:
    """The hasher of ``hash_keys`` as parsed: None (off), the app's ``SECRET_KEY``'s for
    True, or that of its own key. True without a ``SECRET_KEY`` fails at start-up."""
    if value is False:
        return None
    if value is not True:
        assert isinstance(value, bytes)  # parse_hash_keys
        return KeyHasher(value)
    if isinstance(secret_key, str):
        secret_key = secret_key.encode("utf-8")
    if not isinstance(secret_key, bytes) or not secret_key:
        raise ConfigError(
            f"{name}: True hashes keys with the app's SECRET_KEY, and it has none: set "
            f"app.config['SECRET_KEY'] before init_app, or give {name} a key of its own "
            f"(bytes or text of {MIN_SECRET_BYTES} bytes at least)"
        )
    return KeyHasher(secret_key)


def _digest(text: str) -> str:
    return HASH_MARK + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def key_of(text: str, hasher: Optional[KeyHasher] = None) -> str:
    """The stored key of ``key_func``'s (or a rule's key's) ``text``; with ``hasher``
    (``hash_keys``), its hash."""
    if hasher is not None:
        return hasher(text)
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


def client_key(
    text: str, ipv6_prefix: int, *, strict: bool = True, hasher: Optional[KeyHasher] = None
) -> str:
    """The stored key of a client named by the app or an operator: an address, a
    network, a key shown by the library, or a ``key_func`` key as the app knows it
    (with ``hasher``, hashed unless it is a hashed key as shown).
    Raises ``ClientNameError`` for text written as an address or a network that is not
    one; unless not ``strict`` (a key the app takes from a request, as ``gk.limit``'s
    ``key``), where that text is a ``key_func`` key, as a ``key_func`` returning it."""
    if hasher is not None and _HASHED.fullmatch(text):
        return text
    if text.startswith(KEY_MARK):
        return key_of(text[len(KEY_MARK) :], hasher)
    if hasher is None and text.startswith(HASH_MARK):
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
    return key_of(text, hasher)


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
    text of the function's result or of the request field (``"form[user]"``), whose
    stored key is ``key_of`` it, or None when there is none (no value, an empty one, a
    JSON body that is no object, or no request at all)."""
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
        return value if isinstance(value, str) else str(value)

    return read

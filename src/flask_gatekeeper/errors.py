"""The exceptions flask-gatekeeper raises itself (its refusals are HTTP exceptions, in
``responses``)."""

from __future__ import annotations


class GateKeeperError(Exception):
    """Base class of every error raised by flask-gatekeeper."""


class ConfigError(GateKeeperError, ValueError):
    """A setting or rule has a wrong value; the message names the key and the value.

    It is a ``ValueError``, so code written against plain Python errors still catches it.
    """


class ConfigTypeError(ConfigError, TypeError):
    """A setting or rule has a value of the wrong type (also a ``TypeError``)."""


class ClientNameError(ConfigError):
    """Text given to a manual control as a client is written as an IP address or a network
    (``300.1.1.0/24``) but is not one; the message says why, and how to name a
    ``key_func`` key of that text (``key:...``)."""


class UnsafeBanError(ConfigError):
    """A ban that would refuse more than an operator likely means (a very wide network, or
    one holding a trusted proxy or an allow-listed address); ``force=True`` makes it."""


class StorageError(GateKeeperError):
    """A storage backend is unavailable (an outage: unreachable, timing out, out of
    memory, read-only...); backends convert their own errors into this one, or into
    ``StorageCallError``. Requests then follow the outage policy, for every client."""


class StorageCallError(StorageError):
    """The storage answered, but refused this one call (a script error, a key of the
    wrong type, a value it rejects): a bug, not an outage. The request that made the
    call alone is admitted or refused as the outage policy says; other clients, and the
    next calls, are not affected. A custom storage raises it for errors of one call."""

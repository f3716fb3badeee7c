"""The exceptions flask-gatekeeper raises itself (refusals live in ``decision``)."""

from __future__ import annotations


class GateKeeperError(Exception):
    """Base class of every error raised by flask-gatekeeper."""


class ConfigError(GateKeeperError, ValueError):
    """A setting or rule has a wrong value; the message names the key and the value.

    It is a ``ValueError``, so code written against plain Python errors still catches it.
    """


class ConfigTypeError(ConfigError, TypeError):
    """A setting or rule has a value of the wrong type (also a ``TypeError``)."""


class StorageError(GateKeeperError):
    """A storage backend failed; backends convert their own errors into this one."""

"""Banning and rate limiting for Flask: exact, fast, safe by default."""

from __future__ import annotations

from .decision import Decision
from .errors import (
    ClientNameError,
    ConfigError,
    ConfigTypeError,
    GateKeeperError,
    StorageCallError,
    StorageError,
    UnsafeBanError,
)
from .extension import GateKeeper
from .responses import Banned, Denied, RateLimited, StorageUnavailable, TooManyInFlight
from .rules import BanRule, ConcurrencyLimit, Rule, SubnetBanRule
from .storage import MemoryStorage, Storage

__version__ = "2.0.0.dev0"

__all__ = [
    "BanRule",
    "Banned",
    "ClientNameError",
    "ConcurrencyLimit",
    "ConfigError",
    "ConfigTypeError",
    "Decision",
    "Denied",
    "GateKeeper",
    "GateKeeperError",
    "MemoryStorage",
    "RateLimited",
    "Rule",
    "Storage",
    "StorageCallError",
    "StorageError",
    "StorageUnavailable",
    "SubnetBanRule",
    "TooManyInFlight",
    "UnsafeBanError",
]

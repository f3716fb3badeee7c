"""Storage backends behind one small protocol, and the factory that picks one from a URI."""

from __future__ import annotations

from .base import Clock, Storage
from .memory import DEFAULT_MAX_CLIENTS, MemoryStorage

__all__ = ["DEFAULT_MAX_CLIENTS", "Clock", "MemoryStorage", "Storage", "storage_from"]


def storage_from(value: object, name: str, max_clients: int) -> Storage:
    """A storage from an option value: a URI such as ``"memory://"``, or a ready object."""
    from ..errors import ConfigError, ConfigTypeError

    if isinstance(value, str):
        if value.partition("://")[0] == "memory":
            return MemoryStorage(max_clients=max_clients)
        raise ConfigError(f"{name}: unsupported storage URI {value!r} (expected 'memory://')")
    if callable(getattr(value, "hit", None)) and callable(getattr(value, "report", None)):
        return value  # type: ignore[return-value]  # it quacks like a Storage
    raise ConfigTypeError(f"{name}: expected a storage URI or a storage object, got {value!r}")

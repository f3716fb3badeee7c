"""Storage backends behind one small protocol, and the factory that picks one from a URI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..errors import ConfigError, ConfigTypeError
from .base import DEFAULT_KEY_PREFIX, Clock, Storage
from .memory import DEFAULT_MAX_CLIENTS, MemoryStorage

if TYPE_CHECKING:
    from .redis import RedisStorage

__all__ = ["DEFAULT_MAX_CLIENTS", "Clock", "MemoryStorage", "Storage", "storage_from"]


_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_storage() -> type[RedisStorage]:
    """The Redis storage class, imported only when asked for: the core never needs redis-py."""
    try:
        from .redis import RedisStorage
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    return RedisStorage


def _is_redis_client(value: object) -> bool:
    """A redis-py client (``Redis``, ``RedisCluster``, a Sentinel's, or a subclass of
    any of them), told without importing redis-py, which the core never needs."""
    return callable(getattr(value, "evalsha", None)) and any(
        cls.__module__.partition(".")[0] == "redis" for cls in type(value).__mro__
    )


def storage_from(
    value: object, name: str, *, max_clients: Optional[int], key_prefix: Optional[str]
) -> Storage:
    """A storage from an option value: a URI (``memory://``, ``redis://...``,
    ``rediss://...``, ``unix://...``), a ready redis-py client, or a storage object.
    ``max_clients`` and ``key_prefix`` are None unless given: each is refused where it
    would be ignored."""
    if key_prefix is not None and not isinstance(value, str) and not _is_redis_client(value):
        raise ConfigError(
            f"{name}: key_prefix applies to a Redis storage built from a URL or a client; "
            f"a storage object has its own (e.g. RedisStorage(client, key_prefix="
            f"{key_prefix!r})), got {value!r}"
        )
    prefix = DEFAULT_KEY_PREFIX if key_prefix is None else key_prefix
    if isinstance(value, str):
        scheme = value.partition("://")[0].lower()
        if scheme == "memory":
            return MemoryStorage(max_clients=max_clients or DEFAULT_MAX_CLIENTS)
        if scheme in _REDIS_SCHEMES:
            if max_clients is not None:
                raise ConfigError(
                    f"{name}: max_clients bounds the memory storage; Redis keys expire by "
                    f"themselves (drop max_clients, or use memory://): {value!r}"
                )
            try:
                return _redis_storage().from_url(value, key_prefix=prefix)
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
        raise ConfigError(
            f"{name}: unsupported storage URI {value!r} "
            "(expected memory://, redis://, rediss:// or unix://)"
        )
    if callable(getattr(value, "hit", None)) and callable(getattr(value, "report", None)):
        if max_clients is not None:
            raise ConfigError(
                f"{name}: max_clients applies to the storage built from a URI; set it on "
                f"the storage object itself (e.g. MemoryStorage(max_clients={max_clients!r})), "
                f"got {value!r}"
            )
        return value  # type: ignore[return-value]  # it quacks like a Storage
    if _is_redis_client(value):
        return _redis_storage()(value, key_prefix=prefix)  # type: ignore[arg-type]
    raise ConfigTypeError(
        f"{name}: expected a storage URI, a redis-py client or a storage object, got {value!r}"
    )

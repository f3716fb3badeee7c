"""Redis storage: the memory storage's exact semantics, shared by every worker and host."""

from .storage import DEFAULT_TIMEOUT, NETWORK_REFRESH, RedisStorage

__all__ = ["DEFAULT_TIMEOUT", "NETWORK_REFRESH", "RedisStorage"]

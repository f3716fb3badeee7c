"""Redis storage: the memory storage's exact semantics, shared by every worker and host.

``RedisStorage`` (``storage.py``) makes one script call per request (``scripts.py``, the
Lua in ``lua/``) through redis-py (``client.py``, imported first: redis-py is an extra),
with the keys, arguments and answers of ``encoding.py``; on Redis Cluster a request whose
keys sit on several slots takes ``cluster.py``'s path.
"""

from .client import DEFAULT_TIMEOUT
from .storage import NETWORK_REFRESH, RedisStorage

__all__ = ["DEFAULT_TIMEOUT", "NETWORK_REFRESH", "RedisStorage"]

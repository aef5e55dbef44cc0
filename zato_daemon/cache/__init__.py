"""The built-in cache behind `zato.cache.builtin.*` and `self.cache` in services.

definition.py says what a cache is, backend.py what every cache offers services, lru.py
how one behaves in memory, shared.py how changes travel between workers and survive
restarts (SQLite), and registry.py holds a worker's caches. A cache of scope 'cluster'
lives in Redis instead: cluster/cache.py. No gevent here: the worker passes its sleep function to `run()`.
"""

from zato_daemon.cache.backend import CacheBackend
from zato_daemon.cache.definition import (BUILTIN, CLUSTER, DEFAULT_CACHE_NAME, IN_BACKGROUND, LOCAL,
                                          NO_PERSISTENT_STORAGE, NO_SYNC, SQL, CacheDefinition, CacheError)
from zato_daemon.cache.lru import Cache
from zato_daemon.cache.registry import POLL_INTERVAL, CacheRegistry
from zato_daemon.cache.shared import DATABASE_NAME

__all__ = ['BUILTIN', 'CLUSTER', 'DATABASE_NAME', 'DEFAULT_CACHE_NAME', 'IN_BACKGROUND', 'LOCAL', 'NO_PERSISTENT_STORAGE',
           'NO_SYNC', 'POLL_INTERVAL', 'SQL', 'Cache', 'CacheBackend', 'CacheDefinition', 'CacheError', 'CacheRegistry']

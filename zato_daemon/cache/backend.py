"""What every cache is to a service, wherever it keeps its entries: the one interface of
`self.cache`, `self.caches['x']` and `zato.cache.builtin.*`.

Two kinds implement it: lru.Cache (a worker's memory, synchronised through SQLite) and
cluster/cache.ClusterCache (the cluster's Redis). What they must agree on lives here, once:
keys are strings, values are stored as their compact JSON text and measured against
max_item_size in bytes, and an expiry is a number of seconds (0: never, None: as
extend_expiry_on_set says). No I/O here.
"""

import json
import math

from zato_daemon.cache.definition import CacheError
from zato_daemon.metrics.counting import CacheCounts

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(',', ':'))


class CacheBackend:
    """A named cache: get/set/delete/clear, keys, len, expiry and size limits.

    Subclasses implement get, set, delete, clear, keys and __len__ and count hits, misses and
    evictions in `stats` by the same rules: a get of a live key is a hit, of an absent or
    expired one a miss; an eviction is a live entry removed to respect max_size.
    """

    def __init__(self, definition, clock):
        self.definition = definition
        self.name = definition.name
        self.clock = clock
        # Hits, misses and evictions (metrics/counting.CacheCounts); the registry hands the
        # worker's own, kept by name across a cache deleted and created again.
        self.stats = CacheCounts()
        # Whether the registry must (re)load the entries from the database: only a cache
        # kept in memory ever does.
        self.needs_load = False

    # ---- the API services use

    def get(self, key, default=None):
        """The value under `key`, or `default` when it is absent or expired."""
        raise NotImplementedError

    def set(self, key, value, expiry=None):
        """Stores a JSON-serializable value under a string key; returns nothing."""
        raise NotImplementedError

    def delete(self, key):
        """Removes a key; True if it was there and live."""
        raise NotImplementedError

    def clear(self):
        """Removes every key; returns how many live ones there were."""
        raise NotImplementedError

    def keys(self):
        """Live keys, least recently used first."""
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError

    def __iter__(self):
        return iter(self.keys())

    def purge_expired(self):
        """Drops entries that expired; returns how many. The registry calls it every few
        seconds; a cache whose store expires entries by itself has nothing to do."""
        return 0

    # ---- what both kinds check the same way

    def encode(self, key, value):
        """The compact JSON text of a value; CacheError if not JSON or over max_item_size."""
        try:
            text = _encoder.encode(value)
        except (TypeError, ValueError) as exc:
            raise CacheError(f'cache {self.name!r}: value of key {key!r} is not JSON-serializable: {exc}') from None
        size = len(text.encode('utf-8'))
        limit = self.definition.max_item_size
        if size > limit:
            raise CacheError(f'cache {self.name!r}: value of key {key!r} is {size} bytes of JSON, '
                             f'over max_item_size {limit}')
        return text

    def check_key(self, key):
        if not isinstance(key, str):
            raise CacheError(f'cache {self.name!r}: keys are strings, got {type(key).__name__} {key!r}')

    def check_expiry(self, key, expiry):
        """`expiry` as given to set(), checked: None, or seconds from 0 (never) up."""
        if expiry is None:
            return None
        if isinstance(expiry, bool) or not isinstance(expiry, (int, float)) or not 0 <= expiry < math.inf:
            raise CacheError(f'cache {self.name!r}: expiry of key {key!r} must be a number of seconds '
                             f'(0 for none), got {expiry!r}')
        return expiry

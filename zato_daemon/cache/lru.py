"""One cache in one process's memory: a true LRU with expiry and size limits.

Rules:
1. Values are stored as their compact JSON text. It is what crosses processes and disk, so
   it is also what is measured against `max_item_size`, and every `get()` decodes a fresh
   copy: a caller mutating what it got cannot change the cache, locally or elsewhere.
2. Recency is the order of an OrderedDict: `get()` and `set()` move a key to the end,
   eviction pops from the front. `in`, `keys()` and `len()` do not count as a use.
3. Expiry is an absolute wall-clock deadline (epoch seconds from the injected clock), so it
   means the same in every process and after a restart. An expired key reads as absent and
   is dropped lazily, never with an exception.
4. This module does no I/O. A cache with a journal (see shared.py) reports each change to it
   as it happens; the `apply_*` methods replay changes other processes made, and decide by
   version (the change-log id of the write that produced an entry) which one wins.

extend_expiry_on_set, precisely: `set(key, value)` with no `expiry` on a key that is live
and has an expiry period P gives the new value the deadline now + P when the flag is on,
and keeps the old deadline when it is off. A new key, or one without expiry, gets none.
An explicit `expiry` always wins; `expiry=0` means "never expires" (Zato's convention).
extend_expiry_on_get: a `get()` of a live key with a period P moves its deadline to now + P.
"""

import json
import math
import time
from collections import OrderedDict

from zato_daemon.cache.backend import CacheBackend

# The kinds of change a journal records, in change-log order.
SET = 'set'
DELETE = 'delete'
EVICT = 'evict'
CLEAR = 'clear'
TOUCH = 'touch'

# The version of a local change not yet written to the change log: newer than any id.
PENDING = math.inf

# How long an expired entry of a synchronised cache stays in memory (reading as absent): a
# get in another worker just before the deadline may have extended it, and the extension
# arrives up to one poll later. Unsynchronised caches drop expired entries at once.
SYNC_GRACE = 5.0


class Entry:
    """One stored value: JSON text, deadline and period, last use and version."""

    __slots__ = ('value', 'expires_at', 'expiry', 'last_used', 'version')

    def __init__(self, value, expires_at=None, expiry=None, last_used=0.0, version=0):
        self.value = value
        self.expires_at = expires_at
        self.expiry = expiry
        self.last_used = last_used
        self.version = version

    def is_expired(self, now):
        return self.expires_at is not None and self.expires_at <= now

    def __repr__(self):
        return (f'Entry({self.value!r}, expires_at={self.expires_at!r}, expiry={self.expiry!r}, '
                f'version={self.version!r})')


class Cache(CacheBackend):
    """A named LRU cache with expiry, size limits and an optional journal.

    Runs in one worker. Not thread-safe: gevent greenlets of one worker never interleave
    inside a method, since nothing here yields.
    """

    def __init__(self, definition, clock=time.time, journal=None):
        super().__init__(definition, clock)
        self.journal = journal
        self.entries = OrderedDict()
        # The change-log id this cache's contents are known to be current with, as of
        # its last load; the registry skips older changes for it.
        self.position = 0
        self._grace = SYNC_GRACE if definition.is_synced else 0.0
        self._new_version = PENDING if definition.is_synced else 0

    # ---- the API services use

    def get(self, key, default=None):
        """The value under `key`, or `default` when it is absent or expired.

        A use: the key becomes the most recently used, and with extend_expiry_on_get
        its deadline moves to now plus its expiry period.
        """
        self.check_key(key)
        entry = self.entries.get(key)
        if entry is None:
            self.stats.misses += 1
            return default
        now = self.clock()
        if entry.is_expired(now):
            self.stats.misses += 1
            self._drop_expired(key, entry, now)
            return default
        self.stats.hits += 1
        self._use(key, entry, now)
        return json.loads(entry.value)

    def set(self, key, value, expiry=None):
        """Stores a JSON-serializable value under a string key; the key becomes the most recent.

        `expiry` is in seconds from now (0: never); None follows extend_expiry_on_set (see
        the module docstring). Evicts least recently used keys beyond max_size. Raises
        CacheError for a non-string key, a value that is not JSON or is over max_item_size,
        or a bad expiry.
        """
        self.check_key(key)
        text = self.encode(key, value)
        now = self.clock()
        expires_at, period = self._deadline(key, expiry, now)
        entry = Entry(text, expires_at, period, now, self._new_version)
        self.entries[key] = entry
        self.entries.move_to_end(key)
        self._record(SET, key, entry)
        self.evict_overflow()
        self._commit()

    def delete(self, key):
        """Removes a key; True if it was there and live.

        In a synchronised cache the delete is sent to the other workers even when this
        worker did not have the key: another one may have it already.
        """
        self.check_key(key)
        entry = self.entries.pop(key, None)
        self._record(DELETE, key, entry)
        self._commit()
        return entry is not None and not entry.is_expired(self.clock())

    def clear(self):
        """Removes every key; returns how many live ones there were."""
        count = len(self)
        self.entries.clear()
        self._record(CLEAR, None, None)
        self._commit()
        return count

    def keys(self):
        """Live keys, least recently used first."""
        now = self.clock()
        return [key for key, entry in self.entries.items() if not entry.is_expired(now)]

    def __len__(self):
        now = self.clock()
        return sum(1 for entry in self.entries.values() if not entry.is_expired(now))

    def __contains__(self, key):
        entry = self.entries.get(key) if isinstance(key, str) else None
        return entry is not None and not entry.is_expired(self.clock())

    def __repr__(self):
        return f'<Cache {self.name!r} {self.definition.sync_method} entries={len(self.entries)}>'

    # ---- local bookkeeping

    def _use(self, key, entry, now):
        self.entries.move_to_end(key)
        entry.last_used = now
        is_extended = bool(self.definition.extend_expiry_on_get and entry.expiry)
        if is_extended:
            entry.expires_at = now + entry.expiry
        # Other workers need to hear of an extension; the table needs recency only when it
        # outlives this worker (sql). Anything else would be a write per poll for nothing.
        if self.journal is not None and (is_extended or self.definition.is_persistent):
            self.journal.record_use(self, key, entry, is_extended)

    def _deadline(self, key, expiry, now):
        """(expires_at, period) for a set at `now`."""
        if expiry is None:
            previous = self.entries.get(key)
            if previous is None or previous.expiry is None or previous.is_expired(now):
                return None, None
            if self.definition.extend_expiry_on_set:
                return now + previous.expiry, previous.expiry
            return previous.expires_at, previous.expiry
        self.check_expiry(key, expiry)
        if expiry == 0:
            return None, None
        return now + expiry, expiry

    def _drop_expired(self, key, entry, now):
        # Not journaled: the deadline is the same in every process, so each drops it alone.
        if now - entry.expires_at >= self._grace:
            del self.entries[key]

    def purge_expired(self):
        """Drops entries expired for longer than the grace period; returns how many."""
        now = self.clock()
        stale = [key for key, entry in self.entries.items()
                 if entry.is_expired(now) and now - entry.expires_at >= self._grace]
        for key in stale:
            del self.entries[key]
        return len(stale)

    def evict_overflow(self):
        """Evicts least recently used entries until at most max_size remain; returns the keys."""
        evicted = []
        while len(self.entries) > self.definition.max_size:
            key, entry = self.entries.popitem(last=False)
            self.stats.evictions += 1
            self._record(EVICT, key, entry)
            evicted.append(key)
        return evicted

    def _record(self, kind, key, entry):
        if self.journal is not None:
            self.journal.record(self, kind, key, entry)

    def _commit(self):
        if self.journal is not None:
            self.journal.commit()

    # ---- replaying other processes' changes (called by the registry, never journaled)

    def load(self, entries, position):
        """Replaces the contents with stored (key, Entry) pairs, least recently used first.

        Expired entries are skipped; what is beyond max_size is evicted (and journaled,
        so the table shrinks too).
        """
        now = self.clock()
        self.entries = OrderedDict((key, entry) for key, entry in entries if not entry.is_expired(now))
        self.position = position
        self.needs_load = False
        self.evict_overflow()

    def apply_set(self, key, entry):
        """Stores a remote write unless this process has a newer version of the key."""
        current = self.entries.get(key)
        if current is None or current.version < entry.version:
            self.entries[key] = entry
            self.entries.move_to_end(key)

    def apply_delete(self, key, version):
        """Removes the key if the version here is older than the delete."""
        current = self.entries.get(key)
        if current is not None and current.version < version:
            del self.entries[key]

    def apply_evict(self, key, version):
        """Removes the key if the version here is the evicted one or older."""
        current = self.entries.get(key)
        if current is not None and current.version <= version:
            del self.entries[key]

    def apply_touch(self, key, version, expires_at, last_used):
        """Extends the deadline of exactly that version and marks it used."""
        current = self.entries.get(key)
        if current is not None and current.version == version:
            if current.expires_at is not None and expires_at is not None:
                current.expires_at = max(current.expires_at, expires_at)
            current.last_used = max(current.last_used, last_used)
            self.entries.move_to_end(key)

    def apply_clear(self, version):
        """Removes every entry older than the clear; newer local writes stay."""
        for key in [key for key, entry in self.entries.items() if entry.version < version]:
            del self.entries[key]


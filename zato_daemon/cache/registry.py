"""All caches of one worker, by name, and the loop that keeps them in step with the others.

The registry is what services reach as `self.server.caches` (and `self.cache`, its default
cache). One registry per worker process, created after fork; every worker of a server opens
the same database (`<state_dir>/caches.sqlite3`, see shared.py), which carries:
- definitions: a cache created in one worker (the admin socket reaches one) is created in
  every worker at its next poll, and a respawned worker starts with all of them;
- changes of in-background caches, applied by every worker within one poll interval;
- entries of in-background and sql caches, from which a worker (re)loads a cache.
When the file is deleted or replaced while the server runs, each worker moves to the file at
the path within about a second, writes its definitions there again and reloads its
in-background caches from it (shared.SharedStore.check_file says why that is consistent).

A cache of scope 'cluster' lives in the cluster's Redis instead (cluster/cache.py): the
registry makes it through the worker's RedisLink, publishes its definition like any other,
and neither loads nor syncs it.

A registry always has a cache named 'default' (no-sync, memory only) that is the default
until a cache is created with is_default; the last one created with is_default wins.
"""

import logging
import time

from zato_daemon.cache.definition import (BUILTIN, DEFAULT_CACHE_NAME, NO_CLUSTER, CacheDefinition, CacheError,
                                          default_definition)
from zato_daemon.cache.lru import CLEAR, DELETE, EVICT, SET, TOUCH, Cache, Entry
from zato_daemon.cache.shared import BUSY_TIMEOUT, DEFINE, GAP, WARNING_INTERVAL, SharedStore

LOGGER_NAME = 'zato_daemon.cache'

# Two polls fit in the 100 ms a change may take to reach every worker.
POLL_INTERVAL = 0.05
# How often a worker prunes the change log and drops long-expired entries.
PRUNE_INTERVAL = 5.0


def _apply_set(cache, row):
    change_id, _, _, key, value, expires_at, expiry, _, created_at = row
    cache.apply_set(key, Entry(value, expires_at, expiry, created_at, change_id))


def _apply_delete(cache, row):
    cache.apply_delete(row[3], row[0])


def _apply_evict(cache, row):
    cache.apply_evict(row[3], row[7])


def _apply_touch(cache, row):
    cache.apply_touch(row[3], row[7], row[5], row[8])


def _apply_clear(cache, row):
    cache.apply_clear(row[0])


# change kind -> how a row of cache_changes (shared.CHANGE_COLUMNS) is replayed on a cache.
APPLY = {SET: _apply_set, DELETE: _apply_delete, EVICT: _apply_evict, TOUCH: _apply_touch, CLEAR: _apply_clear}


def _listed(cache):
    listed = cache.definition.as_dict()
    try:
        listed['size'] = len(cache)
    except CacheError as exc:
        listed.update(size=None, error=str(exc))
    return listed


class CacheRegistry:
    """The caches of one worker: create, look up, list, and poll for other workers' changes.

    Args:
        state_dir: the server's state directory, home of caches.sqlite3; None keeps every
            cache in memory and refuses in-background and sql caches.
        clock: wall-clock seconds since the epoch (expiry deadlines, log timestamps).
        logger: where WARNINGs about the database go; 'zato_daemon.cache' by default.
        boot_id: the same for every worker of one server run, new at each restart (not at a
            reload or respawn): a new one empties non-persistent caches. None never empties.
        generation: the worker generation; a newer one may redefine a cache (after a reload).
        busy_timeout: seconds a write waits for the database lock before queueing instead.
        cluster: what makes cluster caches (cluster/cache.RedisLink, or anything with
            `cache(definition)` and `close()`); None: this server has no cluster.
    """

    def __init__(self, state_dir=None, clock=time.time, logger=None, boot_id=None, generation=0,
                 busy_timeout=BUSY_TIMEOUT, cluster=None):
        self.clock = clock
        self.cluster = cluster
        self.logger = logger or logging.getLogger(LOGGER_NAME)
        self.generation = generation
        self.caches = {}
        # Names create() was called for in this worker, as opposed to caches adopted from
        # the database: only these are refused locally when asked for another definition.
        self._created = set()
        self.default_name = DEFAULT_CACHE_NAME
        # The change-log id up to which this worker has replayed changes.
        self.position = 0
        self.needs_reload = False
        self.store = None
        if state_dir is not None:
            self.store = SharedStore(state_dir, clock, self.logger, boot_id, busy_timeout)
        # metrics/counting.WorkerCounts, once the worker counts (`count_with`).
        self.counts = None
        self._placeholder = self._install(default_definition())
        self._pruned_at = clock()
        self._poll_failed_at = None
        if self.store is not None:
            self._reload()

    # ---- creating and finding caches

    def create(self, definition):
        """Creates a cache from a CacheDefinition or a dict of its fields; returns the Cache.

        Idempotent for an identical definition. Raises CacheError for an invalid one, or
        when the name is taken by a different definition, here or in another worker.
        """
        if isinstance(definition, dict):
            definition = CacheDefinition.from_request(definition)
        elif not isinstance(definition, CacheDefinition):
            raise CacheError(f'a cache definition must be a dict or a CacheDefinition, got {type(definition).__name__}')
        name = definition.name
        existing = self.caches.get(name)
        if existing is not None and existing.definition == definition and existing is not self._placeholder:
            return existing
        if name in self._created:
            raise CacheError(f'cache {name!r} already exists with a different definition '
                             f'(requested vs existing: {"; ".join(definition.differences(existing.definition))})')
        if definition.is_cluster and self.cluster is None:
            raise CacheError(f'cache {name!r}: {NO_CLUSTER}')
        if definition.uses_table and self.store is None:
            raise CacheError(f'cache {name!r}: sync_method {definition.sync_method!r} and '
                             f'persistent_storage {definition.persistent_storage!r} need a state directory')
        # A cache this worker only adopted from another one may differ: the database decides
        # (a newer generation redefines, the same one conflicts).
        if self.store is not None:
            self.store.publish(definition, self.generation)
        self._created.add(name)
        if existing is not None and existing.definition == definition:
            self._placeholder = None
            return existing
        return self._install(definition)

    def get(self, name):
        """The active cache called `name`; CacheError if there is none or it is not active."""
        cache = self.caches.get(name)
        if cache is None:
            raise CacheError(f'no cache named {name!r}; there are: {", ".join(sorted(self.caches))}')
        if not cache.definition.is_active:
            raise CacheError(f'cache {name!r} is not active')
        return cache

    def get_cache(self, cache_type, name):
        """Zato's spelling of `get(name)`: `self.caches.get_cache('builtin', 'my.cache')`."""
        if cache_type != BUILTIN:
            raise CacheError(f'cache_type: expected {BUILTIN!r}, got {cache_type!r}')
        return self.get(name)

    def __getitem__(self, name):
        return self.get(name)

    def __contains__(self, name):
        return name in self.caches

    @property
    def default(self):
        """The default cache: the last one created with is_default, else 'default'."""
        return self.caches[self.default_name]

    def names(self):
        """The names of all caches, sorted."""
        return sorted(self.caches)

    def list(self):
        """Every cache's definition fields plus `size` (live entries in this worker; in Redis for
        a cluster cache), by name. A cluster cache whose Redis does not answer has size None
        and `error` saying why: the other caches are listed all the same."""
        return [_listed(self.caches[name]) for name in self.names()]

    def _install(self, definition):
        # The store is the journal of every cache whose entries live in the table too.
        journal = self.store if self.store is not None and definition.uses_table else None
        cache = self.cluster.cache(definition) if definition.is_cluster else Cache(definition, self.clock, journal)
        if self.counts is not None:
            cache.stats = self.counts.cache(definition.name)
        if journal is not None:
            self._load(cache)
        self.caches[definition.name] = cache
        if definition.is_default:
            self.default_name = definition.name
        return cache

    def count_with(self, counts):
        """From now on every cache's hits, misses and evictions count in `counts`, by cache name."""
        self.counts = counts
        for name, cache in self.caches.items():
            cache.stats = counts.cache(name)

    def _adopt(self, definition):
        """Installs (and loads) a definition another worker stored, unless this worker has it.

        Returns True if it installed it.
        """
        existing = self.caches.get(definition.name)
        if existing is not None and existing.definition == definition:
            return False
        if definition.is_cluster and self.cluster is None:
            # A worker of a reload that left the cluster, in a boot whose older workers made it.
            self.logger.warning('Cache %r was created by another worker as a cluster cache; this worker has no '
                                '[cluster] redis_url and goes without it', definition.name)
            return False
        if existing is not None and existing is not self._placeholder:
            self.logger.warning('Cache %r was redefined by another worker (new vs old: %s)', definition.name,
                                '; '.join(definition.differences(existing.definition)))
        self._install(definition)
        return True

    def _load(self, cache):
        loaded = self.store.read_entries(cache.name)
        if loaded is None:
            cache.needs_load = True
            return
        position, entries = loaded
        cache.load(entries, position)
        # Loading may have evicted beyond a smaller max_size.
        self.store.flush()

    # ---- keeping in step with the other workers

    def run(self, sleep, interval=POLL_INTERVAL):
        """Polls forever; the worker spawns it as a greenlet, passing gevent.sleep."""
        while True:
            self.poll()
            sleep(interval)

    def poll(self):
        """Writes queued changes, then applies other workers' changes and definitions.

        Never raises: a database problem is a WARNING (from the store), a bug here an
        ERROR with its traceback, each at most once a minute.
        """
        if self.store is None:
            return
        try:
            self._poll()
        except Exception:
            now = self.clock()
            if self._poll_failed_at is None or now - self._poll_failed_at >= WARNING_INTERVAL:
                self._poll_failed_at = now
                self.logger.exception('Cache poll failed')

    def _poll(self):
        store = self.store
        if store.check_file():
            # Before the flush: our queued changes must not reach the new file before the
            # definitions of their caches (see SharedStore.republish).
            store.republish([cache.definition for cache in self.caches.values() if cache is not self._placeholder],
                            self.generation)
        # Our own queued changes go first: their ids must be newer than anything we replay.
        if not store.flush():
            return
        self._resolve_conflicts()
        if (store.needs_reload or self.needs_reload) and not self._reload():
            return
        for cache in list(self.caches.values()):
            if cache.needs_load:
                self._load(cache)
        changes = store.read_changes(self.position)
        if changes is GAP:
            self.logger.warning('This worker did not read cache changes for longer than the change log keeps '
                                'them; reloading the in-background caches from the database')
            self._reload()
        elif changes:
            self._apply(changes)
        self._prune()

    def _apply(self, rows):
        touched = {}
        for row in rows:
            change_id, name, kind = row[0], row[1], row[2]
            if kind == DEFINE:
                self._adopt(CacheDefinition.from_json(row[4]))
                continue
            cache = self.caches.get(name)
            # Changes older than a cache's last load are in what it loaded already.
            if cache is None or not cache.definition.is_synced or change_id <= cache.position:
                continue
            apply = APPLY.get(kind)
            if apply is not None:
                apply(cache, row)
                touched[name] = cache
        self.position = rows[-1][0]
        # Workers that wrote at once may have overshot max_size together; evictions are
        # journaled like any change, so every worker ends with the same keys.
        for cache in touched.values():
            cache.evict_overflow()
        self.store.flush()

    def _reload(self):
        """Reads all definitions and reloads every in-background cache; False on failure."""
        self.store.needs_reload = False
        snapshot = self.store.read_definitions()
        if snapshot is None:
            self.needs_reload = True
            return False
        position, definitions = snapshot
        installed = {definition.name for definition in definitions if self._adopt(definition)}
        for cache in list(self.caches.values()):
            if cache.definition.is_synced and cache.name not in installed:
                self._load(cache)
        self.position = position
        self.needs_reload = False
        return True

    def _resolve_conflicts(self):
        for requested, stored in self.store.conflicts:
            self.logger.error('Cache %r could not be defined as requested while the database was unavailable: '
                              'another worker defined it differently first (requested vs stored: %s); '
                              'using the stored definition', requested.name,
                              '; '.join(requested.differences(stored)))
            self._install(stored)
        self.store.conflicts = []

    def _prune(self):
        now = self.clock()
        if now - self._pruned_at < PRUNE_INTERVAL:
            return
        self._pruned_at = now
        self.store.prune()
        for cache in self.caches.values():
            cache.purge_expired()

    def close(self):
        """Writes queued changes if it can and closes the database; the worker calls it at exit."""
        if self.store is not None:
            self.store.close()
        if self.cluster is not None:
            self.cluster.close()

"""The SQLite database that carries cache changes between workers and across restarts.

One file, `<state_dir>/caches.sqlite3`, opened with the settings of sqlite_store.py: WAL
mode, synchronous=NORMAL (a power cut may lose the last moments of a cache, never corrupt
it) and a short busy timeout (a worker gives up early and retries on its next poll).

Tables:
- cache_definitions: every cache created in this boot, so workers learn of caches created
  elsewhere (an admin call reaches one worker only) and a respawned worker gets them all.
- cache_entries: the current contents of every cache that uses the table (in-background
  or sql), one row per key, with the version (change-log id) that wrote it.
- cache_changes: the change log of in-background caches; ids order every change.
- cache_meta: the boot id and `pruned_up_to`, the newest change id already pruned.

Rules:
1. A change is applied in memory first and then written here, in one transaction per
   flush. A failing database never raises into a cache method: changes queue in
   memory (the outbox), one WARNING is logged, and the next poll writes them.
2. Every process replays every change in id order, its own included; versions make the
   replay idempotent and make the highest id win (see lru.Cache.apply_*).
3. The change log keeps LOG_RETENTION seconds. A process that has not read that far back
   (its position is below `pruned_up_to`) reloads whole caches from cache_entries, which
   always holds the result of every committed change: nothing is lost silently.
4. A new boot id (a server restart, not a worker respawn or a reload) empties the log and
   the definitions and deletes the entries of non-persistent caches.
5. A file deleted or replaced while the server runs: see `check_file()`. Every worker moves
   to the one file at the path within about a second, and the caches that use the table
   reload from it.

Not fork-safe: open one store per process, after fork.
"""

from pathlib import Path

from zato_daemon.cache.definition import CacheDefinition, CacheError
from zato_daemon.cache.lru import CLEAR, DELETE, EVICT, PENDING, SET, TOUCH, Entry
from zato_daemon.sqlite_store import (BUSY_TIMEOUT, STORE_ERRORS, WARNING_INTERVAL, Database, FailureReport,
                                      transaction)

DATABASE_NAME = 'caches.sqlite3'
# How the log lines name it.
TITLE = 'Cache database'
DEFINE = 'define'
# A definition this worker had, written again to a new database file. Unlike DEFINE, losing
# to a stored definition is no error: the worker adopts the stored one when it reloads.
REPUBLISH = 'republish'

LOG_RETENTION = 60.0
# Past this many queued changes (the database has been unavailable for long), the queue is
# dropped with an ERROR and the caches reload once the database is back: memory stays bounded.
MAX_QUEUED = 100_000

NEW, SAME, REPLACED, CONFLICT = 'new', 'same', 'replaced', 'conflict'

SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cache_definitions (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    generation INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cache_entries (
    cache TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires_at REAL,
    expiry REAL,
    last_used REAL NOT NULL,
    version INTEGER NOT NULL,
    persistent INTEGER NOT NULL,
    PRIMARY KEY (cache, key)
);
CREATE TABLE IF NOT EXISTS cache_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache TEXT NOT NULL,
    op TEXT NOT NULL,
    key TEXT,
    value TEXT,
    expires_at REAL,
    expiry REAL,
    version INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_changes_created_at ON cache_changes (created_at);
"""

CHANGE_COLUMNS = 'id, cache, op, key, value, expires_at, expiry, version, created_at'


class Op:
    """One queued change: what happened to which key of which cache."""

    __slots__ = ('cache', 'kind', 'key', 'entry', 'definition', 'generation')

    def __init__(self, cache, kind, key=None, entry=None, definition=None, generation=0):
        self.cache = cache
        self.kind = kind
        self.key = key
        self.entry = entry
        self.definition = definition
        self.generation = generation


class Gap:
    """read_changes() found changes pruned past the reader's position: reload."""


GAP = Gap()


class SharedStore:
    """One process's connection to the cache database, and its outbox of unwritten changes.

    Also the journal of every cache that uses the table: caches call `record()`,
    `record_use()` and `commit()`, and never see an exception from them.
    """

    def __init__(self, state_dir, clock, logger, boot_id=None, busy_timeout=BUSY_TIMEOUT):
        self.path = Path(state_dir) / DATABASE_NAME
        self.clock = clock
        self.logger = logger
        self.boot_id = boot_id
        # Opened lazily, on first use, and again after a failure: a database that cannot be
        # opened at start only delays synchronisation.
        self.database = Database(
            self.path, TITLE, logger, clock, self._prepare, busy_timeout=busy_timeout, repair_words=(
                'this worker now uses the file there and reloads its in-background caches from it',
                ' within seconds, and reloads its in-background caches from it. The entries stored before '
                'are gone, and so are changes a worker made in the second before it moved'))
        self.failure_report = FailureReport(logger, TITLE, self.path, clock, WARNING_INTERVAL)
        self.outbox = []
        # (cache name, key) -> (cache, key, entry, is_extended): gets, coalesced until the
        # next flush, so that a get never writes to the database itself.
        self.uses = {}
        # (ours, stored) definition pairs whose deferred publishing lost to a stored one.
        self.conflicts = []
        self.needs_reload = False

    # ---- connection

    @property
    def connection(self):
        """The open connection to the database, None while there is none."""
        return self.database.connection

    def _prepare(self, connection):
        """The schema, and the start of a new boot, in a connection just opened."""
        with transaction(connection):
            for statement in SCHEMA.split(';'):
                if statement.strip():
                    connection.execute(statement)
        with transaction(connection):
            self._start_boot(connection)

    def check_file(self):
        """Moves to the file at the path if it is no longer the one open; True if it did.

        Called by the registry's poll, which stats at most once a second (FileWatch). On True
        the registry republishes its definitions (`republish()`, before anything else is
        written) and reloads the caches that use the table (`needs_reload`).

        Why every worker ends up on the same file, consistent: only one file is ever created
        at the path (ensure_database creates under a lock, everyone else opens what is
        there), and each worker, once it noticed, uses only the file at the path. Change ids
        and versions start again in the new file, so nothing of the old one may be mixed
        in: evictions and recorded uses that name old versions are dropped here, the
        position is reset by the reload, and a cache's contents are replaced by the table's,
        not merged. Queued sets, deletes and clears hold no old version: they are written,
        with new ids, after the definitions. Two workers noticing at once: one creates, both
        republish (the same definition is stored once), both reload. A worker that noticed
        first and wrote: its changes are in the new file, and a later worker reloads them
        over whatever it had (newer in the new file, whatever the old versions said).
        What a worker wrote to the deleted file before it noticed (up to a second) is lost
        for the others, as is everything the deleted file held.
        """
        if not self.database.moved():
            return False
        self.outbox = [op for op in self.outbox if not _names_an_old_version(op)]
        self.uses = {}
        self.needs_reload = True
        try:
            self.database.connect()
        except STORE_ERRORS as exc:
            # The next use opens it, and reports the repair then.
            self._failed('reopening it', exc)
        return True

    def _start_boot(self, connection):
        # The first worker of a new boot forgets the previous one: its log, its definitions,
        # the contents of its non-persistent caches. Later workers find the boot id stored.
        if self.boot_id is None or _meta(connection, 'boot') == str(self.boot_id):
            return
        connection.execute('DELETE FROM cache_entries WHERE persistent = 0')
        connection.execute('DELETE FROM cache_definitions')
        connection.execute('DELETE FROM cache_changes')
        _set_meta(connection, 'pruned_up_to', _current_position(connection))
        _set_meta(connection, 'boot', self.boot_id)

    def close(self):
        """Writes what is queued, if it can, and closes the connection."""
        self.flush()
        self.database.close()

    # ---- the journal caches call

    def record(self, cache, kind, key, entry):
        """Queues one change of a cache, in order."""
        self.outbox.append(Op(cache, kind, key, entry))
        self._bound_outbox()

    def record_use(self, cache, key, entry, is_extended):
        """Notes a get: written at the next flush, coalesced per key."""
        slot = (cache.name, key)
        previous = self.uses.get(slot)
        is_extended = is_extended or (previous is not None and previous[3])
        self.uses[slot] = (cache, key, entry, is_extended)
        self._bound_outbox()

    def republish(self, definitions, generation):
        """Queues this worker's cache definitions ahead of its other changes, for a new file.

        First in the outbox: a definition stored after an entry of its cache would delete
        the entry (a cache new to a database starts empty, see _publish).
        """
        self.outbox[:0] = [Op(None, REPUBLISH, definition=definition, generation=generation)
                           for definition in definitions]
        self._bound_outbox()

    def commit(self):
        """Writes queued changes now, so that a set or delete reaches the pollers at once.

        While the database is failing, only polls retry: a locked database would otherwise
        hold every set() for the busy timeout, and with it the worker's whole gevent loop.
        """
        if self.is_failing:
            return False
        return self.flush()

    @property
    def is_failing(self):
        """The last attempt to use the database failed."""
        return self.failure_report.is_failing

    @property
    def failures(self):
        """Failed attempts at using the database since the last that worked."""
        return self.failure_report.failures

    @failures.setter
    def failures(self, count):
        # Settable, as it was when the store counted failures itself: tests mark it failing so.
        self.failure_report.failures = count

    # ---- writing

    def flush(self):
        """Writes the outbox and the coalesced uses in one transaction; never raises.

        Returns True when nothing is left queued.
        """
        if not self.outbox and not self.uses:
            return True
        assigned = []
        try:
            with self._write() as connection:
                for op in self.outbox:
                    self._write_op(connection, op, assigned)
                for use in self.uses.values():
                    self._write_use(connection, *use)
        except STORE_ERRORS as exc:
            # The versions handed out inside the rolled-back transaction are not real ids.
            for entry, version in assigned:
                entry.version = version
            self._failed('writing changes', exc)
            self._bound_outbox()
            return False
        self.outbox = []
        self.uses = {}
        self.failure_report.succeeded()
        return True

    def _write_op(self, connection, op, assigned):
        if op.kind in (DEFINE, REPUBLISH):
            outcome, stored = _publish(connection, op.definition, op.generation, self.clock())
            if outcome == CONFLICT and op.kind == DEFINE:
                self.conflicts.append((op.definition, stored))
            return
        definition = op.cache.definition
        if definition.is_synced:
            change_id = self._log_op(connection, op)
            if op.kind == SET:
                assigned.append((op.entry, op.entry.version))
                op.entry.version = change_id
        _write_entry(connection, op)

    def _log_op(self, connection, op):
        entry = op.entry
        value = expires_at = expiry = version = None
        if op.kind == SET:
            value, expires_at, expiry = entry.value, entry.expires_at, entry.expiry
        elif op.kind == EVICT:
            version = _stored_version(entry)
        return _insert_change(connection, op.cache.name, op.kind, op.key, value, expires_at, expiry,
                              version, self.clock())

    def _write_use(self, connection, cache, key, entry, is_extended):
        # A key replaced or removed since the get needs no touch: its new version is newer.
        if cache.entries.get(key) is not entry or entry.version == PENDING:
            return
        definition = cache.definition
        if definition.is_synced and is_extended:
            _insert_change(connection, cache.name, TOUCH, key, None, entry.expires_at, entry.expiry,
                           entry.version, entry.last_used)
        if is_extended or definition.is_persistent:
            connection.execute('UPDATE cache_entries SET last_used = ?, expires_at = ? '
                               'WHERE cache = ? AND key = ? AND version = ?',
                               (entry.last_used, entry.expires_at, cache.name, key, entry.version))

    def publish(self, definition, generation):
        """Stores a new cache's definition so every worker creates it too.

        Returns NEW, SAME or REPLACED (a definition of an older generation, from before a
        reload, gives way), or None when the database is unavailable: then it is queued.
        Raises CacheError when this boot already has another definition under the name.
        """
        try:
            with self._write() as connection:
                outcome, stored = _publish(connection, definition, generation, self.clock())
        except STORE_ERRORS as exc:
            self._failed(f'publishing cache {definition.name!r}', exc)
            self.outbox.append(Op(None, DEFINE, definition=definition, generation=generation))
            return None
        self.failure_report.succeeded()
        if outcome == CONFLICT:
            raise CacheError(f'cache {definition.name!r} is already defined differently by another worker '
                             f'(requested vs existing: {"; ".join(definition.differences(stored))})')
        return outcome

    def prune(self, retention=LOG_RETENTION):
        """Deletes changes older than `retention` and entries expired longer than that."""
        cutoff = self.clock() - retention
        try:
            with self._write() as connection:
                newest_old = connection.execute(
                    'SELECT MAX(id) FROM cache_changes WHERE created_at < ?', (cutoff,)).fetchone()[0]
                if newest_old is not None:
                    connection.execute('DELETE FROM cache_changes WHERE id <= ?', (newest_old,))
                    _set_meta(connection, 'pruned_up_to', max(newest_old, _pruned_up_to(connection)))
                connection.execute('DELETE FROM cache_entries WHERE expires_at < ?', (cutoff,))
        except STORE_ERRORS as exc:
            self._failed('pruning the change log', exc)
            return False
        self.failure_report.succeeded()
        return True

    # ---- reading

    def read_changes(self, position):
        """Change rows after `position`, in id order; GAP if some were pruned; None on failure."""
        def read(connection):
            if _pruned_up_to(connection) > position:
                return GAP
            return connection.execute(f'SELECT {CHANGE_COLUMNS} FROM cache_changes WHERE id > ? ORDER BY id',
                                      (position,)).fetchall()
        return self._read_with('reading changes', read)

    def read_definitions(self):
        """(position, [CacheDefinition]) as of one moment; None on failure."""
        def read(connection):
            rows = connection.execute('SELECT definition FROM cache_definitions ORDER BY name').fetchall()
            return _current_position(connection), [CacheDefinition.from_json(row[0]) for row in rows]
        return self._read_with('reading cache definitions', read)

    def read_entries(self, cache_name):
        """(position, [(key, Entry)]) of one cache, least recently used first; None on failure."""
        def read(connection):
            rows = connection.execute('SELECT key, value, expires_at, expiry, last_used, version FROM cache_entries '
                                      'WHERE cache = ? ORDER BY last_used, version', (cache_name,)).fetchall()
            return _current_position(connection), [(row[0], Entry(*row[1:])) for row in rows]
        return self._read_with(f'loading cache {cache_name!r}', read)

    def _read_with(self, action, read):
        # One deferred transaction: everything `read` selects comes from one snapshot.
        try:
            with transaction(self.database.connect(), 'BEGIN') as connection:
                result = read(connection)
        except STORE_ERRORS as exc:
            self._failed(action, exc)
            return None
        self.failure_report.succeeded()
        return result

    # ---- transactions and failure reports

    def _write(self):
        return transaction(self.database.connect())

    def _failed(self, action, exc):
        self.failure_report.failed(action, exc, '; changes apply in this worker and %d queued ones are written '
                                   'when it is back', len(self.outbox))

    def _bound_outbox(self):
        if len(self.outbox) + len(self.uses) <= MAX_QUEUED:
            return
        self.logger.error('Cache database %s unavailable for too long: dropped %d queued changes; '
                          'caches reload from the database when it is back', self.path, len(self.outbox))
        self.outbox = []
        self.uses = {}
        self.needs_reload = True


def _publish(connection, definition, generation, now):
    """(outcome, stored definition) of storing `definition` inside a write transaction."""
    row = connection.execute('SELECT definition, generation FROM cache_definitions WHERE name = ?',
                             (definition.name,)).fetchone()
    if row is not None:
        stored = CacheDefinition.from_json(row[0])
        if stored == definition:
            return SAME, stored
        if row[1] >= generation:
            return CONFLICT, stored
    connection.execute('INSERT OR REPLACE INTO cache_definitions (name, definition, generation) VALUES (?, ?, ?)',
                       (definition.name, definition.to_json(), generation))
    _insert_change(connection, definition.name, DEFINE, None, definition.to_json(), None, None, None, now)
    is_new = row is None
    if not definition.uses_table or (is_new and not definition.is_persistent):
        # Left over from an earlier boot or definition: this one starts empty.
        connection.execute('DELETE FROM cache_entries WHERE cache = ?', (definition.name,))
    else:
        connection.execute('UPDATE cache_entries SET persistent = ? WHERE cache = ?',
                           (int(definition.is_persistent), definition.name))
    return (NEW if is_new else REPLACED), None


def _write_entry(connection, op):
    """Brings cache_entries in line with one change."""
    definition = op.cache.definition
    name, key, entry = op.cache.name, op.key, op.entry
    if op.kind == SET:
        connection.execute(
            'INSERT OR REPLACE INTO cache_entries (cache, key, value, expires_at, expiry, last_used, version, '
            'persistent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
            (name, key, entry.value, entry.expires_at, entry.expiry, entry.last_used, _stored_version(entry),
             int(definition.is_persistent)))
    elif op.kind == DELETE:
        connection.execute('DELETE FROM cache_entries WHERE cache = ? AND key = ?', (name, key))
    elif op.kind == EVICT and definition.is_synced:
        # Only the version evicted (or older): a newer write from another worker stays.
        connection.execute('DELETE FROM cache_entries WHERE cache = ? AND key = ? AND version <= ?',
                           (name, key, _stored_version(entry)))
    elif op.kind == EVICT:
        connection.execute('DELETE FROM cache_entries WHERE cache = ? AND key = ?', (name, key))
    elif op.kind == CLEAR:
        connection.execute('DELETE FROM cache_entries WHERE cache = ?', (name,))


def _names_an_old_version(op):
    """True for a queued change that identifies an entry by the version of a database file
    since left: an eviction of an entry already written (in a synchronised cache, where
    evictions are replayed by version). Its entry is not in the new file anyway."""
    return (op.kind == EVICT and op.cache is not None and op.cache.definition.is_synced
            and op.entry is not None and op.entry.version != PENDING)


def _stored_version(entry):
    # An entry whose own write never reached the log (it was dropped) has no real version.
    return 0 if entry.version == PENDING else entry.version


def _insert_change(connection, cache_name, kind, key, value, expires_at, expiry, version, created_at):
    cursor = connection.execute(
        'INSERT INTO cache_changes (cache, op, key, value, expires_at, expiry, version, created_at) '
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?)', (cache_name, kind, key, value, expires_at, expiry, version, created_at))
    return cursor.lastrowid


def _current_position(connection):
    # sqlite_sequence keeps the highest id ever handed out, even once the log is pruned empty.
    row = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'cache_changes'").fetchone()
    return row[0] if row else 0


def _meta(connection, name):
    row = connection.execute('SELECT value FROM cache_meta WHERE name = ?', (name,)).fetchone()
    return row[0] if row else None


def _set_meta(connection, name, value):
    connection.execute('INSERT OR REPLACE INTO cache_meta (name, value) VALUES (?, ?)', (name, str(value)))


def _pruned_up_to(connection):
    return int(_meta(connection, 'pruned_up_to') or 0)

"""Cluster-wide diagnostics: the master's thread that ships this member's slow calls and
samples to the cluster's Redis and dumps when the cluster asks. What Redis holds and every
decision are in records.py (slow calls, samples) and dumps.py (dump requests); this executes
them.

Like the heartbeat's and the deploy thread's, the thread has its own Redis client and never
holds up the master's loop; a Redis that does not answer is tried again after a growing
delay, quietly (the heartbeat thread says once that Redis cannot be reached). Between two
shipping passes it waits on the dump requests' stream (XREAD, blocking for a second at a
time), so a request is acted on within about a second.

Shipping reads the store read-only (diagnostics/store.py, as `slow` does) from the row after
the last one shipped; the rows are redacted (records.entry_of) before they leave the host.

Anyone who can write Redis can write under our keys. The stream is read raw (thread.raw_reply)
and each entry decoded on its own, so an entry that is not UTF-8 is passed, not re-read for
ever; a command Redis refuses (a key of ours holding another type, a full Redis) is said at
most once a minute and the rest of the pass goes on, the connection kept.
"""

import json
import os
import threading
import time

from zato_daemon.cluster import dumps, records
from zato_daemon.cluster.thread import (REFUSAL_REPORT_INTERVAL, ClusterThread, raw_reply, response_error,
                                        stream_entries, stream_position)
from zato_daemon.diagnostics.store import DiagnosticsReadError, list_written_after
from zato_daemon.logs import levels
from zato_daemon.logs.throttle import Throttle

# How often the store is read for new rows; sooner while a pass found a full batch.
SHIP_INTERVAL = 5.0
# Rows read (and shipped) per table and pass: a store holding many services' rows goes out
# over a few passes, none holding the thread (or Redis) for long.
SHIP_BATCH = 500
# Characters of entries written per pass at most (about 1 MB): one transaction must reach Redis
# within the 2 s time limit of a call (connection.TIMEOUT, which bounds sending the whole of
# it), over a slow link too, or the same pass would fail for ever. 1,000 rows of three 4 KiB
# texts are 12 MB; the rest is shipped by the passes following at once.
SHIP_BUDGET = 1_000_000
# How long one XREAD waits for a dump request: a stop or a reload is heard within it.
READ_BLOCK = 1.0
# Dump requests read per XREAD: a stream someone filled with thousands is gone through a few
# at a time, each pass still shipping.
REQUESTS_PER_READ = 10

# SQLite is not fork-safe: a worker forked while this thread is inside SQLite (holding one of
# its process-wide mutexes) would hang on its own first SQLite call, its diagnostics store's.
# So the master forks only between two reads of this thread, and waits for one under way
# (milliseconds; at most the store's read timeout, 1 s, on a database another process locks).
_sqlite_lock = threading.Lock()
os.register_at_fork(before=_sqlite_lock.acquire, after_in_parent=_sqlite_lock.release,
                    after_in_child=_sqlite_lock.release)


class ClusterDiagnostics(ClusterThread):
    """The master's thread shipping diagnostics and taking dump requests.

    `key`: the cluster key, or None (dump requests are then refused, saying why);
    `paths`: the ServerPaths (diagnostics_database, server_log); `request_dump()`: makes the
    master dump (and its workers), returning at once; `pid`: the master's, for the answer.
    """

    THREAD_NAME = 'zato-daemon: cluster diagnostics'

    def __init__(self, settings, key, paths, request_dump, pid, logger, clock=time.time):
        super().__init__(logger)
        self.request_dump = request_dump
        self.pid = pid
        self.clock = clock
        self._config = (settings, key, paths)
        self._last_id = None
        self._next_ship = 0.0
        self._cursor = records.Cursor()
        self._store_problem = None
        self._seen = {}
        # Forged dump requests are said once a minute with their count: a flood of them does
        # not flood the journal.
        self._refusals = Throttle(REFUSAL_REPORT_INTERVAL)

    # ---- from the master's loop

    def update(self, settings, key, paths):
        """At a reload; the next pass reconnects if the cluster changed, and ships again."""
        with self._lock:
            self._config = (settings, key, paths)
            self._synced = False
        self.wake()

    def join(self, timeout=READ_BLOCK + 2 * 2.0):
        super().join(timeout)

    # ---- the thread

    def _step(self):
        """One pass: connect if needed, ship if due, wait a moment for dump requests. Returns
        how long to wait before the next pass."""
        (settings, key, paths), must_sync = self._pass_config()
        try:
            client = self._redis.client_for(settings)
            if must_sync:
                # Everything stored is shipped again: Redis may have restarted empty, or be
                # another cluster's since a reload. An entry shipped twice is one entry.
                self._cursor = records.Cursor()
                self._next_ship = 0.0
                self._last_id = None
            if self._last_id is None:
                self._last_id = self._stream_position(client, settings)
            now = time.monotonic()
            if now >= self._next_ship:
                full = self._ship_refusable(client, settings, paths)
                self._next_ship = now + (0 if full else SHIP_INTERVAL)
            block = max(0.0, min(READ_BLOCK, self._next_ship - time.monotonic()))
            if self._last_id is None:
                # The stream cannot be read (said once): the pass waits as XREAD would have.
                self._delay = None
                return block
            self._read_requests(client, settings, key, paths.server_log, block)
            self._delay = None
            return 0
        except self.connection.REDIS_ERRORS as exc:
            return self._redis_lost(exc, settings, 'Cluster diagnostics')

    # ---- the dump requests' stream, read as Redis holds it (raw_reply: never decoded by redis-py)

    def _stream_position(self, client, settings):
        """The stream's last entry id, from which requests are taken: a request made before this
        member (re)connected is not acted on (a restart hours later must not dump). None while
        the stream's key holds something else than a stream (tried again next pass)."""
        try:
            return stream_position(client, dumps.stream_key(settings.name))
        except response_error() as exc:
            self._refused('read the dump requests', exc, settings)
            return None

    def _read_requests(self, client, settings, key, server_log, block):
        command = ['XREAD', 'COUNT', REQUESTS_PER_READ]
        if int(block * 1000):
            command += ['BLOCK', int(block * 1000)]
        try:
            answer = raw_reply(client, *command, 'STREAMS', dumps.stream_key(settings.name), self._last_id)
        except response_error() as exc:
            self._refused('read the dump requests', exc, settings)
            self._last_id = None
            return
        for entry_id, fields in stream_entries(answer):
            self._last_id = entry_id
            self._take_request(client, settings, key, server_log, fields)

    # ---- shipping

    def _ship_refusable(self, client, settings, paths):
        """_ship; a pass Redis refuses (full) is tried again at the next, the same rows."""
        try:
            return self._ship(client, settings, paths)
        except response_error() as exc:
            self._refused('store the slow calls and samples', exc, settings)
            return False

    def _ship(self, client, settings, paths):
        """Ships the rows stored since the last pass; True when a batch was full (more wait)."""
        rows = self._read_store(paths.diagnostics_database)
        if rows is None:
            return False
        grouped, taken = records.batches(rows, settings.name, settings.host_name, SHIP_BUDGET)
        if grouped:
            pipe = client.pipeline(transaction=True)
            for key, entries in grouped.items():
                pipe.zadd(key, dict(entries))
                pipe.zremrangebyrank(key, 0, -records.cap_of_key(settings.name, key) - 1)
                pipe.expire(key, records.ENTRY_TTL)
            results = pipe.execute(raise_on_error=False)
            # A key of ours that holds another type (someone wrote it) takes nothing; the other
            # keys are written all the same, and the pass is done: it is said, not retried.
            for error in (result for result in results if isinstance(result, Exception)):
                if not str(error).startswith('WRONGTYPE'):
                    raise error
                self._refused('store slow calls or samples under a key holding another type', error, settings)
        # Only once Redis holds them: a pass that failed reads the same rows again.
        for kind, kind_rows in taken.items():
            self._cursor.shipped(kind, kind_rows)
        return any(len(kind_rows) >= SHIP_BATCH or len(taken[kind]) < len(kind_rows)
                   for kind, kind_rows in rows.items())

    def _read_store(self, database):
        """{kind: rows} written since the last pass, or None when the store cannot be read (said
        once, until it can be again). A missing database is no problem: nothing stored yet."""
        try:
            try:
                info = os.stat(database)
            except FileNotFoundError:
                self._store_readable()
                return None
            self._cursor.start_for((info.st_dev, info.st_ino))
            rows = {}
            for kind, table in records.TABLES.items():
                with _sqlite_lock:
                    highest, rows[kind] = list_written_after(database, table, self._cursor.after[kind], SHIP_BATCH)
                if self._cursor.restarts(kind, highest):
                    with _sqlite_lock:
                        _, rows[kind] = list_written_after(database, table, 0, SHIP_BATCH)
        except (DiagnosticsReadError, OSError) as exc:
            problem = str(exc) if isinstance(exc, DiagnosticsReadError) else f'cannot read {database}: {exc.strerror}'
            if problem != self._store_problem:
                self._store_problem = problem
                self.logger.warning('Not shipping slow calls and samples to the cluster: %s; trying again every '
                                    '%.3g s', problem, SHIP_INTERVAL,
                                    extra=levels.CLUSTER_DIAGNOSTICS_UNREADABLE.extra)
            return None
        self._store_readable()
        return rows

    def _store_readable(self):
        if self._store_problem is not None:
            self._store_problem = None
            self.logger.info('Shipping slow calls and samples to the cluster again: the diagnostics database '
                             'can be read')

    # ---- dump requests

    def _take_request(self, client, settings, key, server_log, fields):
        now = self.clock()
        try:
            request_id = dumps.check_request(key, settings.name, fields, now, self._seen)
        except dumps.RequestError as exc:
            count = self._refusals.occurred(time.monotonic())
            if count:
                self.logger.warning('Ignored a dump request on the stream of cluster %s: %s%s', settings.name, exc,
                                    f' ({count} ignored since the last report)' if count > 1 else '',
                                    extra=levels.CLUSTER_DUMP_REFUSED.extra)
            if exc.request_id is not None:
                # Said to the command too (no key, another key), so that it tells why instead of waiting.
                self._answer(client, settings, exc.request_id, dumps.make_answer(
                    settings.host_name, self.pid, server_log, None, dumps.REFUSED, str(exc)))
            return
        dumps.remember(self._seen, request_id)
        since = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))
        self.logger.info('Dumping every process of this member: %s asked the cluster %s (request %s)',
                         fields['host'], settings.name, request_id, extra=levels.CLUSTER_DUMP_REQUESTED.extra)
        self.request_dump()
        journal = dumps.journal_command(levels.DUMP_WRITTEN.message_id, since)
        self._answer(client, settings, request_id, dumps.make_answer(settings.host_name, self.pid, server_log, journal))

    def _answer(self, client, settings, request_id, answer):
        key = dumps.answers_key(settings.name, request_id)
        pipe = client.pipeline(transaction=True)
        pipe.hset(key, settings.host_name, json.dumps(answer, sort_keys=True))
        pipe.expire(key, dumps.ANSWER_TTL)
        try:
            pipe.execute()
        except response_error() as exc:
            self._refused('store the answer to a dump request', exc, settings)

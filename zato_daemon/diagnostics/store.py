"""The troubleshooting store: slow calls and sample calls of each service, in SQLite.

One file, `<state_dir>/diagnostics.sqlite3` by default, shared by every worker of a server
and kept across restarts and upgrades (the schema version is in PRAGMA user_version).

Rules:
1. The request path only queues. `record_slow()` and `record_sample()` append to a bounded
   deque and return: no file, no lock, no exception. When the queue is full the oldest
   record goes, and retention would have deleted it anyway (the newest N per service win).
2. One writer per worker. `run(sleep)` flushes the queue every `batch_interval` seconds in
   ONE transaction, then applies retention: the newest `slow_keep` slow calls and
   `samples_keep` samples per service, and a database of at most `max_db_bytes`.
3. A failing database never raises out of `flush()`. A locked, full, read-only or damaged
   database logs one WARNING a minute with the reason and what to do; the batch stays
   queued (bounded by rule 1) and the next flush retries. Only a lock keeps the connection:
   any other failure reopens the file, so a file moved aside is replaced by a new one.
   A file deleted or replaced while open fails nothing (SQLite writes on to the deleted
   inode, which no reader sees): each flush first compares the file at the path with the one
   open (one stat per batch interval), and reopens it, recreated if missing (sqlite_file.py).
   The first worker to open the new file logs one WARNING (RUNTIME_REPAIRED).
4. Several workers write the same file, opened with the settings of sqlite_store.py: WAL
   mode (readers never wait), BEGIN IMMEDIATE (a writer waits at most the busy timeout,
   100 ms, for another one, since a waiting worker blocks its whole gevent loop) and
   synchronous=NORMAL (a power cut may lose the last batches, never corrupt the file).
5. Readers (`list_slow`, `list_samples`: the CLI, built-in services) open the file read-only
   and work while servers write. The file is created 0640 with the state directory's group,
   so the group `zato` may read it; SQLite gives -wal and -shm the same mode and owner.

Not fork-safe: the connection opens lazily, at the first flush, in the process that flushes.
Not thread-safe: one worker's greenlets share it, which the GIL and gevent make safe.
"""

import errno
import logging
import math
import os
import sqlite3
import time
import traceback
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from zato_daemon.errors import EXIT_UNAVAILABLE, ZatoDaemonError
from zato_daemon.logs.throttle import Throttle
from zato_daemon.redaction import redact_text, render_capped
from zato_daemon.sqlite_file import CHECK_INTERVAL
from zato_daemon.sqlite_store import (BUSY_TIMEOUT, STORE_ERRORS, WARNING_INTERVAL, Database, FailureReport,
                                      transaction)

DATABASE_NAME = 'diagnostics.sqlite3'
# How the log lines name it.
TITLE = 'Diagnostics database'
SLOW_TABLE = 'slow_responses'
SAMPLES_TABLE = 'samples'

BATCH_INTERVAL = 1.0
SLOW_KEEP = 100
SAMPLES_KEEP = 20
MAX_DB_BYTES = 64 * 1024 * 1024
# Below this, the schema and one batch of capped rows would not fit.
MIN_DB_BYTES = 256 * 1024
# Past max_db_bytes, the oldest rows go until the data fits in this share of it, so that
# the next batches reuse the freed pages and do not trigger another pass at once.
SHRINK_TO = 0.8
MAX_SHRINK_ROUNDS = 8
# 1,000 records of two payloads capped at 4 KiB each are 8 MiB per worker at worst, while the
# database is unavailable; at 0.2 s batches it still takes 5,000 records a second.
MAX_QUEUED = 1000
# The store's own caps, whatever the caller rendered: a row always fits a page budget.
MAX_TEXT_CHARS = 64 * 1024
# A request or response payload is stored redacted and capped at this many characters.
PAYLOAD_CHARS = 4096
MAX_NAME_CHARS = 256
ERROR_FRAMES = 3
CLOSE_ATTEMPTS = 5
READ_TIMEOUT = 1.0
# A read that meets a database being recreated is tried this many times, this far apart: the
# workers move to the new file within about a second (sqlite_file.CHECK_INTERVAL).
READ_ATTEMPTS = 10
READ_RETRY_PAUSE = 0.25
FILE_MODE = 0o640
SCHEMA_VERSION = 1
# The -wal file beside the database is checkpointed into it, and cut back, once it holds
# this share of max_db_bytes (SQLite's default, 1,000 pages, is 4 MiB): the two files
# together stay near max_db_bytes * (1 + WAL_SHARE), plus the one batch being written.
WAL_SHARE = 0.25
MAX_WAL_BYTES = 4 * 1024 * 1024

# The stable key order of every row the readers return: the JSON output is diffed.
ROW_KEYS = ('cid', 'service', 'worker', 'started_at', 'duration_ms', 'status', 'request', 'response', 'error')
COLUMNS = ', '.join(ROW_KEYS)

TABLES = (SLOW_TABLE, SAMPLES_TABLE)
_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    id INTEGER PRIMARY KEY,
    cid TEXT NOT NULL,
    service TEXT NOT NULL,
    worker INTEGER NOT NULL,
    started_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    status INTEGER NOT NULL,
    request TEXT,
    response TEXT,
    error TEXT
)"""
_CREATE_INDEX = 'CREATE INDEX IF NOT EXISTS {table}_service_started_at ON {table} (service, started_at)'
SCHEMA = tuple(statement.format(table=table) for table in TABLES for statement in (_CREATE_TABLE, _CREATE_INDEX))

# What an admin can do about a failure, by primary SQLite result code, then by errno (an
# OSError from creating the file, before SQLite).
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_CANTOPEN = 5, 6, 8, 14
_LOCK_HINT = 'another process held the write lock for longer than the busy timeout; retried at the next flush'
_WRITABLE_HINT = 'make the state directory writable by the server user'
_SQLITE_HINTS = {
    SQLITE_BUSY: _LOCK_HINT,
    SQLITE_LOCKED: _LOCK_HINT,
    SQLITE_READONLY: f'the database or its directory is read-only; {_WRITABLE_HINT}',
    10: 'the disk failed to read or write; check the filesystem and the kernel log',
    11: 'the file is damaged; move it aside and a new one is created at the next flush',
    13: 'the disk is full; free space on it',
    SQLITE_CANTOPEN: f'the file cannot be opened; check that the state directory exists and {_WRITABLE_HINT}',
    26: 'the file is not a SQLite database; move it aside and a new one is created at the next flush',
}
_ERRNO_HINTS = {
    errno.ENOSPC: 'the disk is full; free space on it',
    errno.EDQUOT: 'the disk quota is used up; free space or raise the quota',
    errno.EROFS: f'the filesystem is read-only; {_WRITABLE_HINT}',
    errno.EACCES: f'permission denied; {_WRITABLE_HINT}',
}
DEFAULT_HINT = 'retried at the next flush'


@dataclass(frozen=True, slots=True)
class Call:
    """One finished service call, as the troubleshooting store keeps it.

    `request` and `response` are text already redacted and capped (see `render_payload`);
    `error` is set when the call raised (see `describe_error`), `response` otherwise.
    """

    cid: str
    service: str
    worker: int
    started_at: float
    duration_ms: float
    status: int
    request: str
    response: str | None = None
    error: str | None = None


def render_payload(value, limit):
    """`value` as redacted text of at most about `limit` characters, for a Call.

    Runs in the store's background flush, only for calls it really writes. The redaction
    policy (zato_daemon/redaction.py) walks structures, parses JSON text held in strings
    and bytes, and recognises secrets inside text.
    """
    return render_capped(value, limit)


def describe_error(exc, frames=ERROR_FRAMES):
    """'Type: message' of an exception and the last `frames` frames of its traceback.

    Cheap: no source lines are read. The message goes through the redaction policy's text
    rules (a URL with userinfo, name=value pairs ...); a secret in free text with nothing
    around it saying so is not recognised.
    """
    # format_exception_only survives an exception whose __str__ raises; f'{exc}' did not, and
    # took the request it was recorded for with it.
    lines = [redact_text(traceback.format_exception_only(type(exc), exc)[-1].rstrip('\n'))]
    last = deque(traceback.walk_tb(exc.__traceback__), maxlen=frames)
    lines.extend(f'  {frame.f_code.co_filename}:{lineno} in {frame.f_code.co_name}' for frame, lineno in last)
    return '\n'.join(lines)


class Sampler:
    """Says which calls of each service are sampled: at most one per `interval` seconds.

    By time, not by count: a call in ten of a busy service is thousands of records a second
    that retention throws away, and keeping them alive until a flush made Python's garbage
    collector cost a worker 15 % of its requests (measured with bench/throughput.py); a
    quiet service still has every call sampled. Failures are sampled on their own clock,
    so a failure is kept even right after a successful call was. O(1) per call.
    """

    def __init__(self, interval=1.0, clock=time.monotonic):
        if interval < 0:
            raise ValueError(f'interval must be 0 or more seconds, not {interval!r}')
        self.interval = interval
        self.clock = clock
        self.last = {}

    def is_due(self, service, failed=False, now=None):
        """True when this call of `service` is to be stored as a sample; `now` in the clock's
        seconds (the clock is read when it is None)."""
        key = (service, failed)
        if now is None:
            now = self.clock()
        last = self.last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self.last[key] = now
        return True


class DiagnosticsReadError(ZatoDaemonError):
    """The diagnostics database exists but cannot be read."""

    exit_status = EXIT_UNAVAILABLE


class DiagnosticsStore:
    """One worker's writer to the troubleshooting database, and its queue of unwritten calls.

    Constructed anywhere, used after fork: nothing is opened before the first flush.

    Args:
        db_path: the database file; created (0640, the directory's group) when missing.
        slow_keep: slow calls kept per service, the newest by start time.
        samples_keep: sample calls kept per service.
        max_db_bytes: the database's bound; past it the oldest rows of any service go.
        logger: where WARNINGs go; 'zato_daemon.diagnostics' by default.
        batch_interval: seconds between two flushes in `run()`.
        busy_timeout: seconds a flush waits for another writer's lock before giving up.
        max_queued: records held in memory; past it the oldest are dropped and counted.
        clock: seconds, for rate-limiting WARNINGs and the check of the file at db_path.
    """

    def __init__(self, db_path, slow_keep=SLOW_KEEP, samples_keep=SAMPLES_KEEP, max_db_bytes=MAX_DB_BYTES,
                 logger=None, batch_interval=BATCH_INTERVAL, busy_timeout=BUSY_TIMEOUT, max_queued=MAX_QUEUED,
                 clock=time.monotonic):
        for name, value in (('slow_keep', slow_keep), ('samples_keep', samples_keep), ('max_queued', max_queued)):
            if value < 1:
                raise ValueError(f'{name} must be 1 or more, not {value!r}')
        if max_db_bytes < MIN_DB_BYTES:
            raise ValueError(f'max_db_bytes must be {MIN_DB_BYTES} or more, not {max_db_bytes!r}')
        self.path = Path(db_path)
        self.keep = {SLOW_TABLE: slow_keep, SAMPLES_TABLE: samples_keep}
        self.max_db_bytes = max_db_bytes
        self.logger = logger or logging.getLogger('zato_daemon.diagnostics')
        self.batch_interval = batch_interval
        self.clock = clock
        self.queue = deque(maxlen=max_queued)
        # Every flush of run() looks at the file (a batch written to a deleted file is lost),
        # though its timer may fire a little early: hence half the batch interval. At most a
        # stat a second. The file is 0640 with the directory's group, whatever the umask: the
        # group may read it (rule 5); auto_vacuum takes effect only on a database without
        # tables yet, so it comes first.
        self.database = Database(
            self.path, TITLE, self.logger, clock, self._prepare, busy_timeout=busy_timeout, mode=FILE_MODE,
            pragmas=('auto_vacuum = INCREMENTAL',), check_interval=min(CHECK_INTERVAL, batch_interval) / 2,
            repair_words=('this worker writes to the file now there',
                          '. The slow calls and samples it held are gone; new ones are stored there'))
        self.failure_report = FailureReport(self.logger, TITLE, self.path, clock, WARNING_INTERVAL)
        self.written = 0
        # Rows written, by table (for the metrics), and records dropped before being written.
        self.stored = {SLOW_TABLE: 0, SAMPLES_TABLE: 0}
        self.dropped = 0
        self._unreported_drops = 0
        self._invalid = 0
        self._is_busy = False
        self._drop_reports = Throttle(WARNING_INTERVAL)
        self._bug_reports = Throttle(WARNING_INTERVAL)

    # ---- the request path

    def record_slow(self, call):
        """Queues a call that took longer than its service's threshold.

        O(1): never blocks, never raises, touches no file.
        """
        self._record(SLOW_TABLE, call)

    def record_sample(self, call):
        """Queues a sample call of its service. O(1): never blocks, never raises, touches no file."""
        self._record(SAMPLES_TABLE, call)

    def _record(self, table, call):
        queue = self.queue
        if len(queue) == queue.maxlen:
            self.dropped += 1
            self._unreported_drops += 1
        queue.append((table, call))

    @property
    def pending(self):
        """How many records wait for the next flush."""
        return len(self.queue)

    # ---- the writer

    def run(self, sleep):
        """Flushes every `batch_interval` seconds, forever.

        The worker spawns it as a greenlet, passing gevent.sleep.
        """
        while True:
            sleep(self.batch_interval)
            self.flush()

    def flush(self):
        """Writes every queued record in one transaction, then applies retention. Never raises.

        Returns True when the queue was written (or empty), False when it stays queued.
        """
        self._check_file()
        if not self.queue:
            self._report_drops()
            return True
        batch, self.queue = self.queue, deque(maxlen=self.queue.maxlen)
        try:
            self._insert(batch)
        except STORE_ERRORS as exc:
            self._put_back(batch)
            self._failed(f'writing a batch of {len(batch)}', exc)
            return False
        except Exception:
            # A bug, not the database: keeping the batch would fail every flush from now on.
            self._report_bug(f'dropped a batch of {len(batch)} records')
            return True
        self.written += len(batch)
        try:
            self._bound_size()
        except STORE_ERRORS as exc:
            self._failed('bounding its size', exc)
            return True
        self._succeeded()
        self._report_drops()
        return True

    def close(self):
        """Writes what is queued and closes the connection. Runs in the worker, at its stop.

        While another worker holds the lock, tries up to CLOSE_ATTEMPTS times (each waits up
        to the busy timeout); what is still queued then is dropped with a WARNING.
        """
        for _ in range(CLOSE_ATTEMPTS):
            if self.flush() or not self._is_busy:
                break
        if self.queue:
            self.logger.warning('Diagnostics database %s: records not written at close: %d', self.path,
                                len(self.queue))
            self.dropped += len(self.queue)
            self.queue.clear()
        self._disconnect()

    def _put_back(self, batch):
        # The batch is older than what was queued meanwhile: it goes first, and the deque's
        # bound drops its oldest records when both do not fit.
        newer = self.queue
        overflow = len(batch) + len(newer) - batch.maxlen
        if overflow > 0:
            self.dropped += overflow
            self._unreported_drops += overflow
        batch.extend(newer)
        self.queue = batch

    def _insert(self, batch):
        groups = self._rows(batch)
        connection = self.database.connect()
        with transaction(connection):
            for (table, service), rows in groups.items():
                connection.executemany(f'INSERT INTO {table} ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', rows)
                _trim_service(connection, table, service, self.keep[table])
        for (table, _), rows in groups.items():
            self.stored[table] += len(rows)

    def _rows(self, batch):
        """{(table, service): [row]}, each list already cut to what retention keeps.

        Calls are cut first and rendered after: under load most queued calls are older than
        what retention keeps, and their payloads (Unrendered) are never rendered at all.
        """
        calls = {}
        for table, call in batch:
            calls.setdefault((table, getattr(call, 'service', None)), []).append(call)
        groups = {}
        for (table, service), group in calls.items():
            keep = self.keep[table]
            if len(group) > keep:
                group.sort(key=_started_at)
                del group[:-keep]
            rows = []
            for call in group:
                try:
                    rows.append(_row(call))
                except Exception:  # one row that cannot be rendered must not cost the batch
                    self._invalid += 1
            if rows:
                groups[(table, rows[0][1])] = rows
        if self._invalid:
            self._report_bug(f'dropped {self._invalid} records that are not Calls or cannot be rendered',
                             exc_info=False)
        return groups

    def _bound_size(self):
        """Deletes the oldest rows of any service while the database is over max_db_bytes."""
        connection = self.connection
        page_size = _pragma(connection, 'page_size')
        excess = _pragma(connection, 'page_count') - self.max_db_bytes // page_size
        if excess <= 0:
            return
        with transaction(connection):
            for _ in range(MAX_SHRINK_ROUNDS):
                if not _shrink_round(connection, self.max_db_bytes * SHRINK_TO):
                    break
        # auto_vacuum=INCREMENTAL: the pages past max_db_bytes leave the file. Only those:
        # vacuuming moves pages, about 20 ms a 1,000 of them, with the worker's loop blocked,
        # while the free pages left below the bound are reused by the next batches anyway.
        # Through executescript, which steps the pragma to its end (and runs outside any
        # transaction): execute() steps it once, which frees a single page.
        connection.executescript(f'PRAGMA incremental_vacuum({excess})')
        # The file itself shrinks when the checkpoint copies the shorter database back to it.
        connection.execute('PRAGMA wal_checkpoint(PASSIVE)').fetchall()

    # ---- the connection

    @property
    def connection(self):
        """The open connection to the database, None while there is none."""
        return self.database.connection

    def _check_file(self):
        """Reopens the database when the file at the path is no longer the one open.

        Before a batch is written: records queued after a deletion go to the new file.
        """
        if not self.database.moved():
            return
        try:
            self.database.connect()
        except STORE_ERRORS as exc:
            # The next flush tries again, and reports the repair once it succeeds.
            self._failed('reopening it', exc)

    def _prepare(self, connection):
        """The -wal's bound, the schema and the retention limits, in a connection just opened."""
        wal_bytes = min(MAX_WAL_BYTES, int(self.max_db_bytes * WAL_SHARE))
        connection.execute(f'PRAGMA journal_size_limit = {wal_bytes}').fetchall()
        page_size = _pragma(connection, 'page_size')
        connection.execute(f'PRAGMA wal_autocheckpoint = {max(1, wal_bytes // page_size)}').fetchall()
        with transaction(connection):
            for statement in SCHEMA:
                connection.execute(statement)
            if connection.execute('PRAGMA user_version').fetchone()[0] == 0:
                connection.execute(f'PRAGMA user_version = {SCHEMA_VERSION}')
        # Limits may have been lowered since the last start: apply them to every service.
        with transaction(connection):
            _trim_all(connection, self.keep)

    def _disconnect(self):
        self.database.close()

    # ---- failure reports

    @property
    def failures(self):
        """Failed attempts at using the database since the last that worked."""
        return self.failure_report.failures

    def _failed(self, action, exc):
        self._is_busy = _is_busy(exc)
        if not self._is_busy:
            self._disconnect()
        if self.failure_report.failed(action, exc, ': %s. Services keep answering; records queued: %d, dropped '
                                      'since the last report: %d', _hint(exc, self.path), len(self.queue),
                                      self._unreported_drops):
            self._unreported_drops = 0

    def _succeeded(self):
        self._is_busy = False
        self.failure_report.succeeded()

    def _report_drops(self):
        if self._unreported_drops and self._drop_reports.occurred(self.clock()):
            self.logger.warning('Diagnostics store of %s: its queue of %d was full; records dropped (the oldest) '
                                'since the last report: %d', self.path, self.queue.maxlen, self._unreported_drops)
            self._unreported_drops = 0

    def _report_bug(self, what, exc_info=True):
        if self._bug_reports.occurred(self.clock()):
            self.logger.error('Diagnostics store of %s %s', self.path, what, exc_info=exc_info)
            self._invalid = 0


# ---- reading

def list_slow(db_path, service=None, since=None, limit=SLOW_KEEP):
    """Stored slow calls, newest first, as dicts with ROW_KEYS in that order.

    `service` narrows to one service; `since` (epoch seconds, a datetime or ISO 8601 text,
    naive meaning UTC) to calls started then or later. A missing database reads as empty. Opens the file
    read-only: works while servers write, and for any user who may read the file.
    Raises DiagnosticsReadError when the file cannot be read.
    """
    conditions, params = [], []
    if service is not None:
        conditions.append('service = ?')
        params.append(service)
    if since is not None:
        conditions.append('started_at >= ?')
        params.append(to_epoch(since))
    return _select(Path(db_path), SLOW_TABLE, conditions, params, limit)


def list_samples(db_path, service, limit=SAMPLES_KEEP):
    """Stored sample calls of `service`, newest first, as dicts with ROW_KEYS in that order.

    Reads like `list_slow`.
    """
    return _select(Path(db_path), SAMPLES_TABLE, ['service = ?'], [service], limit)


def list_written_after(db_path, table, after_id, limit):
    """(the table's highest row id, rows) of the rows of `table` (SLOW_TABLE or
    SAMPLES_TABLE) written after row `after_id`, oldest first, at most `limit`, each a dict
    with ROW_KEYS and its 'id'. For a reader that follows the store pass after pass (the
    cluster's shipping thread): ids grow in the order of writing, and a highest id below
    `after_id` means the file was recreated. A missing database reads as (0, []).
    Reads like `list_slow`, but once: a reader that comes back later needs no retries, and
    its read takes at most the read timeout."""
    if table not in TABLES:
        raise ValueError(f'no table {table!r}')
    return _select(Path(db_path), table, ['id > ?'], [after_id], limit, order='id', with_highest_id=True,
                   attempts=1)


def _select(path, table, conditions, params, limit, order='started_at DESC, id DESC', with_highest_id=False,
            attempts=READ_ATTEMPTS):
    # A server recreating a deleted database (its -wal and -shm files appear one after the
    # other) makes a reader's open fail with 'disk I/O error' for a moment: tried again.
    for _ in range(attempts - 1):
        try:
            return _select_once(path, table, conditions, params, limit, order, with_highest_id)
        except DiagnosticsReadError as exc:
            if 'disk I/O error' not in str(exc):
                raise
            time.sleep(READ_RETRY_PAUSE)
    return _select_once(path, table, conditions, params, limit, order, with_highest_id)


def _select_once(path, table, conditions, params, limit, order, with_highest_id):
    where = f' WHERE {" AND ".join(conditions)}' if conditions else ''
    query = f'SELECT {COLUMNS}, id FROM {table}{where} ORDER BY {order} LIMIT ?'
    empty = (0, []) if with_highest_id else []
    try:
        # Inside the try: a state directory this user may not enter raises PermissionError.
        if not path.exists():
            return empty
        connection = _open_read_only(path)
        try:
            # One connection, one read transaction: the highest id and the rows agree.
            connection.execute('BEGIN')
            highest = connection.execute(f'SELECT MAX(id) FROM {table}').fetchone()[0] if with_highest_id else 0
            rows = connection.execute(query, (*params, limit)).fetchall()
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        # A file a worker has just created holds no tables yet.
        if 'no such table' in str(exc):
            return empty
        raise DiagnosticsReadError(f'cannot read {path}: {exc}') from None
    except STORE_ERRORS as exc:
        raise DiagnosticsReadError(f'cannot read {path}: {exc}') from None
    if with_highest_id:
        return highest or 0, [dict(_as_dict(row[:-1]), id=row[-1]) for row in rows]
    return [_as_dict(row[:-1]) for row in rows]


def _open_read_only(path):
    connection = _connect_uri(path, 'mode=ro')
    try:
        # Opening is lazy: the first statement is where a missing -shm file shows.
        connection.execute('SELECT 1 FROM sqlite_master LIMIT 1').fetchall()
        return connection
    except sqlite3.OperationalError:
        connection.close()
        if Path(f'{path}-wal').exists():
            raise
    # No -wal file: no server has the database open, and this reader may not create the
    # -shm file (a read-only mount, or a group member without write access to the state
    # directory). The main file then holds everything; read it without any locking.
    return _connect_uri(path, 'immutable=1')


def _connect_uri(path, query):
    return sqlite3.connect(f'{path.absolute().as_uri()}?{query}', uri=True, timeout=READ_TIMEOUT)


def _as_dict(row):
    values = dict(zip(ROW_KEYS, row))
    values['started_at'] = _iso(values['started_at'])
    # Rounded, so that the same stored value always prints the same way.
    values['duration_ms'] = round(values['duration_ms'], 3)
    return values


def _iso(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec='milliseconds').replace('+00:00', 'Z')


def to_epoch(since):
    """Epoch seconds of `since`: epoch seconds, a datetime or ISO 8601 text (naive meaning
    UTC). Raises ValueError for text that is not ISO 8601."""
    if isinstance(since, str):
        # ValueError for text that is not ISO 8601: the CLI reports it as a usage error.
        since = datetime.fromisoformat(since)
    if isinstance(since, datetime):
        return (since if since.tzinfo else since.replace(tzinfo=timezone.utc)).timestamp()
    return float(since)


# ---- SQL helpers

def _row(call):
    """The row tuple of a Call, in ROW_KEYS order, within the store's own caps."""
    return (_storable(_cut(str(call.cid), MAX_NAME_CHARS)), _storable(_cut(str(call.service), MAX_NAME_CHARS)),
            int(call.worker), float(call.started_at), float(call.duration_ms), int(call.status),
            _storable(_text(call.request)), _storable(_text(call.response)), _storable(_text(call.error)))


def _storable(text):
    """`text` as SQLite can bind it: a lone surrogate escaped. Binding one raised at insert
    time and lost the whole batch, other calls' rows included."""
    if text is None:
        return None
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        return text.encode('utf-8', 'backslashreplace').decode('utf-8')
    return text


class Unrendered:
    """A payload kept as it is until its call is written: rendering (redacting, capping) is
    the expensive part of a record, and most queued samples are never written."""

    __slots__ = ('value',)

    def __init__(self, value):
        self.value = value


def _started_at(call):
    started_at = getattr(call, 'started_at', 0)
    return started_at if isinstance(started_at, (int, float)) else 0


def _text(value):
    if value is None:
        return None
    if isinstance(value, Unrendered):
        return render_payload(value.value, PAYLOAD_CHARS)
    if not isinstance(value, str):
        # A caller that passed a payload instead of its rendering still stores no secret.
        return render_payload(value, MAX_TEXT_CHARS)
    return _cut(value, MAX_TEXT_CHARS)


def _cut(text, limit):
    if len(text) <= limit:
        return text
    return f'{text[:limit]}... ({len(text) - limit} more characters)'


def _trim_service(connection, table, service, keep):
    """Deletes the calls of `service` older than its newest `keep`."""
    first_old = connection.execute(f'SELECT started_at, id FROM {table} WHERE service = ? '
                                   'ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET ?', (service, keep)).fetchone()
    if first_old is not None:
        connection.execute(f'DELETE FROM {table} WHERE service = ? AND (started_at, id) <= (?, ?)',
                           (service, *first_old))


def _trim_all(connection, keep):
    for table, count in keep.items():
        services = [row[0] for row in connection.execute(f'SELECT DISTINCT service FROM {table}')]
        for service in services:
            _trim_service(connection, table, service, count)


def _shrink_round(connection, target):
    """Deletes the oldest rows of each table, by the share the live data exceeds `target`.

    Returns False when nothing was over or nothing was left to delete. Oldest by id: ids
    follow the order of writing, which is the order of start times within a batch interval,
    and a range of the primary key is deleted without reading the payloads of the rest (a
    scan by started_at read the whole 64 MiB: up to 40 ms a round).
    """
    pages = _pragma(connection, 'page_count') - _pragma(connection, 'freelist_count')
    live = pages * _pragma(connection, 'page_size')
    if live <= target:
        return False
    share = 1 - target / live
    is_deleted = False
    for table in TABLES:
        rows = connection.execute(f'SELECT COUNT(*) FROM {table}').fetchone()[0]
        count = math.ceil(rows * share)
        if count:
            last = connection.execute(f'SELECT id FROM {table} ORDER BY id LIMIT 1 OFFSET ?', (count - 1,)).fetchone()
            connection.execute(f'DELETE FROM {table} WHERE id <= ?', last)
            is_deleted = True
    return is_deleted


def _pragma(connection, name):
    return connection.execute(f'PRAGMA {name}').fetchone()[0]


def _sqlite_code(exc):
    """The primary SQLite result code of a sqlite3.Error, None when it carries none."""
    code = getattr(exc, 'sqlite_errorcode', None)
    return None if code is None else code & 0xff


def _is_busy(exc):
    """True when another connection held the lock: the only failure the connection survives."""
    if _sqlite_code(exc) in (SQLITE_BUSY, SQLITE_LOCKED):
        return True
    return isinstance(exc, sqlite3.OperationalError) and 'locked' in str(exc)


def _hint(exc, path):
    if isinstance(exc, OSError):
        return _ERRNO_HINTS.get(exc.errno, DEFAULT_HINT)
    code = _sqlite_code(exc)
    if code in (SQLITE_READONLY, SQLITE_CANTOPEN):
        # SQLite says only that it could not open or write: the directory says why.
        return _directory_hint(path.parent) or _SQLITE_HINTS[code]
    return _SQLITE_HINTS.get(code, DEFAULT_HINT)


def _directory_hint(directory):
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return _ERRNO_HINTS[errno.EROFS]
        if not os.access(directory, os.W_OK | os.X_OK):
            return _ERRNO_HINTS[errno.EACCES]
    except OSError:
        return None
    return None

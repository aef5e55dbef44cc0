"""What a store kept in SQLite needs besides its own tables: its connection, transactions,
and the reports of a database that fails. Used by the cache database (cache/shared.py) and
the troubleshooting store (diagnostics/store.py).

- `Database`: one process's connection to the store's file, opened on first use with the
  settings every store of the server wants (below), and moved to a new file when the one at
  its path is deleted or replaced (sqlite_file.py says how, and why it is delicate).
- `transaction`: BEGIN ... COMMIT, rolled back on any error.
- `FailureReport`: a WARNING at most once a minute while the database fails, one INFO line
  when it works again.

The settings:
- WAL: readers never wait for the writer, nor the writer for them.
- synchronous=NORMAL: a commit does not wait for fsync; a power cut may lose the last
  moments written, never corrupt the file.
- A busy timeout of BUSY_TIMEOUT: a worker waiting for another one's write lock blocks its
  whole gevent loop, so it gives up early, keeps what it meant to write, and retries later.
"""

import sqlite3
import time
from pathlib import Path

from zato_daemon.logs.throttle import REPORT_INTERVAL, Throttle
from zato_daemon.sqlite_file import (CHECK_INTERVAL, REOPEN, FileWatch, connect_existing, ensure_database,
                                     report_repair, transaction)

__all__ = ('BUSY_TIMEOUT', 'STORE_ERRORS', 'WARNING_INTERVAL', 'Database', 'FailureReport', 'transaction')

BUSY_TIMEOUT = 0.1
# While a database keeps failing, its WARNING is repeated this often, not at every attempt.
WARNING_INTERVAL = REPORT_INTERVAL

# What a missing, locked, full, read-only or damaged database raises.
STORE_ERRORS = (sqlite3.Error, OSError)


class Database:
    """One process's connection to a store's SQLite file, opened by the first `connect()`.

    Opening creates the file when it is missing (ensure_database: exactly `mode` with the
    directory's group, or as SQLite would create it when None), runs `pragmas` (those that
    must come before WAL, such as auto_vacuum), applies the settings of the module docstring,
    and passes the connection to `prepare(connection)`: the store's schema and whatever else
    it does in a new connection. When anything of that raises, the connection is closed and
    the error goes to the caller.

    `moved()` is the store's regular look at the file at the path. `title` ('Cache database')
    begins the log lines; `repair_words` are (what a worker that did not report a repair does
    now, what follows in the WARNING of the one that did): see sqlite_file.report_repair.

    Not fork-safe: one per process, used after fork.
    """

    def __init__(self, path, title, logger, clock, prepare, repair_words, busy_timeout=BUSY_TIMEOUT, mode=None,
                 pragmas=(), check_interval=CHECK_INTERVAL):
        self.path = Path(path)
        self.title = title
        self.logger = logger
        self.prepare = prepare
        self.repair_words = repair_words
        self.busy_timeout = busy_timeout
        self.mode = mode
        self.pragmas = pragmas
        self.connection = None
        self._watch = FileWatch(self.path, clock, check_interval)
        # DELETED or REPLACED: what the watch saw of the open file, and the identities of the
        # sidecars that file had (FileWatch.leave()), until the new one is open.
        self._noticed = None
        self._left = None

    def connect(self):
        """The connection, opened first when there is none; raises one of STORE_ERRORS."""
        if self.connection is not None:
            return self.connection
        # Only ensure_database creates the file, and the directory with it: a deleted file's
        # sidecars must go first (sqlite_file.py).
        ensured = ensure_database(self.path, self.mode, self._left)
        connection, held = connect_existing(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            self._configure(connection)
            self.prepare(connection)
        except BaseException:
            connection.close()
            raise
        self.connection = connection
        self._watch.opened(held)
        self._left = None
        if self._noticed is not None or ensured.sidecars_removed:
            self._report_repair(ensured)
        return connection

    def moved(self):
        """True when the file at the path is no longer the one open; it looks at most once per
        `check_interval`. The connection is then closed, and the next connect() opens the file
        at the path (created when missing); the first process to open a new file reports it."""
        verdict, action = self._watch.check()
        if action != REOPEN:
            return False
        self._noticed = verdict
        self._left = self._watch.leave()
        # SQLite neither checkpoints nor deletes the sidecars of a file that has moved, so
        # closing leaves the new file's -wal and -shm alone.
        self.close()
        return True

    def close(self):
        """Closes the connection, if open; the next connect() opens the file again."""
        self._watch.forget()
        if self.connection is not None:
            try:
                self.connection.close()
            except sqlite3.Error:
                pass
            self.connection = None

    def _configure(self, connection):
        for pragma in self.pragmas:
            connection.execute(f'PRAGMA {pragma}').fetchall()
        mode = connection.execute('PRAGMA journal_mode = WAL').fetchone()[0]
        if mode.lower() != 'wal':
            # A filesystem without shared memory (some network mounts) refuses WAL: still
            # correct, but readers and the writer then wait for each other.
            self.logger.warning('%s %s: journal mode is %s, not WAL', self.title, self.path, mode)
        connection.execute('PRAGMA synchronous = NORMAL')

    def _report_repair(self, ensured):
        """One WARNING per new file, by whichever worker opens it first knowing of the repair."""
        noticed, self._noticed = self._noticed, None
        # Wall-clock time: the claim is stored in the file, for every process to read.
        report_repair(self.logger, self.connection, time.time(), noticed, ensured, self.title, self.path,
                      *self.repair_words)


class FailureReport:
    """The failed attempts in a row at using a store's database, and what the log says of them.

    A store retries at every poll or flush, many times a minute, so a database that stays
    locked, full or missing would repeat the same WARNING as often: `failed()` logs one at
    once and then at most one per `interval` of `clock`, and `succeeded()` one INFO line,
    with the count, when an attempt works again; the next failure is then reported at once.
    """

    def __init__(self, logger, title, path, clock, interval=WARNING_INTERVAL):
        self.logger = logger
        self.title = title
        self.path = path
        self.clock = clock
        self.interval = interval
        self.failures = 0
        self._throttle = Throttle(interval)

    @property
    def is_failing(self):
        """The last attempt failed."""
        return self.failures > 0

    def failed(self, action, exc, consequences='', *args):
        """Counts a failed attempt; True when it logged the WARNING, which reads
        '<title> <path> unavailable while <action> (<exception>)' followed by `consequences % args`."""
        self.failures += 1
        if not self._throttle.occurred(self.clock()):
            return False
        self.logger.warning('%s %s unavailable while %s (%s: %s)' + consequences, self.title, self.path, action,
                            type(exc).__name__, exc, *args)
        return True

    def succeeded(self):
        """An attempt worked: says so once if the ones before failed."""
        if not self.failures:
            return
        self.logger.info('%s %s available again after %d failed attempts', self.title, self.path, self.failures)
        self.failures = 0
        self._throttle = Throttle(self.interval)

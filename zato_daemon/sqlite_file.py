"""A SQLite file a store holds open, against the file at its path: deleted files noticed and recreated.

Used, through sqlite_store.Database, by both databases of the state directory: the
troubleshooting store (zato_daemon/diagnostics/store.py) and the cache database
(zato_daemon/cache/shared.py). It imports nothing else of the package but the log levels.

Why: a worker's store keeps one connection for the worker's life. When someone deletes the
file (by hand, a clean-up job), SQLite goes on writing to the deleted inode without an error,
and nothing written reaches a reader or another worker again. So a store compares, at most
once per CHECK_INTERVAL, the (st_dev, st_ino) of the file at its path with the one it opened
(`FileWatch`, whose verdict `decide` gives), and when they differ closes and reopens.

Recreating is the delicate part. A database in WAL mode that was deleted while open leaves
its -wal and -shm at the path, still used, by descriptor, by every worker that has not
noticed yet. SQLite pairs them by name with any file opened at the path later: a new file
then fails with "disk I/O error", or shows the deleted database's pages. Hence:
1. Only `ensure_database` creates the file, and it removes those sidecars first, under an
   exclusive flock of the directory, after checking again that the file is still missing:
   two workers noticing at once create one file, and the second never removes the first's
   new sidecars (they exist only once the main file does). A file replaced (renamed over
   the path) inherits the old one's sidecars the same way: the first worker to notice
   removes the sidecars that are still the ones its old connection used (`FileWatch` keeps
   their identities), later ones find new sidecars and leave them.
2. Everyone opens with `connect_existing`, which never creates the file (mode=rw), so no
   connection can slip in between the removal and the creation.
3. Workers still on the deleted file keep their sidecars by descriptor and close them when
   they notice; SQLite does not checkpoint or delete the -wal of a file that has moved
   (unlinked or replaced) when the connection closes, so the new sidecars stay.
The first process to open the new file knowing it replaces a deleted one claims the report
(`claim_report`): exactly one WARNING per repair, whichever worker noticed first.
"""

import fcntl
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from zato_daemon.logs.levels import RUNTIME_REPAIRED

CHECK_INTERVAL = 1.0
SIDECAR_SUFFIXES = ('-wal', '-shm')
# Attempts at opening a file that stays the same file during the open (it is replaced at most
# once per repair, so the second attempt succeeds unless someone keeps replacing it).
OPEN_ATTEMPTS = 3
REPORTS_TABLE = 'repair_reports'
# What SQLite creates a database with, before the umask (SQLITE_DEFAULT_FILE_PERMISSIONS).
SQLITE_FILE_MODE = 0o644

# Verdicts on the file at the path.
SAME = 'same'
NOT_OPEN = 'not open'
NOT_DUE = 'not due'
UNKNOWN = 'unknown'
DELETED = 'deleted'
REPLACED = 'replaced'
# What the store does about them.
KEEP = 'keep'
REOPEN = 'reopen'

# identity() of a path that exists but cannot be examined (permission, I/O error).
UNREADABLE = object()


def decide(held, found):
    """(verdict, action) about the file a store holds open. Pure.

    `held` is the (st_dev, st_ino) of the file the store opened, None when it has none open;
    `found` that of the file at its path now, None when there is none there, UNREADABLE when
    it cannot be told. Only a file known to differ is reopened: a path that cannot be
    examined leaves the connection as it is (the next write reports a real error, if any).
    """
    if held is None:
        return NOT_OPEN, KEEP
    if found is UNREADABLE:
        return UNKNOWN, KEEP
    if found == held:
        return SAME, KEEP
    if found is None:
        return DELETED, REOPEN
    return REPLACED, REOPEN


def identity(path):
    """(st_dev, st_ino) of the file at `path`; None when there is none, UNREADABLE when unknown."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return UNREADABLE
    return info.st_dev, info.st_ino


class FileWatch:
    """Which file a store has open, and whether the file at its path is still that one.

    `check()` is called on the store's periodic or write path and stats the path at most
    once per `interval` seconds of `clock`; a clock that went back counts as due.
    """

    def __init__(self, path, clock, interval=CHECK_INTERVAL):
        self.path = Path(path)
        self.clock = clock
        self.interval = interval
        self.held = None
        self.sidecars = {}
        self.checked_at = None

    def opened(self, held):
        """The store opened the file whose identity() is `held`, and its sidecars, now at the path."""
        self.held = held
        self.sidecars = sidecar_identities(self.path)
        self.checked_at = self.clock()

    def forget(self):
        """The store closed its connection: nothing to compare until it opens again."""
        self.held = None
        self.sidecars = {}

    def leave(self):
        """Like forget(), for a file found deleted or replaced: returns the identities of its
        sidecars, for ensure_database() to remove any that are still at the path."""
        sidecars = self.sidecars
        self.forget()
        return sidecars

    def check(self):
        """(verdict, action) as decide() gives them; (NOT_DUE, KEEP) within `interval` of the last stat."""
        if self.held is None:
            return NOT_OPEN, KEEP
        now = self.clock()
        if self.checked_at is not None and 0 <= now - self.checked_at < self.interval:
            return NOT_DUE, KEEP
        self.checked_at = now
        return decide(self.held, identity(self.path))


@dataclass(frozen=True)
class Ensured:
    """What ensure_database() did: created the file, its directory, removed stale sidecars.

    Sidecars without their database mean a file deleted while in use, not a first start.
    """

    created: bool = False
    directory_created: bool = False
    sidecars_removed: bool = False


def ensure_database(path, mode=None, left=None):
    """Makes sure a database file is at `path`, creating it empty (see create_empty) if missing.

    The directory is created when missing, with the umask in force. `left` is what
    FileWatch.leave() returned for a file this process had open and found replaced: sidecars
    at the path that are still those go too. Raises OSError when the directory or the file
    cannot be made (nothing is created then).
    """
    path = Path(path)
    if _exists(path) and not any(left or {}):
        return Ensured()
    directory_created = False
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        directory_created = True
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # Held for a stat, two unlinks and a create: microseconds, so blocking is harmless
        # even for a gevent worker.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _exists(path):
            # Created meanwhile by another worker: its sidecars are new. Only this process's
            # old ones, if still there, are stale.
            return Ensured(directory_created=directory_created, sidecars_removed=_remove_sidecars(path, left or {}))
        removed = _remove_sidecars(path)
        create_empty(path, mode)
    finally:
        # Closing the descriptor releases the lock.
        os.close(fd)
    return Ensured(True, directory_created, removed)


def create_empty(path, mode=None):
    """Creates an empty file at `path` unless one is there; SQLite takes it for a new database.

    With no `mode`, 0644 minus the umask, as SQLite itself creates files. With a mode, exactly
    that mode (the umask may have taken the group's read bit away) and the group of the
    directory, so that the group may read it; SQLite gives -wal and -shm the same.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     SQLITE_FILE_MODE if mode is None else mode)
    except FileExistsError:
        return
    try:
        if mode is not None:
            os.fchmod(fd, mode)
            group = os.stat(Path(path).parent).st_gid
            if group != os.getegid():
                try:
                    os.fchown(fd, -1, group)
                except PermissionError:
                    # Only root or a member of that group may give the file to it.
                    pass
    finally:
        os.close(fd)


def connect_existing(path, **options):
    """(connection, identity) of the database file at `path`; never creates it.

    sqlite3.OperationalError (unable to open) when there is no file. The identity is the
    file's before and after the open, so it is the file the connection has.
    """
    path = Path(path)
    uri = f'{path.absolute().as_uri()}?mode=rw'
    for _ in range(OPEN_ATTEMPTS):
        before = identity(path)
        connection = sqlite3.connect(uri, uri=True, **options)
        if before is not None and before is not UNREADABLE and identity(path) == before:
            return connection, before
        connection.close()
    raise sqlite3.OperationalError(f'{path} was replaced again while being opened, {OPEN_ATTEMPTS} times')


def claim_report(connection, now):
    """True for the first connection to call it on this database file: that process reports the repair.

    A worker that noticed the deletion and one that created the new file next to the deleted
    one's sidecars both know of the repair, and either may be first: the file decides. True
    as well when the claim cannot be written (a busy database): better reported twice than
    not at all.
    """
    try:
        with transaction(connection):
            connection.execute(f'CREATE TABLE IF NOT EXISTS {REPORTS_TABLE} (reported_at REAL NOT NULL)')
            cursor = connection.execute(f'INSERT INTO {REPORTS_TABLE} (reported_at) SELECT ? '
                                        f'WHERE NOT EXISTS (SELECT 1 FROM {REPORTS_TABLE})', (now,))
    except sqlite3.Error:
        return True
    return cursor.rowcount == 1


@contextmanager
def transaction(connection, begin='BEGIN IMMEDIATE'):
    """`begin` ... COMMIT on a connection opened with isolation_level=None; rolled back on any
    exception, COMMIT's own included, and the exception raised again.

    BEGIN IMMEDIATE, the default, is for writers: the write lock is taken at BEGIN, where the
    busy timeout applies, and not at a first write after reads, where in WAL mode SQLite may
    fail at once (SQLITE_BUSY_SNAPSHOT). 'BEGIN' is for readers: what they select comes from
    one snapshot.
    """
    connection.execute(begin)
    try:
        yield connection
        connection.execute('COMMIT')
    except BaseException:
        # COMMIT itself may fail (busy, a full disk): the transaction is then still open.
        if connection.in_transaction:
            try:
                connection.execute('ROLLBACK')
            except sqlite3.Error:
                pass
        raise


def describe_repair(noticed, ensured):
    """(what happened, what the workers do), for the log line of a repair. Pure.

    `noticed` is the verdict that made this process reopen (DELETED, REPLACED), None for a
    process that only found a deleted file's sidecars; `ensured` what opening took here.
    Whichever worker reports (the first to claim, not necessarily the one that created the
    file), the words are the same: they say what happened at the path, not who did it.
    """
    if noticed in (None, DELETED):
        what, done = 'was deleted', 'every worker moves to a new one created at that path'
    else:
        # A new file found where the old one was: recreated by another worker after a
        # deletion, or put there by someone else.
        what, done = 'was deleted or replaced', 'every worker moves to the file now at that path'
    if ensured.directory_created:
        done += ' (its directory was gone too, and was recreated)'
    return what, done


def sidecar_identities(path):
    """{suffix: identity()} of the -wal and -shm at `path`, those there."""
    found = {suffix: identity(f'{path}{suffix}') for suffix in SIDECAR_SUFFIXES}
    return {suffix: value for suffix, value in found.items() if value is not None and value is not UNREADABLE}


def _remove_sidecars(path, only=None):
    """Removes the sidecars at `path` (those whose identity is in `only`, when given); True if any went."""
    removed = False
    for suffix in SIDECAR_SUFFIXES:
        sidecar = Path(f'{path}{suffix}')
        if only is not None and (suffix not in only or identity(sidecar) != only[suffix]):
            continue
        removed = _unlink(sidecar) or removed
    return removed


def _exists(path):
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        # Cannot tell: creating would be a guess; opening reports the real error.
        return True
    return True


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def report_repair(logger, connection, now, noticed, ensured, title, path, this_worker, consequences):
    """Logs a repair once per new file: a WARNING (RUNTIME_REPAIRED) from the first worker that
    claims it in the file, an INFO from the others. `title` names the database ('Cache
    database'), `this_worker` what a worker that did not report does now, `consequences` what
    follows `done` in the WARNING."""
    what, done = describe_repair(noticed, ensured)
    if not claim_report(connection, now):
        logger.info('%s %s %s; %s (another worker reported the repair)', title, path, what, this_worker)
        return
    logger.warning('%s %s %s while the server ran; %s%s', title, path, what, done, consequences,
                   extra=RUNTIME_REPAIRED.extra)

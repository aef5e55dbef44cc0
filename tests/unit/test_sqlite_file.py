"""A store's SQLite file against the file at its path: the verdicts, the watch, and creating
a new file safely next to a deleted one's sidecars (real files, real SQLite connections)."""

import fcntl
import os
import sqlite3
import stat
import subprocess
import sys
import threading

import pytest

from zato_daemon.sqlite_file import (DELETED, KEEP, NOT_DUE, NOT_OPEN, REOPEN, REPLACED, SAME,
                                                 SQLITE_FILE_MODE, UNKNOWN, UNREADABLE, Ensured, FileWatch,
                                                 claim_report, connect_existing, decide, describe_repair,
                                                 ensure_database, identity)

HELD = (64769, 1234)

# A worker's connection: opens the database in WAL mode, writes, and keeps it open until stdin closes.
HOLD_OPEN = r'''
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute('PRAGMA journal_mode = WAL')
connection.execute('CREATE TABLE t (x)')
connection.execute("INSERT INTO t VALUES ('old')")
print('open', flush=True)
sys.stdin.read()
'''


class Clock:
    def __init__(self):
        self.now = 500.0

    def __call__(self):
        return self.now


@pytest.fixture
def umask():
    """Sets the process umask for one test and puts the old one back."""
    previous = []

    def set_umask(value):
        previous.append(os.umask(value))

    yield set_umask
    if previous:
        os.umask(previous[0])


def open_wal(path):
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute('PRAGMA journal_mode = WAL')
    return connection


def sidecars(path):
    return sorted(name for name in os.listdir(path.parent) if name.startswith(path.name + '-'))


# ---- decide: one case per line

@pytest.mark.parametrize('held, found, expected', [
    (None, None, (NOT_OPEN, KEEP)),
    (None, HELD, (NOT_OPEN, KEEP)),
    (None, UNREADABLE, (NOT_OPEN, KEEP)),
    (HELD, HELD, (SAME, KEEP)),
    (HELD, UNREADABLE, (UNKNOWN, KEEP)),
    (HELD, None, (DELETED, REOPEN)),
    (HELD, (64769, 1235), (REPLACED, REOPEN)),
    # The same inode number on another filesystem is another file (a mount over the directory).
    (HELD, (64770, 1234), (REPLACED, REOPEN)),
])
def test_decide(held, found, expected):
    assert decide(held, found) == expected


def test_identity_of_a_file_a_missing_one_and_one_that_cannot_be_examined(tmp_path):
    path = tmp_path / 'db'
    path.write_bytes(b'')
    info = os.stat(path)
    assert identity(path) == (info.st_dev, info.st_ino)
    assert identity(tmp_path / 'missing') is None
    assert identity(path / 'under-a-file') is None
    loop = tmp_path / 'loop'
    loop.symlink_to(loop)
    assert identity(loop) is UNREADABLE


# ---- FileWatch

def test_the_watch_stats_at_most_once_per_interval(tmp_path):
    clock = Clock()
    path = tmp_path / 'db'
    path.write_bytes(b'')
    watch = FileWatch(path, clock, interval=1.0)
    assert watch.check() == (NOT_OPEN, KEEP)
    watch.opened(identity(path))
    path.unlink()
    clock.now += 0.5
    assert watch.check() == (NOT_DUE, KEEP)
    clock.now += 0.5
    assert watch.check() == (DELETED, REOPEN)
    # Checked just now: the next stat is a second away.
    assert watch.check() == (NOT_DUE, KEEP)
    watch.forget()
    clock.now += 5
    assert watch.check() == (NOT_OPEN, KEEP)


def test_the_watch_sees_a_replaced_file_and_a_clock_that_went_back(tmp_path):
    clock = Clock()
    path = tmp_path / 'db'
    path.write_bytes(b'')
    watch = FileWatch(path, clock, interval=1.0)
    watch.opened(identity(path))
    clock.now += 1
    assert watch.check() == (SAME, KEEP)
    other = tmp_path / 'other'
    other.write_bytes(b'')
    other.rename(path)
    clock.now -= 30
    assert watch.check() == (REPLACED, REOPEN)


# ---- ensure_database

def test_an_existing_file_is_left_alone(tmp_path):
    path = tmp_path / 'db'
    path.write_bytes(b'data')
    (tmp_path / 'db-wal').write_bytes(b'wal')
    assert ensure_database(path) == Ensured()
    assert path.read_bytes() == b'data' and sidecars(path) == ['db-wal']


def test_a_first_file_is_created_with_sqlites_mode_minus_the_umask(tmp_path, umask):
    umask(0o027)
    path = tmp_path / 'db'
    assert ensure_database(path) == Ensured(created=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == SQLITE_FILE_MODE & ~0o027
    assert path.read_bytes() == b''


def test_an_exact_mode_ignores_the_umask(tmp_path, umask):
    umask(0o077)
    path = tmp_path / 'db'
    ensure_database(path, 0o640)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_a_missing_directory_is_created_with_the_umask_in_force(tmp_path, umask):
    umask(0o027)
    path = tmp_path / 'state' / 'sub' / 'db'
    assert ensure_database(path) == Ensured(created=True, directory_created=True)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(path.parent.parent).st_mode) == 0o750


def test_a_directory_that_cannot_be_made_raises_and_creates_nothing(tmp_path):
    blocker = tmp_path / 'state'
    blocker.write_text('a file where the directory should be')
    with pytest.raises(FileExistsError):
        ensure_database(blocker / 'db')


def test_a_deleted_databases_sidecars_go_before_the_new_file_is_made(tmp_path):
    """The case the module exists for: a live connection still uses the deleted file."""
    path = tmp_path / 'db'
    old = open_wal(path)
    old.execute('CREATE TABLE t (x)')
    old.execute("INSERT INTO t VALUES ('old')")
    path.unlink()
    assert sidecars(path) == ['db-shm', 'db-wal']
    assert ensure_database(path) == Ensured(created=True, sidecars_removed=True)
    new, _ = connect_existing(path, isolation_level=None)
    new.execute('PRAGMA journal_mode = WAL')
    new.execute('CREATE TABLE t (x)')
    new.execute("INSERT INTO t VALUES ('new')")
    # The old connection keeps working on its deleted file, and closing it (the worker
    # noticed) removes nothing at the path: SQLite sees that its file has moved.
    old.execute("INSERT INTO t VALUES ('old 2')")
    old.close()
    assert sidecars(path) == ['db-shm', 'db-wal']
    new.execute("INSERT INTO t VALUES ('new 2')")
    other, _ = connect_existing(path)
    assert other.execute('SELECT x FROM t').fetchall() == [('new',), ('new 2',)]
    assert other.execute('PRAGMA integrity_check').fetchall() == [('ok',)]
    for connection in (new, other):
        connection.close()


def test_without_the_removal_sqlite_pairs_the_new_file_with_the_old_sidecars(tmp_path):
    """Why ensure_database removes them: SQLite's own behaviour, which this test pins down.

    Another process (a worker that has not noticed yet) has the deleted file open.
    """
    path = tmp_path / 'db'
    worker = subprocess.Popen([sys.executable, '-c', HOLD_OPEN, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline() == 'open\n'
        path.unlink()
        path.write_bytes(b'')
        with pytest.raises(sqlite3.OperationalError, match='disk I/O error'):
            open_wal(path).execute('CREATE TABLE t (x)')
    finally:
        worker.stdin.close()
        worker.wait(10)


def test_a_worker_that_waited_for_the_lock_leaves_the_first_ones_new_sidecars(tmp_path):
    path = tmp_path / 'db'
    (tmp_path / 'db-wal').write_bytes(b'stale')
    # Another worker holds the lock: it is creating the file.
    holder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    results = []
    waiter = threading.Thread(target=lambda: results.append(ensure_database(path)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive(), 'ensure_database did not wait for the lock'
    # What the other worker does under the lock, then its new file's sidecars appear.
    (tmp_path / 'db-wal').unlink()
    path.write_bytes(b'')
    (tmp_path / 'db-wal').write_bytes(b'new')
    os.close(holder)
    waiter.join(10)
    assert results == [Ensured()]
    assert (tmp_path / 'db-wal').read_bytes() == b'new'


def test_a_replaced_files_old_sidecars_go_and_new_ones_stay(tmp_path):
    path = tmp_path / 'db'
    old = open_wal(path)
    old.execute('CREATE TABLE t (x)')
    watch = FileWatch(path, Clock())
    watch.opened(identity(path))
    assert sorted(watch.sidecars) == ['-shm', '-wal']
    replacement = tmp_path / 'replacement'
    other = sqlite3.connect(replacement)
    other.execute('CREATE TABLE r (y)')
    other.commit()
    other.close()
    replacement.rename(path)
    left = watch.leave()
    assert watch.held is None and watch.sidecars == {}
    assert ensure_database(path, left=left) == Ensured(sidecars_removed=True)
    new, _ = connect_existing(path, isolation_level=None)
    # The replacement's own tables, not the old file's pages from its -wal.
    assert new.execute('SELECT name FROM sqlite_master').fetchall() == [('r',)]
    new.execute('PRAGMA journal_mode = WAL')
    new.execute('INSERT INTO r VALUES (1)')
    # A worker that noticed later, with the same old sidecars in mind, finds new ones.
    assert ensure_database(path, left=left) == Ensured()
    assert sidecars(path) == ['db-shm', 'db-wal']
    old.close()
    assert new.execute('SELECT y FROM r').fetchall() == [(1,)]
    new.close()


# ---- connect_existing and claim_report

def test_connect_existing_never_creates_the_file(tmp_path):
    path = tmp_path / 'db'
    with pytest.raises(sqlite3.OperationalError, match='unable to open'):
        connect_existing(path)
    assert not path.exists()
    path.write_bytes(b'')
    connection, held = connect_existing(path)
    assert held == identity(path)
    connection.close()


def test_connect_existing_quotes_the_path(tmp_path):
    path = tmp_path / 'a dir?#%' / 'db'
    path.parent.mkdir()
    path.write_bytes(b'')
    connection, _ = connect_existing(path)
    connection.execute('CREATE TABLE t (x)')
    connection.close()
    assert path.stat().st_size > 0


NEW_ONE = 'every worker moves to a new one created at that path'
FILE_THERE = 'every worker moves to the file now at that path'
DIRECTORY = ' (its directory was gone too, and was recreated)'


@pytest.mark.parametrize('noticed, ensured, expected', [
    (DELETED, Ensured(created=True), ('was deleted', NEW_ONE)),
    (DELETED, Ensured(created=True, directory_created=True), ('was deleted', NEW_ONE + DIRECTORY)),
    # Another worker created it between this one's look and its open: the same words.
    (DELETED, Ensured(), ('was deleted', NEW_ONE)),
    (REPLACED, Ensured(), ('was deleted or replaced', FILE_THERE)),
    (REPLACED, Ensured(sidecars_removed=True), ('was deleted or replaced', FILE_THERE)),
    # Another worker's new file, gone again (directory and all) before this one opened.
    (REPLACED, Ensured(created=True, directory_created=True), ('was deleted or replaced', FILE_THERE + DIRECTORY)),
    # A worker that had nothing open and found only the deleted file's sidecars.
    (None, Ensured(created=True, sidecars_removed=True), ('was deleted', NEW_ONE)),
])
def test_describe_repair(noticed, ensured, expected):
    assert describe_repair(noticed, ensured) == expected


def test_only_the_first_claim_on_a_file_reports(tmp_path):
    path = tmp_path / 'db'
    ensure_database(path)
    first, _ = connect_existing(path, isolation_level=None)
    second, _ = connect_existing(path, isolation_level=None)
    assert claim_report(first, 1.0) is True
    assert claim_report(second, 2.0) is False
    assert claim_report(first, 3.0) is False
    assert second.execute('SELECT reported_at FROM repair_reports').fetchall() == [(1.0,)]
    for connection in (first, second):
        connection.close()


def test_a_claim_that_cannot_be_written_reports_anyway(tmp_path):
    path = tmp_path / 'db'
    ensure_database(path)
    holder, _ = connect_existing(path, isolation_level=None)
    holder.execute('BEGIN IMMEDIATE')
    claimer, _ = connect_existing(path, isolation_level=None, timeout=0)
    assert claim_report(claimer, 1.0) is True
    assert not claimer.in_transaction
    holder.execute('ROLLBACK')
    assert claim_report(claimer, 2.0) is True
    assert claim_report(holder, 3.0) is False
    for connection in (holder, claimer):
        connection.close()
